"""U-Net: Skip Dropout, cross-attention recording, conditioning gradients; feature extractor; DDIM."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldm_dis.models.attention import record_cross_attention
from ldm_dis.models.diffusion import diffusion_loss, make_ddim_scheduler, make_train_scheduler
from ldm_dis.models.ema import EMA
from ldm_dis.models.feature_extractor import FeatureExtractor
from ldm_dis.models.skip_dropout import SkipDropout, channel_dropout, paper_levels, released_code_levels
from ldm_dis.models.unet import UNet
from ldm_dis.config.schema import DiffusionConfig
from ldm_dis.sampling.ddim import ddim_sample


def tiny_unet(**kw):
    args = dict(in_channels=3, base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample=(1,),
                num_heads=4, context_dim=8, dropout=0.0, skip_dropout=0.2)
    args.update(kw)
    return UNet(**args)


def randomize_zero_inits(model: nn.Module) -> None:
    """Zero-initialised output convs make every inner gradient vanish at step 0; give them weights."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.05)


def test_channel_dropout_rate_scale_and_shape():
    torch.manual_seed(0)
    x = torch.ones(512, 64, 4, 4)
    y = channel_dropout(x, 0.2)
    # whole channels of a sample are either dropped or kept, scaled by 1/(1-p)
    per_channel = y.flatten(2)
    assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))
    assert set(torch.unique(y).tolist()) <= {0.0, 1.25}
    dropped = (per_channel[..., 0] == 0).float()
    assert abs(dropped.mean().item() - 0.2) < 0.01  # 32768 Bernoulli draws
    assert dropped.std(0).mean() > 0  # masks differ between samples
    assert abs(y.mean().item() - 1.0) < 0.02  # unbiased


def test_skip_dropout_levels_and_eval_identity():
    sd = SkipDropout(0.5, levels=[2], backbone_p=0.0)
    h, s = torch.ones(4, 8, 2, 2), torch.ones(4, 8, 2, 2)
    assert torch.equal(sd(h, s, 1)[1], s)  # not a dropped level
    assert not torch.equal(sd(h, s, 2)[1], s)
    sd.eval()
    assert sd(h, s, 2)[1] is s and sd(h, s, 2)[0] is h
    bd = SkipDropout(0.0, levels=[2], backbone_p=0.5)  # ablation: drop the backbone instead
    out_h, out_s = bd(h, s, 2)
    assert torch.equal(out_s, s) and not torch.equal(out_h, h)
    # Table 8: attention at factors 1, 2, 4 of levels 1, 2, 4, 8 with 16x16 latents
    assert paper_levels([1, 2, 4, 8], [1, 2, 4]) == [8]
    assert released_code_levels(16, [1, 2, 4], [1, 2, 4, 8]) == [1, 2]


def test_unet_eval_is_deterministic_and_train_drops_skips():
    torch.manual_seed(0)
    unet = tiny_unet(skip_dropout=0.5, skip_dropout_levels=[1, 2])
    randomize_zero_inits(unet)
    x, t, c = torch.randn(2, 3, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 8)
    unet.eval()
    with torch.no_grad():
        a, b = unet(x, t, c), unet(x, t, c)
        assert torch.equal(a, b)
        unet.train()
        assert not torch.allclose(unet(x, t, c), a)


def test_attention_recording_probabilities_and_same_output():
    torch.manual_seed(0)
    unet = tiny_unet(attention_downsample=(1, 2)).eval()
    randomize_zero_inits(unet)
    x, t, c = torch.randn(2, 3, 8, 8), torch.tensor([3, 900]), torch.randn(2, 5, 8)
    with torch.no_grad():
        fast = unet(x, t, c)
        with record_cross_attention(unet) as rec:
            slow = unet(x, t, c)
        after = unet(x, t, c)
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-4)
    assert torch.equal(after, fast)
    # level 1 (8x8): 1 down + 2 up blocks; level 2 (4x4): 1 down + middle + 2 up
    assert len(rec.maps) == 7
    assert sorted(set(rec.sizes.values())) == [(4, 4), (8, 8)]
    for name, maps in rec.maps.items():
        (p,) = maps  # one call
        h, w = rec.sizes[name]
        assert p.shape == (2, 4, h * w, 5)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, 4, h * w))
    assert all(m.recorder is None for m in unet.modules() if hasattr(m, "recorder"))


