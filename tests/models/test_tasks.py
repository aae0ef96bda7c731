"""The two training tasks, driven by the real Trainer on tiny networks (CPU accelerator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf

from ldm_dis.bottlenecks.base import Bottleneck, BottleneckOutput
from ldm_dis.config.schema import Config
from ldm_dis.data import build_dataset
from ldm_dis.errors import UserInputError
from ldm_dis.training.checkpoint import MODEL_FILE, list_checkpoints
from ldm_dis.training.ldm_task import LDMTask
from ldm_dis.training.trainer import Trainer
from ldm_dis.training.vqgan_task import VQGANTask

TINY = {
    "data": {"name": "synth-shapes3d", "resolution": 16, "subset": 24, "num_workers": 0},
    "model": {
        "first_stage": {"n_embed": 16, "base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
                        "disc_layers": 2, "batch_size": 4},
        "encoder": {"num_units": 3, "unit_dim": 8, "stem_channels": 8, "channels": [16, 16], "hidden": 16,
                    "extra_fc": False, "unit_mlp": [8, 8]},
        "unet": {"base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_downsample": [1],
                 "num_heads": 4, "dropout": 0.0},
        "diffusion": {"sample_steps": 2},
        "bottleneck": {"kind": "none"},
    },
    "train": {"batch_size": 4, "max_steps": 2, "epoch_steps": 1, "log_every": 1, "ckpt_every": 2, "sample_every": 0},
}


def tiny_cfg(run_dir: Path, **model):
    cfg = OmegaConf.merge(OmegaConf.structured(Config), TINY, {"run": {"dir": str(run_dir)}}, {"model": model})
    return cfg


@pytest.fixture(scope="module")
def dataset():
    return build_dataset(OmegaConf.to_container(OmegaConf.create(TINY["data"])))


@pytest.fixture(scope="module")
def first_stage_file(tmp_path_factory, dataset):
    """A VQ-GAN trained 2 steps by the real trainer; its checkpoint's model.safetensors."""
    run = tmp_path_factory.mktemp("vq")
    cfg = tiny_cfg(run, kind="vqgan")
    torch.manual_seed(0)
    task = VQGANTask(cfg, dataset)
    before = task.first_stage.vq.encoder.conv_in.weight.detach().clone()
    trainer = Trainer(cfg, task, dataset, Accelerator(cpu=True))
    trainer.fit()
    assert not torch.equal(before, task.first_stage.vq.encoder.conv_in.weight)
    log = (run / "log.jsonl").read_text() if (run / "log.jsonl").exists() else ""
    (step, folder), = list_checkpoints(run)[-1:]
    return folder / MODEL_FILE, task, log


