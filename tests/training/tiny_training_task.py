"""A task and a dataset small enough to train in a second, with every feature the trainer must handle:
two optimizers (one with momentum), an LR schedule, dropout, an EMA copy, a buffer refitted at epoch end
from the whole training set (like DyGA's anchors), and draws from python, numpy and torch RNGs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ldm_dis.models.weights import read_tensors, with_prefix


class TinyDataset(torch.utils.data.Dataset):
    """12 images 1x8x8: a vertical bar at column 2 * x with brightness set by shade."""

    factor_names = ["x", "shade"]
    factor_sizes = [4, 3]
    num_channels = 1
    resolution = 8

    @classmethod
    def from_config(cls, data_cfg) -> "TinyDataset":
        return cls()

    def __len__(self) -> int:
        return 12

    def _image(self, factors) -> torch.Tensor:
        image = -torch.ones(1, 8, 8)
        image[:, :, 2 * int(factors[0]):2 * int(factors[0]) + 2] = -0.5 + 0.7 * int(factors[1])
        return image

    def __getitem__(self, index: int):
        factors = torch.tensor(np.unravel_index(index, self.factor_sizes), dtype=torch.long)
        return self._image(factors), factors

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.factor_sizes, size=(n, 2))

    def images_from_factors(self, factors: np.ndarray) -> np.ndarray:
        return torch.stack([self._image(f) for f in factors]).numpy()


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(64, 3))
        self.decoder = nn.Linear(3, 64)

    def forward(self, x, center):
        z = self.encoder(x)
        return z, torch.tanh(self.decoder(z - center)).view(-1, 1, 8, 8)


class Center(nn.Module):
    """State fitted at epoch end (not by gradients), saved as a buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("value", torch.zeros(3))


class TinyTask:
    def __init__(self, cfg, dataset, nan_at_step=None, hang_at_step=None, first_stage_path=None):
        self.cfg = cfg
        self.nan_at_step, self.hang_at_step = nan_at_step, hang_at_step
        self.net, self.critic, self.center = TinyNet(), nn.Linear(3, 1), Center()
        self.ema = TinyNet().requires_grad_(False)
        self.ema.load_state_dict(self.net.state_dict())
        self.opt_net = torch.optim.Adam(self.net.parameters(), lr=cfg.train.lr)
        self.opt_critic = torch.optim.SGD(self.critic.parameters(), lr=0.05, momentum=0.9)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt_net, step_size=2, gamma=0.9)
        self.epochs_seen = []

    def modules(self):
        return {"net": self.net, "ema": self.ema, "critic": self.critic, "center": self.center}

    def optimizers(self):
        return {"net": self.opt_net, "critic": self.opt_critic}

    def schedulers(self):
        return {"net": self.sched}

    def prepare(self, accelerator):
        self.net, self.critic, self.opt_net, self.opt_critic, self.sched = accelerator.prepare(
            self.net, self.critic, self.opt_net, self.opt_critic, self.sched)
        self.ema.to(accelerator.device)
        self.center.to(accelerator.device)

    def training_step(self, images, factors, step, accelerator):
        if step == self.hang_at_step:
            print("HANGING", flush=True)
            import time

            # the test kills us here, or lets us go on by creating the file TINY_RELEASE_FILE names
            release, deadline = os.environ.get("TINY_RELEASE_FILE"), time.time() + 600
            while time.time() < deadline and not (release and os.path.exists(release)):
                time.sleep(0.05)
        if np.random.rand() < 0.5:  # numpy stream
            images = images.flip(-1)
        noisy = images + 0.05 * (1 + random.random()) * torch.randn_like(images)  # python + torch streams
        z, recon = self.net(noisy, self.center.value)
        rec = F.mse_loss(recon, images)
        if step == self.nan_at_step:
            rec = rec * float("nan")
        fool = F.softplus(-self.critic(z)).mean()
        self.opt_net.zero_grad()
        accelerator.backward(rec + 0.01 * fool)
        self.opt_net.step()
        self.sched.step()
        real, fake = torch.randn_like(z), z.detach()
        critic = F.softplus(-self.critic(real)).mean() + F.softplus(self.critic(fake)).mean()
        self.opt_critic.zero_grad()
        accelerator.backward(critic)
        self.opt_critic.step()
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), accelerator.unwrap_model(self.net).parameters()):
                e.lerp_(p, 0.2)
        return {"rec": rec.detach(), "critic": critic.detach()}

    @torch.no_grad()
    def on_epoch_end(self, epoch, trainer):
        self.epochs_seen.append(epoch)
        codes = []
        self.ema.eval()
        for images, _ in trainer.eval_loader(batch_size=6):
            codes.append(trainer.accelerator.gather_for_metrics(self.ema.encoder(images)))
        codes = torch.cat(codes)
        assert len(codes) == len(trainer.dataset)
        self.center.value.copy_(codes.mean(0))
        return {"center_norm": self.center.value.norm().item()}

    @torch.no_grad()
    def encode(self, images):
        self.ema.eval()
        return self.ema.encoder(images)

    @torch.no_grad()
    def sample_images(self, images, generator):
        self.ema.eval()
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        _, recon = self.ema(images + 0.01 * noise, self.center.value)
        return torch.cat([images, recon])