def test_gradients_reach_the_feature_extractor_through_cross_attention():
    torch.manual_seed(0)
    fx = FeatureExtractor(num_units=4, unit_dim=8, image_size=16, stem_channels=8, channels=(16, 16), hidden=16, extra_fc=False,
                          unit_mlp=(8, 8), final_relu=False)
    unet = tiny_unet()
    randomize_zero_inits(unet)
    loss = diffusion_loss(unet, make_train_scheduler(DiffusionConfig()), torch.randn(2, 3, 8, 8), fx(torch.randn(2, 3, 16, 16)))
    loss.backward()
    # the units enter the U-Net only as the cross-attention context
    assert fx.cnn[0].weight.grad.abs().sum() > 0
    assert all(w.grad.abs().sum() > 0 for w in fx.unit_mlps.weights)


@pytest.mark.parametrize("final_relu", [True, False])
def test_unit_mlps_equal_independent_linear_stacks(final_relu):
    torch.manual_seed(0)
    fx = FeatureExtractor(num_units=3, unit_dim=4, image_size=16, stem_channels=8, channels=(8, 8), hidden=8,
                          extra_fc=False, unit_mlp=(5, 6), final_relu=final_relu)
    s = torch.randn(7, 3)
    out = fx.tokens(s)
    assert out.shape == (7, 3, 4)
    for n in range(3):
        h = s[:, n : n + 1]
        for i, (w, b) in enumerate(zip(fx.unit_mlps.weights, fx.unit_mlps.biases)):
            h = h @ w[n] + b[n]
            h = torch.relu(h) if i < 2 or final_relu else h  # the released MLPModule ends with a ReLU
        torch.testing.assert_close(out[:, n], h)
    assert (out.min() >= 0) == final_relu
    assert fx.scalars(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_ddim_sample_is_deterministic_given_x_T_and_uses_the_context():
    torch.manual_seed(0)
    unet = tiny_unet().eval()
    randomize_zero_inits(unet)
    sched = make_ddim_scheduler(DiffusionConfig())
    x_T, c = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 8)
    a = ddim_sample(unet, sched, c, x_T, steps=5, eta=0.0)
    b = ddim_sample(unet, sched, c, x_T.clone(), steps=5, eta=0.0)
    assert torch.equal(a, b) and a.shape == x_T.shape
    assert not torch.allclose(ddim_sample(unet, sched, c.flip(0), x_T, steps=5), a)
    assert sched.timesteps.tolist() == [801, 601, 401, 201, 1]  # LDM's uniform DDIM steps (offset 1)


def test_schedule_is_ldm_linear():
    s = make_train_scheduler(DiffusionConfig())
    assert s.betas[0].item() == pytest.approx(0.0015) and s.betas[-1].item() == pytest.approx(0.0155)
    assert s.betas.sqrt().diff().std() < 1e-7  # linear in sqrt(beta)


def test_ema_tracks_with_warmup_and_copies_buffers():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.9999)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.fill_(3.0)
    before = [p.clone() for p in ema.shadow.parameters()]
    ema.update(net)  # n=1: decay min(0.9999, 2/11)
    d = 2 / 11
    for b, e, p in zip(before, ema.shadow.parameters(), net.parameters()):
        torch.testing.assert_close(e, d * b + (1 - d) * p)
    assert torch.equal(ema.shadow[1].running_mean, net[1].running_mean)
    assert not any(p.requires_grad for p in ema.parameters())
    ema.train()
    assert not ema.shadow.training


def test_skip_dropout_without_levels_is_reported(caplog):
    with caplog.at_level("WARNING"):
        unet = tiny_unet(attention_downsample=(1, 2))  # attention at every level: nothing to drop
    assert unet.skip_dropout.levels == () and "Skip Dropout is inactive" in caplog.text


def test_timestep_sampling_uniform_and_logit_normal():
    from ldm_dis.errors import UserInputError
    from ldm_dis.models.diffusion import sample_timesteps, timestep_sampler

    g = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(20000, 1000, "uniform", generator=g)
    logit = sample_timesteps(20000, 1000, "logit_normal", 0.0, 1.0, generator=g)
    for t in (uniform, logit):
        assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) <= 999
    # uniform: a tenth of the draws in each tenth; logit-normal N(0, 1): P(|t/T - 1/2| < 0.1) = P(|u| < 0.405) = 0.31
    assert abs(float(((uniform >= 400) & (uniform < 600)).float().mean()) - 0.2) < 0.02
    assert abs(float(((logit >= 400) & (logit < 600)).float().mean()) - 0.315) < 0.02
    assert float((logit < 100).float().mean()) < 0.03  # sigmoid(u) < 0.1 <=> u < -2.2: 1.4 %
    shifted = sample_timesteps(20000, 1000, "logit_normal", -1.0, 1.0, generator=g)
    assert float(shifted.float().median()) == pytest.approx(1000 / (1 + 2.718281828), abs=15)  # sigmoid(-1) T
    with pytest.raises(UserInputError, match="timestep_sampling='cosine'"):
        sample_timesteps(4, 1000, "cosine")
    # from the config: checked when the sampler is built (with the task), before any training step
    with pytest.raises(UserInputError, match="timestep_sampling='cosine'"):
        timestep_sampler(DiffusionConfig(timestep_sampling="cosine"))
    sampler = timestep_sampler(DiffusionConfig(num_train_timesteps=50, timestep_sampling="logit_normal",
                                               logit_normal_mean=-1.0))
    torch.testing.assert_close(sampler(300, generator=torch.Generator().manual_seed(5)),
                               sample_timesteps(300, 50, "logit_normal", -1.0, 1.0, generator=torch.Generator().manual_seed(5)))


