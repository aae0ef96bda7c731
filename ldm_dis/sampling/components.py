"""A trained LDM run opened for pictures: the model (:class:`ldm_dis.models.ldm.LatentDiffusion`, EMA
U-Net, eval mode), the run's config and, only when a picture shows dataset images, its dataset.

    ldm = load_ldm_components("runs/quickstart")          # a run folder, a checkpoint folder or a file in one
    images, factors = dataset_images(ldm.dataset, 6, seed=0, device=ldm.device)
    units = ldm.model.encode(images)                       # (6, N, D): extractor + bottleneck, eval mode
    panels = ldm.model.interchange(units[:3], units[3:], ldm.model.noise(seed=0))

The weights come from the run's own ``model.safetensors`` (the first stage included), so a run folder
copied elsewhere opens the same; the dataset is built from the run's ``data`` section, with ``data_path``
in place of ``data.path`` when the data file is elsewhere on this machine (procedural ``synth-*`` data
needs no file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ldm_dis.errors import UserInputError


@dataclass
class LDMComponents:
    model: nn.Module  # LatentDiffusion, EMA U-Net, eval mode
    cfg: object  # the run's resolved config
    checkpoint: Path  # the checkpoint folder that was loaded
    data_path: Optional[str] = None  # replaces the run's data.path
    _dataset: object = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def encode(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.model.encode

    @property
    def dataset(self):
        """The run's dataset, built on first use (pictures of generated images alone never build it)."""
        if self._dataset is None:
            self._dataset = run_dataset(self.cfg, self.data_path)
        return self._dataset


def run_dataset(cfg, data_path: Optional[str] = None):
    """The dataset of a run's config; ``data_path`` replaces ``data.path`` (a run whose data file moved)."""
    import copy

    from ldm_dis.data import build_dataset

    data = copy.deepcopy(cfg.data)
    if data_path is not None:
        data.path = str(data_path)
    try:
        return build_dataset(data)
    except (UserInputError, OSError) as exc:
        if data_path is None and data.path:
            raise UserInputError(f"{exc}\n(the run was trained on data.path={data.path!r}; if the file is elsewhere "
                                 f"on this machine, pass --data PATH)") from None
        raise


def load_ldm_components(checkpoint: str | Path, data_path: Optional[str] = None) -> LDMComponents:
    """Open a ``model.kind=ldm`` run for pictures (EMA U-Net; the extractor DyGA was fitted on), or a saved
    model folder that carries the ``config.yaml`` of its data (as ``ldm-dis import`` writes)."""
    from ldm_dis.models.ldm import LatentDiffusion
    from ldm_dis.models.pretrained import is_saved_model
    from ldm_dis.runs import CONFIG_FILE, load_run_config, resolve_checkpoint

    if is_saved_model(checkpoint):
        from ldm_dis.config.loading import load_config

        folder = Path(checkpoint)
        if not (folder / CONFIG_FILE).is_file():
            raise UserInputError(f"{folder} is a saved model without {CONFIG_FILE}: the pictures need the data section "
                                 f"of a config there (data.name, data.path, data.resolution)")
        return LDMComponents(model=LatentDiffusion.from_pretrained(folder), cfg=load_config(folder / CONFIG_FILE),
                             checkpoint=folder, data_path=data_path)
    folder = resolve_checkpoint(checkpoint)
    cfg = load_run_config(folder)
    if cfg.model.kind != "ldm":
        raise UserInputError(f"{checkpoint} is a model.kind={cfg.model.kind!r} run; these pictures need an ldm run "
                             f"(for the VAE baselines: ldm-dis sample traverse / swap)")
    model = LatentDiffusion.from_pretrained(folder, ema=True)
    return LDMComponents(model=model, cfg=cfg, checkpoint=folder, data_path=data_path)


def dataset_images(dataset, count: int, seed: int, device=None) -> Tuple[torch.Tensor, np.ndarray]:
    """``count`` distinct dataset images chosen by ``seed``: (images (count, C, H, W) in [-1, 1], factors (count, F))."""
    n = len(dataset)
    if count > n:
        raise UserInputError(f"{count} images asked for, the dataset has {n}")
    idx = dataset.grid_indices(np.random.default_rng(seed).choice(n, count, replace=False).astype(np.int64))
    images = torch.from_numpy(np.ascontiguousarray(dataset.images_at(idx)))
    return images.to(device) if device is not None else images, dataset.factors_of(idx)


@torch.no_grad()
def encode_in_batches(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """images (n, C, H, W) -> units (n, N, D) on the CPU, ``batch_size`` images at a time."""
    return torch.cat([encode(images[i:i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)])
