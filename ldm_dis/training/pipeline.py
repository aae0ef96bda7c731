"""One command trains what a config asks for, including the stages it depends on.

For ``model.kind=ldm`` the latent diffusion model needs a VQ-GAN first stage. Unless
``model.first_stage.checkpoint`` names one, the first stage lives in a cache shared by all runs of the
user, ``<cache>/<hash>/``, where ``hash`` covers the ``model.first_stage`` and ``data`` sections (minus
keys that do not change the weights; ``data.path`` made absolute). The cache is ``run.first_stage_cache``
when set, else the user cache folder (:func:`user_first_stage_cache`). A finished first stage is reused,
an unfinished one resumed, a missing one trained; then the LDM is trained on top of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from ldm_dis.config.loading import config_to_dict
from ldm_dis.config.schema import TrainConfig
from ldm_dis.training.checkpoint import (
    MODEL_FILE, CheckpointError, find_checkpoints, list_checkpoints, remove_leftovers, resolve_checkpoint, task_kwargs,
)
from ldm_dis.training.resume_changes import check_resume_config
from ldm_dis.training.rng import seed_everything
from ldm_dis.training.run_lock import hold_run_folder
from ldm_dis.training.run_log import read_log
from ldm_dis.training.trainer import Trainer, make_accelerator

# keys that do not change the first stage's weights, left out of its cache key
_UNHASHED = {"first_stage": ("checkpoint", "log_every", "ckpt_every", "max_minutes"), "data": ("num_workers", "cache_dir")}
FIRST_STAGE_SEED = 0  # the cached first stage is a function of its config alone, whichever run trains it


def build_trainer(cfg, dataset, accelerator) -> Trainer:
    """The task comes from ``build_task``, seeded so every process starts equal."""
    from ldm_dis.training.tasks import build_task

    seed_everything(cfg.train.seed)
    return Trainer(cfg, build_task(cfg, dataset, **task_kwargs(cfg)), dataset, accelerator)


CACHE_ENV = "LDM_DIS_CACHE"


def user_first_stage_cache() -> Path:
    """``$LDM_DIS_CACHE/first_stage``, else ``$XDG_CACHE_HOME/ldm_dis/first_stage``, else
    ``~/.cache/ldm_dis/first_stage``: one place per user, whatever folder a run is started from."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "first_stage"
    root = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return root / "ldm_dis" / "first_stage"


def first_stage_hash(cfg) -> str:
    sections = {"first_stage": config_to_dict(cfg.model.first_stage), "data": config_to_dict(cfg.data)}
    for section, keys in _UNHASHED.items():
        for key in keys:
            sections[section].pop(key, None)
    if sections["data"].get("path"):  # the cache is shared across folders: a relative path would be ambiguous
        sections["data"]["path"] = str(Path(sections["data"]["path"]).expanduser().resolve())
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


def first_stage_config(cfg):
    """The config of the VQ-GAN run that ``cfg`` (an LDM config) depends on."""
    stage = cfg.model.first_stage
    cache = Path(cfg.run.first_stage_cache) if cfg.run.first_stage_cache else user_first_stage_cache()
    fs_cfg = copy.deepcopy(cfg)  # still typed: a wrong key below would fail loudly
    key = first_stage_hash(cfg)
    fs_cfg.run.dir = str(cache / key)
    fs_cfg.run.name = f"first_stage-{key}"
    fs_cfg.model.kind = "vqgan"
    # the train section is rebuilt from model.first_stage alone (the LDM's lr, EMA... must not leak into
    # the cache); only choices about the hardware are carried over
    train = cfg.train
    fs_cfg.train = OmegaConf.structured(TrainConfig(
        max_steps=stage.max_steps, max_minutes=stage.max_minutes, batch_size=stage.batch_size, log_every=stage.log_every,
        ckpt_every=stage.ckpt_every, sample_every=stage.ckpt_every, seed=FIRST_STAGE_SEED,
        keep_last=train.keep_last, num_sample_images=train.num_sample_images,
        mixed_precision=train.mixed_precision, channels_last=train.channels_last, compile=train.compile,
        log_with=train.log_with,
    ))
    return fs_cfg


def training_finished(run_dir, train) -> bool:
    """Whether the run in ``run_dir`` is done for the train section ``train``: its newest checkpoint
    reached ``train.max_steps``, or, while ``train.max_minutes`` is set, its last training call ended
    on that time budget at the newest checkpoint (a budgeted run is trained once, not topped up)."""
    found = list_checkpoints(run_dir)
    if not found:
        return False
    if found[-1][0] >= train.max_steps:
        return True
    if train.max_minutes is None:
        return False
    ends = [r for r in read_log(run_dir) if "end" in r]
    return bool(ends) and ends[-1]["end"] == "max_minutes" and ends[-1]["step"] == found[-1][0]