def test_resampling_resblocks_pool_and_upsample_both_paths():
    from ldm_dis.models.unet import ResBlock

    torch.manual_seed(0)
    x, emb = torch.randn(2, 32, 8, 8), torch.randn(2, 16)
    down = ResBlock(32, 16, 32, 0.0, True, resample="down")
    up = ResBlock(32, 16, 32, 0.0, True, resample="up")
    # conv2 starts at zero: the block is its (identity) shortcut of the resampled input
    torch.testing.assert_close(down(x, emb), torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(up(x, emb), torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
    randomize_zero_inits(down)
    assert down(x, emb).shape == (2, 32, 4, 4) and not torch.allclose(down(x, emb), torch.nn.functional.avg_pool2d(x, 2))
    net = UNet(in_channels=3, base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample=(1,),
               num_heads=2, context_dim=8, resblock_updown=True)
    assert [m.resample for m in net.modules() if isinstance(m, ResBlock) and m.resample] == ["down", "up"]
    assert net(torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.randn(2, 4, 8)).shape == (2, 3, 8, 8)


def test_timestep_weights_min_snr_and_pdae_by_formula_with_mean_one():
    from ldm_dis.errors import UserInputError
    from ldm_dis.models.diffusion import timestep_weights

    scheduler = make_train_scheduler(DiffusionConfig())
    abar = scheduler.alphas_cumprod.double()
    snr = abar / (1 - abar)
    assert timestep_weights(scheduler, "none") is None
    min_snr = timestep_weights(scheduler, "min_snr", min_snr_gamma=5.0).double()
    expected = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr
    torch.testing.assert_close(min_snr, expected / expected.mean(), atol=1e-6, rtol=1e-5)
    pdae = timestep_weights(scheduler, "pdae", pdae_gamma=0.1).double()
    expected = snr ** 0.1 / (1 + snr)  # PDAE's released code
    torch.testing.assert_close(pdae, expected / expected.mean(), atol=1e-6, rtol=1e-5)
    for w in (min_snr, pdae):
        assert float(w.mean()) == pytest.approx(1.0, abs=1e-5)
        assert float(w[900:].mean()) > float(w[:100].mean())  # both favour the noisy end over the clean end
    with pytest.raises(UserInputError, match="loss_weighting='snr'"):
        timestep_weights(scheduler, "snr")


def test_weighted_diffusion_loss_weighs_each_sample_by_its_timestep():
    from ldm_dis.models.diffusion import diffusion_loss

    scheduler = make_train_scheduler(DiffusionConfig(num_train_timesteps=10))
    latents, context = torch.randn(4, 3, 4, 4), torch.randn(4, 2, 8)
    unet = lambda x, t, c: x * 0.5  # noqa: E731
    fixed_t = lambda n, generator=None, device=None: torch.tensor([0, 3, 3, 9])  # noqa: E731

    def loss(weights, loss_type="l1"):
        return diffusion_loss(unet, scheduler, latents, context, loss_type, torch.Generator().manual_seed(0),
                              sample_t=fixed_t, weights=weights)

    for loss_type in ("l1", "l2"):
        torch.testing.assert_close(loss(torch.ones(10), loss_type), loss(None, loss_type))
    one_hot = torch.zeros(10)
    one_hot[3] = 4.0  # samples 1 and 2 have t = 3: the loss is their mean error, times 4 * 2 / 4
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    x_t = scheduler.add_noise(latents, noise, fixed_t(4))
    per_sample = (unet(x_t, None, None) - noise).abs().reshape(4, -1).mean(1)
    torch.testing.assert_close(loss(one_hot), 2.0 * per_sample[1:3].mean())