def test_vqgan_task_trains_logs_and_reconstructs(first_stage_file, dataset):
    _, task, log = first_stage_file
    images = torch.stack([dataset[i][0] for i in range(4)])
    losses = task.training_step(images, None, step=5, accelerator=task.accelerator)
    assert {"l1", "codebook", "g", "d_weight", "disc", "mse", "psnr"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    pics = task.sample_images(images, torch.Generator().manual_seed(0))
    assert pics.shape == (8, 3, 16, 16) and torch.equal(pics[:4], images)
    assert task.encode(images).shape == (4, 3, 8, 8)


def test_ldm_task_trains_encodes_and_samples(first_stage_file, dataset, tmp_path):
    path, _, _ = first_stage_file
    cfg = tiny_cfg(tmp_path)
    torch.manual_seed(0)
    task = LDMTask(cfg, dataset, first_stage_path=path)
    assert not bool(task.first_stage.latent_scale_set)
    # zero-initialised output layers: in 2 steps only the U-Net's last conv is sure to move
    ema_before = task.ema_unet.shadow.out[-1].weight.clone()
    Trainer(cfg, task, dataset, Accelerator(cpu=True)).fit()
    assert bool(task.first_stage.latent_scale_set) and task.first_stage.latent_scale.item() != 1.0
    assert not any(p.requires_grad for p in task.first_stage.parameters())
    assert not torch.equal(ema_before, task.ema_unet.shadow.out[-1].weight)
    images = torch.stack([dataset[i][0] for i in range(3)])
    units = task.encode(images)
    assert units.shape == (3, 3, 8)
    pics = task.sample_images(images, torch.Generator().manual_seed(0))
    assert pics.shape == (6, 3, 16, 16)
    again = task.sample_images(images, torch.Generator().manual_seed(0))
    assert torch.equal(pics, again)  # x_T from the generator, eta = 0
    # the checkpoint carries the latent scale
    (_, folder), = list_checkpoints(tmp_path)[-1:]
    from safetensors.torch import load_file

    saved = load_file(str(folder / MODEL_FILE))
    assert saved["first_stage.latent_scale"].item() == pytest.approx(task.first_stage.latent_scale.item())


def test_ldm_task_first_stage_errors(first_stage_file, dataset, tmp_path):
    path, _, _ = first_stage_file
    with pytest.raises(UserInputError, match="does not exist"):
        LDMTask(tiny_cfg(tmp_path), dataset, first_stage_path=tmp_path / "none.safetensors")
    cfg = tiny_cfg(tmp_path, first_stage={"n_embed": 32})
    with pytest.raises(UserInputError, match=r"quantize\.embedding\.weight: file \(16, 3\) vs model \(32, 3\)"):
        LDMTask(cfg, dataset, first_stage_path=path)
    with pytest.raises(UserInputError, match="first_stage.checkpoint"):
        LDMTask(tiny_cfg(tmp_path), dataset)
    # a checkpoint folder of the trainer means its model.safetensors
    assert LDMTask(tiny_cfg(tmp_path), dataset, first_stage_path=path.parent).first_stage.embed_dim == 3


class FittedAnchors(Bottleneck):
    """Test double of DyGA's contract: aligns tokens to fitted anchors held in fixed-shape buffers."""

    acts_on = "tokens"

    def __init__(self, n, d):
        super().__init__()
        self.register_buffer("anchors", torch.zeros(n, d))
        self.register_buffer("num_anchors", torch.zeros(n, dtype=torch.long))
        self.fitted_with, self.saved_to = None, None

    def forward(self, x, step=0):
        return BottleneckOutput(x + 0.1 * (self.anchors - x))

    def should_fit(self, epoch):
        return epoch % 1 == 0

    def fit_rows(self, num_rows, epoch):
        return getattr(self, "rows", None)

    def fit(self, features):
        self.fitted_with = features
        self.anchors.copy_(torch.from_numpy(features.mean(0)))
        self.num_anchors.fill_(2)

    def save_fit(self, path):
        self.saved_to = Path(path)


def test_epoch_end_fits_the_bottleneck_on_pre_bottleneck_tokens(first_stage_file, dataset, tmp_path):
    path, _, _ = first_stage_file
    cfg = tiny_cfg(tmp_path)
    task = LDMTask(cfg, dataset, first_stage_path=path)
    task.model.bottleneck = FittedAnchors(3, 8)
    trainer = Trainer(cfg, task, dataset, Accelerator(cpu=True))
    out = task.on_epoch_end(0, trainer)
    b = task.bottleneck
    assert b.fitted_with.shape == (len(dataset), 3, 8) and b.fitted_with.dtype == np.float32
    # the features are the current extractor's tokens before the bottleneck, in eval mode
    task.feature_extractor.eval()
    with torch.no_grad():
        expect = task.feature_extractor(torch.stack([dataset[i][0] for i in range(2)]))
    np.testing.assert_allclose(b.fitted_with[:2], expect.numpy(), rtol=1e-4, atol=1e-5)
    assert b.saved_to == tmp_path / "dyga" / "fit_epoch0"
    assert out == {"dyga/k_unit0": 2.0, "dyga/k_unit1": 2.0, "dyga/k_unit2": 2.0}


def test_the_bottleneck_chooses_the_images_its_fit_sees_once(first_stage_file, dataset, tmp_path):
    """The rows of fit_rows are the only subsample: collected in that order, fitted as they are."""
    path, _, _ = first_stage_file
    cfg = tiny_cfg(tmp_path)
    task = LDMTask(cfg, dataset, first_stage_path=path)
    task.model.bottleneck = FittedAnchors(3, 8)
    task.bottleneck.rows = np.array([1, 4, 6])
    task.on_epoch_end(0, Trainer(cfg, task, dataset, Accelerator(cpu=True)))
    task.feature_extractor.eval()
    with torch.no_grad():
        expect = task.feature_extractor(torch.stack([dataset[i][0] for i in (1, 4, 6)]))
    np.testing.assert_allclose(task.bottleneck.fitted_with, expect.numpy(), rtol=1e-4, atol=1e-5)


class RecordingAnchors(FittedAnchors):
    """FittedAnchors that also keep what they were last applied to."""

    def forward(self, x, step=0):
        self.applied_to = x.detach().clone()
        return super().forward(x, step)


@pytest.mark.parametrize("ema_extractor", [False, True])
def test_anchors_are_fitted_on_the_extractor_that_is_scored(first_stage_file, dataset, tmp_path, ema_extractor):
    path, _, _ = first_stage_file
    cfg = tiny_cfg(tmp_path)
    cfg.train.ema_feature_extractor = ema_extractor
    torch.manual_seed(0)
    task = LDMTask(cfg, dataset, first_stage_path=path)
    assert ("ema_feature_extractor" in task.modules()) == ema_extractor  # the released code keeps no extractor EMA
    trainer = Trainer(cfg, task, dataset, Accelerator(cpu=True))
    images = torch.stack([dataset[i][0] for i in range(4)])
    for step in range(3):
        task.training_step(images, None, step, trainer.accelerator)
    with torch.no_grad():  # as after many steps: the live extractor far from its EMA
        for p in task.feature_extractor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    task.model.bottleneck = RecordingAnchors(3, 8)
    task.on_epoch_end(0, trainer)
    fitted = task.bottleneck.fitted_with[:4]
    units = task.encode(images)
    scored = task.bottleneck.applied_to.numpy()
    np.testing.assert_allclose(fitted, scored, rtol=1e-5, atol=1e-6)  # the same extractor fitted and scored
    np.testing.assert_allclose(units.numpy(), scored + 0.1 * (task.bottleneck.anchors.numpy() - scored), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        live = task.feature_extractor.eval()(images).numpy()
    if ema_extractor:  # fitted and scored on the EMA copy, which is not the live extractor
        assert np.abs(live - fitted).max() > 1e-4
    else:
        np.testing.assert_allclose(live, fitted, rtol=1e-5, atol=1e-6)


def test_checkpoint_with_an_extractor_ema_needs_the_setting_back(first_stage_file, dataset, tmp_path):
    """Runs of earlier versions hold ema_feature_extractor; loading them says which settings rebuild them."""
    from ldm_dis.training.checkpoint import CheckpointError, load_task_from_checkpoint

    path, _, _ = first_stage_file
    cfg = tiny_cfg(tmp_path, first_stage={"checkpoint": str(path)})
    cfg.train.ema_feature_extractor = True
    torch.manual_seed(0)
    Trainer(cfg, LDMTask(cfg, dataset), dataset, Accelerator(cpu=True)).fit()
    _, task = load_task_from_checkpoint(tmp_path, dataset=dataset)
    assert "ema_feature_extractor" in task.modules()
    (_, folder), = list_checkpoints(tmp_path)[-1:]
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("ema_feature_extractor: true", "ema_feature_extractor: false"))
    with pytest.raises(CheckpointError, match=r"train\.ema_feature_extractor=true and model\.encoder\.final_relu=false"):
        load_task_from_checkpoint(tmp_path, dataset=dataset)


def test_factorq_discriminator_has_its_own_optimizer(first_stage_file, dataset, tmp_path):
    path, _, _ = first_stage_file
    cfg = tiny_cfg(tmp_path, bottleneck={"kind": "factorq", "factorq": {"codebook_size": 4, "disc_hidden": 8, "disc_layers": 2}})
    torch.manual_seed(0)
    task = LDMTask(cfg, dataset, first_stage_path=path)
    disc = {id(p) for p in task.bottleneck.discriminator_parameters()}
    assert disc and not disc & {id(p) for g in task.optimizer.param_groups for p in g["params"]}
    acc = Accelerator(cpu=True)
    task.prepare(acc)
    before = [p.detach().clone() for p in task.bottleneck.discriminator_parameters()]
    images = torch.stack([dataset[i][0] for i in range(4)])
    losses = task.training_step(images, None, 0, acc)
    assert {"diffusion", "kl", "tc", "tc_disc"} <= set(losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.bottleneck.discriminator_parameters()))
    assert set(task.optimizers()) == {"ldm", "bottleneck_disc"}


