"""The CPU fast paths compute what the plain formulation computes: fused Adam instead of the
per-tensor loop, channels-last first stage and extractor, 1x1 convolutions as matmuls on the tokens, the
U-Net on one thread while the next batch is encoded on the other.
Each check runs the same seeded steps both ways and compares losses and weights."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from ldm_dis.config.schema import Config
from ldm_dis.data import build_dataset
from ldm_dis.models.attention import SpatialTransformer
from ldm_dis.models.vqgan import FirstStage
from ldm_dis.training.ldm_task import LDMTask
from ldm_dis.training.threads import OneThread
from ldm_dis.training.vqgan_task import VQGANTask

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _common import StepAccelerator  # noqa: E402  (the one-device accelerator the benchmarks time steps with)

TINY = {
    "data": {"name": "synth-shapes3d", "resolution": 16, "subset": 64, "num_workers": 0},
    "model": {
        "first_stage": {"n_embed": 16, "base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
                        "batch_size": 8, "disc_start": 2, "disc_layers": 2},
        "encoder": {"num_units": 3, "unit_dim": 8, "stem_channels": 8, "channels": [16, 16], "hidden": 16, "unit_mlp": [8, 8]},
        "unet": {"base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_downsample": [1, 2],
                 "num_heads": 4},
        "bottleneck": {"kind": "none"},
    },
    "train": {"batch_size": 8, "lr": 1e-3, "weight_decay": 0.01},
}


def plain_transformer_forward(self, x, context):
    """SpatialTransformer as written before: 1x1 convolutions on the feature map."""
    b, c, h, w = x.shape
    y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
    y, _ = self.block(y, context)
    return x + self.proj_out(y.transpose(1, 2).reshape(b, c, h, w))


@pytest.fixture(scope="module")
def cfg():
    return OmegaConf.merge(OmegaConf.structured(Config), TINY)


@pytest.fixture(scope="module")
def images(cfg):
    ds = build_dataset(OmegaConf.to_container(cfg.data))
    return torch.stack([ds[i][0] for i in range(8 * 6)]).view(6, 8, 3, 16, 16)


def weights(*modules):
    return [t.detach().clone() for m in modules for t in m.state_dict().values() if t.is_floating_point()]


def assert_same_moves(fast, plain, start, rtol):
    """The weights moved the same way: the difference between the two runs is at most ``rtol`` of how far
    the weights moved. (Element-wise tolerances do not fit Adam: a gradient that rounds differently near
    zero can flip the sign of a whole normalised step.)"""
    diff = torch.cat([(f - p).flatten() for f, p in zip(fast, plain)]).norm()
    moved = torch.cat([(p - s).flatten() for p, s in zip(plain, start)]).norm()
    assert moved > 0 and diff <= rtol * moved, (diff.item(), moved.item())


@pytest.mark.parametrize("shape", [(2, 32, 4, 4), (2, 64, 2, 2)])
def test_transformer_matmul_projections_equal_the_convolutions(shape):
    torch.manual_seed(0)
    m = SpatialTransformer(shape[1], 4, 8)
    torch.nn.init.normal_(m.proj_out.weight, 0.0, 0.1)  # zero-initialised: give the output path a value
    ctx = torch.randn(shape[0], 3, 8)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(shape).contiguous(memory_format=layout).requires_grad_()
        fast = m(x, ctx)
        grads_fast = torch.autograd.grad(fast.square().sum(), [x, m.proj_in.weight, m.proj_out.weight])
        plain = plain_transformer_forward(m, x, ctx)
        grads_plain = torch.autograd.grad(plain.square().sum(), [x, m.proj_in.weight, m.proj_out.weight])
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
        for g, h in zip(grads_fast, grads_plain):
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-5)


def test_ldm_steps_match_the_plain_formulation(cfg, images, tmp_path, monkeypatch):
    torch.manual_seed(0)
    path = tmp_path / "fs.safetensors"
    save_file({k: v.contiguous() for k, v in FirstStage.from_config(cfg.model.first_stage).state_dict().items()}, str(path))

    def run(plain: bool):
        torch.manual_seed(1)
        torch.set_num_threads(1 if plain else 2)  # two: the one-thread U-Net and the background encode are on
        task = LDMTask(cfg, None, first_stage_path=path)
        task.prepare(StepAccelerator())
        start = weights(task.feature_extractor, task.unet)
        batches = task.batches(iter([(b, None) for b in images] + [(images[0], None)]))  # + one to read ahead
        if plain:
            assert task._images_channels_last  # the fast path is on by default on CPU
            task._images_channels_last = False
            for m in (task.first_stage, task.feature_extractor):
                m.to(memory_format=torch.contiguous_format)
            task._one_thread, task._encoder = OneThread(enabled=False), None
            t = cfg.train
            task.optimizer = torch.optim.AdamW(task.main_params, lr=t.lr, betas=tuple(t.adam_betas),
                                               weight_decay=t.weight_decay, foreach=False, fused=False)
            monkeypatch.setattr(SpatialTransformer, "forward", plain_transformer_forward)
        losses = []
        for step in range(len(images)):
            batch, _ = next(batches)
            if plain:  # the task's step computes the model's own loss
                buffers = [b.clone() for b in task.model.buffers()]  # BatchNorm statistics: as if not called
                torch.manual_seed(100 + step)
                reference = task.model.loss(batch, announce=False)[0].item()
                for b, saved in zip(task.model.buffers(), buffers):
                    b.copy_(saved)
            torch.manual_seed(100 + step)  # same noise, timesteps and dropout masks both ways
            losses.append(task.training_step(batch, None, step, task.accelerator)["loss"].item())
            if plain:
                assert losses[-1] == pytest.approx(reference, rel=1e-6), step
        monkeypatch.undo()
        return losses, weights(task.feature_extractor, task.unet), start

    fast_losses, fast_weights, start = run(plain=False)
    plain_losses, plain_weights, _ = run(plain=True)
    assert fast_losses == pytest.approx(plain_losses, rel=1e-5)
    assert_same_moves(fast_weights, plain_weights, start, rtol=1e-3)


def test_vqgan_steps_match_the_plain_formulation(cfg, images):
    fs_cfg = cfg.copy()
    fs_cfg.model.kind = "vqgan"

    def run(plain: bool):
        torch.manual_seed(1)
        task = VQGANTask(fs_cfg)
        task.prepare(StepAccelerator())
        start = weights(task.first_stage, task.loss.discriminator)
        if plain:  # torch's default Adam on CPU: the per-tensor loop
            lr = fs_cfg.model.first_stage.lr * fs_cfg.model.first_stage.batch_size
            task.optimizer = torch.optim.Adam(task.first_stage.parameters(), lr=lr, betas=(0.5, 0.9), foreach=False)
            task.disc_optimizer = torch.optim.Adam(task.loss.discriminator.parameters(), lr=lr, betas=(0.5, 0.9), foreach=False)
        losses = []
        for step, batch in enumerate(images):  # the discriminator joins at step 2
            torch.manual_seed(100 + step)
            out = task.training_step(batch, None, step, task.accelerator)
            losses.append([out["loss"].item(), out.get("disc", torch.zeros(())).item()])
        return losses, weights(task.first_stage, task.loss.discriminator), start

    fast_losses, fast_weights, start = run(plain=False)
    plain_losses, plain_weights, _ = run(plain=True)
    assert [x for pair in fast_losses for x in pair] == pytest.approx([x for pair in plain_losses for x in pair], rel=1e-5, abs=1e-7)
    assert_same_moves(fast_weights, plain_weights, start, rtol=1e-3)


def test_cpu_schedule_one_thread_unet_and_next_batch_encoded_meanwhile(cfg, images, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "fs.safetensors"
    save_file({k: v.contiguous() for k, v in FirstStage.from_config(cfg.model.first_stage).state_dict().items()}, str(path))

    def run(prefetch: bool):
        torch.manual_seed(0)
        task = LDMTask(cfg, None, first_stage_path=path)
        task.prepare(StepAccelerator())
        if not prefetch:
            task._encoder = None
        seen, encoded = [], []

        def record(name):
            def hook(*args):
                main = threading.current_thread() is threading.main_thread()
                seen.append((name, "main" if main else "worker", torch.get_num_threads()))
            return hook

        def encode_hook(module, args):
            encoded.append(args[0])
            record("encode")()

        task.first_stage.vq.encoder.conv_in.register_forward_pre_hook(encode_hook)
        task.feature_extractor.cnn[0].register_forward_pre_hook(record("extractor forward"))
        task.unet.conv_in.register_forward_pre_hook(record("unet forward"))
        task.unet.conv_in.weight.register_hook(record("unet backward"))  # the U-Net's last backward node
        task.feature_extractor.unit_mlps.register_full_backward_hook(record("extractor backward"))
        task.unet.out[-1].weight.register_hook(record("unet backward"))
        batches = task.batches(iter([(b, None) for b in images]))
        losses = []
        for step in range(3):
            batch, _ = next(batches)
            torch.manual_seed(100 + step)
            losses.append(task.training_step(batch, None, step, task.accelerator)["loss"].item())
        assert torch.get_num_threads() == 2
        if prefetch:
            task._encoder._pending[1].result()  # the read-ahead batch's encode, still running
        return seen, encoded, losses

    torch.set_num_threads(2)  # the module's conftest restores its own count
    seen, encoded, losses = run(prefetch=True)
    assert {s for s in seen if s[0] == "encode"} == {("encode", "worker", 1)}
    assert {s for s in seen if s[0] != "encode"} == {("extractor forward", "main", 2), ("unet forward", "main", 1),
                                                     ("unet backward", "main", 1), ("extractor backward", "main", 2)}
    # batch 0 encoded on demand, batches 1-3 each during the step before (3 is the read-ahead after the last)
    assert len(encoded) == 4 and all(torch.equal(e, b.contiguous(memory_format=torch.channels_last))
                                     for e, b in zip(encoded, images))
    seen, encoded, inline_losses = run(prefetch=False)
    assert {s for s in seen if s[0] == "encode"} == {("encode", "main", 2)} and len(encoded) == 3
    assert losses == pytest.approx(inline_losses, rel=1e-6)
