"""Interchange, interpolation and attention maps on tiny random components: determinism, exact identities, shapes."""

from __future__ import annotations

import pytest
import torch

from ldm_dis.models.attention import record_cross_attention
from ldm_dis.sampling.attention_maps import layer_unit_maps, unit_attention_maps
from ldm_dis.sampling.interchange import interchange_units, latent_interchange
from ldm_dis.sampling.interpolate import interpolate_units, latent_interpolation
from ldm_dis.sampling.panels import sample_panels

STEPS = 4  # DDIM steps: the identities below hold for any number


def _units(tiny, seed, b=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, tiny.num_units, tiny.unit_dim, generator=g)


def _noise(tiny, seed, b=None):
    g = torch.Generator().manual_seed(seed)
    shape = tiny.latent_shape if b is None else (b, *tiny.latent_shape)
    return torch.randn(shape, generator=g)


def test_interchange_units_swaps_exactly_one_unit():
    src, tgt = torch.zeros(2, 3, 5), torch.ones(2, 3, 5)
    ctx = interchange_units(src, tgt)  # (2, 3, 3, 5)
    assert ctx.shape == (2, 3, 3, 5)
    assert torch.equal(ctx[:, :, :, 0], torch.eye(3).expand(2, 3, 3))  # row i: only unit i is the target's


def test_sampling_with_fixed_seed_is_deterministic(tiny):
    units, noise = _units(tiny, 1), _noise(tiny, 2, b=2)
    a = sample_panels(tiny.unet, tiny.scheduler, tiny.decode, units, noise, steps=STEPS, progress=False)
    b = sample_panels(tiny.unet, tiny.scheduler, tiny.decode, units, _noise(tiny, 2, b=2), steps=STEPS, progress=False)
    assert a.shape == (2, 3, tiny.image_size, tiny.image_size)
    assert torch.equal(a, b)
    other = sample_panels(tiny.unet, tiny.scheduler, tiny.decode, units, _noise(tiny, 3, b=2), steps=STEPS, progress=False)
    assert not torch.equal(a, other)  # the noise matters, so the equality above is not vacuous


def test_training_mode_unet_is_refused(tiny):
    tiny.unet.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            sample_panels(tiny.unet, tiny.scheduler, tiny.decode, _units(tiny, 1), _noise(tiny, 2, b=2), steps=STEPS)
    finally:
        tiny.unet.eval()


def test_interchange_with_own_units_reproduces_the_source_panel(tiny):
    src = _units(tiny, 4)
    panels = latent_interchange(tiny.unet, tiny.scheduler, tiny.decode, src, src.clone(), _noise(tiny, 5),
                                steps=STEPS, progress=False)
    assert panels.shape == (2, 1 + tiny.num_units, 3, tiny.image_size, tiny.image_size)
    for i in range(tiny.num_units):
        assert torch.equal(panels[:, 1 + i], panels[:, 0])


def test_interchange_changes_panels_and_shares_noise(tiny):
    src, tgt = _units(tiny, 6), _units(tiny, 7)
    panels = latent_interchange(tiny.unet, tiny.scheduler, tiny.decode, src, tgt, _noise(tiny, 8),
                                steps=STEPS, progress=False)
    diffs = (panels[:, 1:] - panels[:, :1]).abs().flatten(2).amax(-1)  # (B, N)
    assert (diffs > 0).all()  # the random U-Net reads every unit
    # panel (b, i) equals a lone sample from the same noise with the same context
    ctx = src[1:2].clone()
    ctx[:, 2] = tgt[1:2, 2]
    lone = sample_panels(tiny.unet, tiny.scheduler, tiny.decode, ctx, _noise(tiny, 8)[None], steps=STEPS, progress=False)
    torch.testing.assert_close(lone[0], panels[1, 3], atol=1e-5, rtol=0)


def test_interpolation_ends_reproduce_both_images(tiny):
    a, b = _units(tiny, 9), _units(tiny, 10)
    weights = interpolate_units(a, b, 5)
    assert torch.equal(weights[:, 0], a) and torch.equal(weights[:, -1], b)
    torch.testing.assert_close(weights[:, 2], (a + b) / 2)
    noise = _noise(tiny, 11, b=2)
    strips = latent_interpolation(tiny.unet, tiny.scheduler, tiny.decode, a, b, noise, num=3, steps=STEPS, progress=False)
    assert strips.shape == (2, 3, 3, tiny.image_size, tiny.image_size)
    ends = sample_panels(tiny.unet, tiny.scheduler, tiny.decode, torch.cat([a, b]), torch.cat([noise, noise]),
                         steps=STEPS, progress=False)
    torch.testing.assert_close(strips[:, 0], ends[:2], atol=1e-5, rtol=0)
    torch.testing.assert_close(strips[:, -1], ends[2:], atol=1e-5, rtol=0)


def test_recorded_attention_is_a_distribution_over_units_per_pixel_and_layer(tiny):
    units, noise = _units(tiny, 12), _noise(tiny, 13, b=2)
    t = torch.full((2,), 500)
    with record_cross_attention(tiny.unet) as rec:
        tiny.unet(noise, t, units)
    assert len(rec.maps) >= 3  # down, middle and up layers
    for name, calls in rec.maps.items():
        probs = calls[0]  # (B, heads, h*w, N)
        h, w = rec.sizes[name]
        assert probs.shape == (2, 2, h * w, tiny.num_units)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, h * w))
        maps = layer_unit_maps(probs, (h, w), (tiny.image_size, tiny.image_size))
        assert maps.shape == (2, tiny.num_units, tiny.image_size, tiny.image_size)
        torch.testing.assert_close(maps.sum(1), torch.ones(2, tiny.image_size, tiny.image_size))


def test_attention_maps_shape_sum_and_same_image_as_plain_sampling(tiny):
    units, noise = _units(tiny, 14), _noise(tiny, 15, b=2)
    latents, maps = unit_attention_maps(tiny.unet, tiny.scheduler, units, noise, out_size=(16, 16), steps=STEPS,
                                        progress=False)
    assert maps.shape == (2, tiny.num_units, 16, 16)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 16, 16))
    assert maps.std() > 0  # a random U-Net does not attend uniformly
    # recording takes the explicit-softmax path; the generated image must be the same one
    plain = sample_panels(tiny.unet, tiny.scheduler, tiny.decode, units, noise, steps=STEPS, progress=False)
    torch.testing.assert_close(tiny.decode(latents).clamp(-1, 1), plain, atol=1e-4, rtol=1e-4)