def test_dyga_fits_at_epoch_end_through_the_trainer(first_stage_file, dataset, tmp_path):
    path, _, _ = first_stage_file
    dyga = {"k_init": 2, "k_max": 3, "em_iters": 5, "max_split_rounds": 1, "min_count": 2.0, "num_workers": 1,
            "max_samples": 24}
    cfg = tiny_cfg(tmp_path, bottleneck={"kind": "dyga", "dyga": dyga})
    torch.manual_seed(0)
    task = LDMTask(cfg, dataset, first_stage_path=path)
    trainer = Trainer(cfg, task, dataset, Accelerator(cpu=True))
    trainer.fit()  # 2 steps, epochs of 1 step: epochs 0 and 1 end
    expected = [e for e in (0, 1) if task.bottleneck.should_fit(e)]
    assert expected and task.bottleneck.num_fits.item() == len(expected)
    for e in expected:
        assert (tmp_path / "dyga" / f"fit_epoch{e}.npz").exists()
    assert '"dyga/K_unit00"' in (tmp_path / "log.jsonl").read_text()  # K per unit in the run log
    assert (task.bottleneck.weights > 0).sum(1).min() >= 1  # every unit has an anchor
    units = task.encode(torch.stack([dataset[i][0] for i in range(2)]))
    assert units.shape == (2, 3, 8) and torch.isfinite(units).all()