def ensure_first_stage(cfg, dataset, accelerator) -> Path:
    """The weights file of the first stage ``cfg`` needs: given, cached, resumed or trained now."""
    given = cfg.model.first_stage.checkpoint
    if given:
        if not Path(given).exists():
            raise CheckpointError(f"model.first_stage.checkpoint={given!r} does not exist")
        return Path(given)
    fs_cfg = first_stage_config(cfg)
    # runs sharing the cache entry take turns: one trains it, the others wait and then reuse it
    with hold_run_folder(fs_cfg.run.dir, accelerator, wait=True, what="first-stage cache"):
        return _cached_first_stage(fs_cfg, dataset, accelerator)


def _cached_first_stage(fs_cfg, dataset, accelerator) -> Path:
    main = accelerator.is_main_process
    if main:
        _clean(fs_cfg.run.dir, "first stage")
        for _, folder, reason in find_checkpoints(fs_cfg.run.dir)[1]:  # the cache is ours: retrain what is lost
            print(f"first stage: removing damaged checkpoint {folder} ({reason}); its steps are trained again")
            shutil.rmtree(folder)
    accelerator.wait_for_everyone()
    found = list_checkpoints(fs_cfg.run.dir)
    if found and training_finished(fs_cfg.run.dir, fs_cfg.train):
        if main:
            print(f"first stage: reusing {found[-1][1]}")
    else:
        if main:
            print(f"first stage: training {fs_cfg.train.max_steps} steps in {fs_cfg.run.dir}")
        trainer = build_trainer(fs_cfg, dataset, accelerator)
        if found:
            trainer.resume(found[-1][1])  # same hash, same config: an interrupted first stage continues
        trainer.fit()
        del trainer
        accelerator.free_memory()  # drop the accelerator's references to the first stage's modules
        found = list_checkpoints(fs_cfg.run.dir)
    return (found[-1][1] / MODEL_FILE).resolve()


def run_training(cfg, resume: bool = False, export_codes: Optional[str] = None, dataset=None,
                 accelerator=None) -> Trainer:
    """Train what ``cfg`` describes (with its first stage); optionally export the codes afterwards.
    ``dataset``: a dataset object built in Python (default ``build_dataset(cfg.data)``)."""
    accelerator = accelerator if accelerator is not None else make_accelerator(cfg)
    with hold_run_folder(cfg.run.dir, accelerator):  # before anything in run.dir is read or written
        return _train(cfg, resume, export_codes, dataset, accelerator)


def _clean(run_dir, what: str) -> None:
    """Leftovers of processes killed while saving (no live writer: the caller holds the folder)."""
    for line in remove_leftovers(run_dir):
        print(f"{what}: {line} (left by a process that ended while saving)")


def _train(cfg, resume, export_codes, dataset, accelerator) -> Trainer:
    if accelerator.is_main_process:
        _clean(cfg.run.dir, "run.dir")
    accelerator.wait_for_everyone()
    if resume and list_checkpoints(cfg.run.dir):  # before the first stage: a refused change trains nothing
        newest = resolve_checkpoint(cfg.run.dir, quiet=True)
        for key, (old, new) in check_resume_config(cfg, newest).items():
            if accelerator.is_main_process:
                print(f"resume: {key} {old!r} -> {new!r}")
    if dataset is None:
        from ldm_dis.data import build_dataset

        dataset = build_dataset(cfg.data)
    if cfg.data.resolution is None:  # recorded as served, so config.yaml and the first stage's hash say it
        cfg.data.resolution = dataset.resolution
    if cfg.model.kind == "ldm":
        # recorded in the run's config.yaml, so the run can be rebuilt from its folder alone
        cfg.model.first_stage.checkpoint = str(ensure_first_stage(cfg, dataset, accelerator))
    trainer = build_trainer(cfg, dataset, accelerator)
    if resume:
        trainer.resume()
    trainer.fit()
    if export_codes is not None:  # "" = the default place, run.dir/codes.npz
        from ldm_dis.training.export import export_from_trainer

        path = export_from_trainer(trainer, export_codes or None)
        if accelerator.is_main_process:
            print(f"codes written to {path}")
    return trainer