class TinyLDMTask(TinyTask):
    """Stands in for the LDM: starts from the first stage's weights, so the pipeline must hand them over."""

    def __init__(self, cfg, dataset, first_stage_path=None, **kwargs):
        assert first_stage_path is not None and os.path.isfile(first_stage_path), first_stage_path
        super().__init__(cfg, dataset, **kwargs)
        self.first_stage_path = first_stage_path
        self.net.load_state_dict(with_prefix(read_tensors(first_stage_path), "ema."))


def weights_digest(trainer) -> str:
    """sha256 of every module's state (what the subprocess tests compare across processes and runs)."""
    import hashlib

    digest = hashlib.sha256()
    for name, module in sorted(trainer.task.modules().items()):
        for key, tensor in sorted(trainer.accelerator.unwrap_model(module).state_dict().items()):
            digest.update(f"{name}.{key}".encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def make_task(cfg, dataset, **kwargs):
    """Factory registered as model.kind=tiny; env variables let subprocess tests inject failures."""
    for key in ("nan_at_step", "hang_at_step"):
        value = os.environ.get(f"TINY_{key.upper()}")
        if value is not None:
            kwargs[key] = int(value)
    return TinyTask(cfg, dataset, **kwargs)


def register(monkeypatch=None):
    """Make model.kind=tiny (and tiny stand-ins for vqgan/ldm) buildable through build_task, and
    data.name=tiny through build_dataset."""
    from ldm_dis import data
    from ldm_dis.training import tasks

    entries = [(tasks.TASKS, "tiny", make_task), (tasks.TASKS, "vqgan", make_task), (tasks.TASKS, "ldm", TinyLDMTask),
               (data.DATASETS, "tiny", TinyDataset)]
    for registry, name, value in entries:
        if monkeypatch is not None:
            monkeypatch.setitem(registry, name, value)
        else:
            registry[name] = value


TINY_OVERRIDES = [
    "model.kind=tiny", "train.batch_size=4", "train.max_steps=8", "train.lr=0.01", "train.log_every=2",
    "train.ckpt_every=2", "train.keep_last=2", "train.sample_every=4", "train.num_sample_images=4",
    "data.name=tiny", "data.num_workers=0", "data.resolution=8",
    # with model.kind=ldm the tiny task stands in for the LDM: settings its real networks could have at 8x8
    "model.encoder.channels=[8]", "model.first_stage.channel_mult=[1]", "model.unet.channel_mult=[1]",
    "model.unet.attention_downsample=[1]",
]