def test_codebook_init_from_data_puts_every_code_on_an_encoder_output(dataset, tmp_path):
    cfg = tiny_cfg(tmp_path, kind="vqgan")
    cfg.model.first_stage.codebook_init = "data"
    torch.manual_seed(0)
    task = VQGANTask(cfg, dataset)
    images = torch.stack([dataset[i][0] for i in range(4)])
    latents = task.first_stage.encode(images).detach()
    vectors = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # 4 x 8 x 8 = 256 >= 16 codes
    task.training_step(images, None, step=0, accelerator=Accelerator(cpu=True))
    codebook = task.first_stage.vq.quantize.embedding.weight.detach()
    # one Adam step (lr 1.8e-5) later, every code is still on one of the batch's latent vectors
    assert torch.cdist(codebook, vectors).min(dim=1).values.max() < 1e-3
    assert len(torch.unique(codebook, dim=0)) == len(codebook)
    assert codebook.abs().max() > 2.0 / len(codebook)  # outside the uniform init's range
    uniform = VQGANTask(tiny_cfg(tmp_path, kind="vqgan"), dataset).first_stage.vq.quantize.embedding.weight
    assert uniform.abs().max() <= 1.0 / len(uniform)  # taming's init stays the default


def test_codebook_init_rejects_unknown_value(dataset, tmp_path):
    cfg = tiny_cfg(tmp_path, kind="vqgan")
    cfg.model.first_stage.codebook_init = "kmeans"
    with pytest.raises(UserInputError, match="codebook_init='kmeans'"):
        VQGANTask(cfg, dataset)


def test_ldm_task_draws_timesteps_as_configured(first_stage_file, dataset, tmp_path, monkeypatch):
    """model.diffusion.timestep_sampling reaches the training loss (uniform by default, as the papers)."""
    import ldm_dis.models.diffusion as diffusion

    path, _, _ = first_stage_file
    drawn = []
    real = diffusion.sample_timesteps
    monkeypatch.setattr(diffusion, "sample_timesteps",
                        lambda *a, **k: drawn.append((k["sampling"], k["mean"], k["std"])) or real(*a, **k))
    images = torch.stack([dataset[i][0] for i in range(4)])
    for diff in ({}, {"timestep_sampling": "logit_normal", "logit_normal_mean": -0.5, "logit_normal_std": 0.8}):
        task = LDMTask(tiny_cfg(tmp_path, diffusion=diff), dataset, first_stage_path=path)
        task.prepare(Accelerator(cpu=True))
        task.training_step(images, None, step=0, accelerator=task.accelerator)
    assert drawn == [("uniform", 0.0, 1.0), ("logit_normal", -0.5, 0.8)]


def test_ldm_task_weights_timesteps_and_gives_the_extractor_its_own_lr(first_stage_file, dataset, tmp_path):
    path, _, _ = first_stage_file
    plain = LDMTask(tiny_cfg(tmp_path), dataset, first_stage_path=path)
    assert plain.model.loss_weights is None and len(plain.optimizer.param_groups) == 1
    cfg = tiny_cfg(tmp_path, diffusion={"loss_weighting": "pdae"})
    cfg.train.extractor_lr = 3e-3
    task = LDMTask(cfg, dataset, first_stage_path=path)
    assert task.model.loss_weights.shape == (cfg.model.diffusion.num_train_timesteps,)
    (rest, extractor) = task.optimizer.param_groups
    assert extractor["lr"] == 3e-3 and rest["lr"] == cfg.train.lr
    assert {id(p) for p in extractor["params"]} == {id(p) for p in task.feature_extractor.parameters()}
    assert len(rest["params"]) + len(extractor["params"]) == len(task.main_params)
    task.prepare(Accelerator(cpu=True))
    images = torch.stack([dataset[i][0] for i in range(4)])
    assert torch.isfinite(task.training_step(images, None, step=0, accelerator=task.accelerator)["loss"])


def test_conditioning_gap_benchmark_compares_own_and_rolled_units(first_stage_file, dataset, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from conditioning_gap import conditioning_gap

    path, _, _ = first_stage_file
    torch.manual_seed(0)  # the weights must not depend on which tests ran before
    # signed tokens: a tiny random extractor with the final ReLU can give every image the same (zero) units
    task = LDMTask(tiny_cfg(tmp_path, encoder={"final_relu": False}), dataset, first_stage_path=path)
    model = task.model.eval()
    torch.manual_seed(3)
    for p in model.unet.parameters():  # zero-initialised output layers would hide the context
        p.data.normal_(0, 0.2)
    extractors = [task.feature_extractor, getattr(getattr(task, "ema_feature_extractor", None), "shadow", None)]
    for extractor in filter(None, extractors):  # at init, different images give units equal to 1e-4
        for p in extractor.parameters():
            p.data.normal_(0, 0.3)
    distinct = torch.stack([dataset[i][0] for i in range(4)])
    rows = conditioning_gap(model, distinct, [10, 500], torch.Generator().manual_seed(0))
    assert [r["t"] for r in rows] == [10, 500]
    assert all(r["gap"] == pytest.approx(r["shuffled"] - r["own"]) and r["gap"] != 0 for r in rows)
    same = distinct[:1].expand(4, -1, -1, -1)  # every image's units are also the rolled ones
    # the same units either way: no gap, up to float rounding (kernels may differ with the inputs' memory layout)
    assert all(r["gap"] == pytest.approx(0, abs=1e-6) for r in conditioning_gap(model, same, [10, 500], torch.Generator().manual_seed(0)))


def test_protocol_released_reaches_the_networks(first_stage_file, dataset, tmp_path):
    """A config built without load_config follows `protocol` too (build_task resolves it)."""
    from ldm_dis.training.tasks import build_task

    path, _, _ = first_stage_file
    paper = build_task(tiny_cfg(tmp_path, bottleneck={"kind": "dyga"}), dataset, first_stage_path=path)
    cfg = tiny_cfg(tmp_path, bottleneck={"kind": "dyga"})
    cfg.protocol = "released"
    released = build_task(cfg, dataset, first_stage_path=path)
    resamplers = lambda task: [getattr(m, "resample", None) for m in task.unet.modules() if hasattr(m, "resample")]  # noqa: E731
    assert "down" in resamplers(released) and "down" not in resamplers(paper)
    assert (paper.unet.skip_dropout.levels, released.unet.skip_dropout.levels) == ((2,), (1, 2))
    assert (paper.bottleneck.alignment, released.bottleneck.alignment) == ("paper", "released")


def test_first_stage_probe_reads_factors_from_a_trained_first_stage(first_stage_file):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from first_stage_probe import probe_factors, probe_first_stage, psnr

    # the probe itself: an input that holds the factor is read perfectly, one that holds only noise is not
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(400, 1))
    onehot = np.eye(4)[factors[:, 0]] + 0.01 * rng.normal(size=(400, 4))
    (row,) = probe_factors({"holds": onehot, "noise": rng.normal(size=(400, 4))}, factors, ["f"], [4], seed=0)
    assert row["chance"] == 0.25 and row["holds"] == 1.0 and row["noise"] < 0.5
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x + 0.2, x) == pytest.approx(10 * np.log10(4 / 0.04))

    # on the tiny trained VQ-GAN's run folder: its dataset's factors, its latents, one accuracy per input
    path, _, _ = first_stage_file
    result = probe_first_stage(str(path.parents[2]), num_images=24, seed=0)
    assert [r["factor"] for r in result["rows"]] == ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert result["latent_dims"] == 3 * 8 * 8 and result["num_images"] == 24 and result["steps"] == 2
    assert all(0 <= r[k] <= 1 for r in result["rows"] for k in ("pixels", "latents", "reconstructions"))
    assert np.isfinite(result["psnr"])
