"""What ``--resume`` may change, and how a new learning rate reaches optimizers restored from a checkpoint.

A resumed run continues the state of its newest checkpoint, so its config is compared with the
``config.yaml`` saved in that checkpoint before anything is built or trained:

- applied: how long and how often (``train.max_steps``, ``log_every``, ``ckpt_every``, ``sample_every``,
  ``keep_last``, ``num_sample_images``, the first stage's ``log_every`` / ``ckpt_every``), the learning
  rate ``train.lr``, the hardware (``train.mixed_precision``, ``channels_last``, ``compile``,
  ``data.num_workers``, ``data.cache_dir``), ``run.name`` and the ``eval`` section;
- refused, listed key by key: everything else (the model, the data, the batch size, the seed, the
  optimizer's other settings, the epoch length...), which would make the checkpoint's state mean
  something else. Such a change is a new run: choose another ``run.dir``.

``model.first_stage.checkpoint`` left unset means "the cached first stage", which the pipeline finds
again from the same ``model.first_stage`` and ``data`` sections.

A new ``train.lr`` is applied to the restored optimizers as the task would have set it: each
parameter group's base rate becomes the one the task derived from the new config, and its current
rate the new base times the schedule's factor at the restored step (``LambdaLR``: recomputed from the
task's own lambda; other schedulers: scaled by new base / old base).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

from ldm_dis.config.loading import ConfigError, config_to_dict, load_config

RESUMABLE = {
    "train.max_steps", "train.max_minutes", "model.first_stage.max_minutes", "train.log_every", "train.ckpt_every", "train.sample_every", "train.keep_last",
    "train.num_sample_images", "train.sample_interchange_pairs", "train.lr", "train.mixed_precision", "train.channels_last", "train.compile",
    "data.num_workers", "data.cache_dir", "run.name", "model.first_stage.log_every", "model.first_stage.ckpt_every",
}
RESUMABLE_SECTIONS = ("eval.",)


def _flat(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict):
        out: Dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def differences(saved, cfg) -> Tuple[Dict[str, Tuple[Any, Any]], Dict[str, Tuple[Any, Any]]]:
    """(applied, refused): {key: (saved value, new value)} for every key whose value differs."""
    old, new = _flat(config_to_dict(saved)), _flat(config_to_dict(cfg))
    applied, refused = {}, {}
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        unset = after is None and key in ("model.first_stage.checkpoint", "data.resolution")  # as the run recorded it
        if before == after or unset:
            continue
        resumable = key in RESUMABLE or key.startswith(RESUMABLE_SECTIONS)
        (applied if resumable else refused)[key] = (before, after)
    return applied, refused


def check_resume_config(cfg, checkpoint: str | Path) -> Dict[str, Tuple[Any, Any]]:
    """The changes ``cfg`` makes to the config saved in ``checkpoint`` (a checkpoint folder), all of them
    resumable; otherwise a ConfigError listing every key that may not change."""
    saved_file = Path(checkpoint) / "config.yaml"
    if not saved_file.is_file():
        return {}
    applied, refused = differences(load_config(saved_file), cfg)
    if refused:
        listed = "\n".join(f"  - {key}: {old!r} -> {new!r}" for key, (old, new) in refused.items())
        raise ConfigError(
            f"--resume: {len(refused)} setting(s) differ from {saved_file}, and a resumed run cannot change them:\n"
            f"{listed}\nUndo them to resume, or start a new run in another run.dir. What may change on resume: "
            f"{', '.join(sorted(RESUMABLE))} and the eval section."
        )
    return applied


def saved_config_value(checkpoint: str | Path, key: str):
    """``key`` of the config.yaml saved in a checkpoint folder (None if there is none or it lacks the key)."""
    from omegaconf import OmegaConf

    saved_file = Path(checkpoint) / "config.yaml"
    return OmegaConf.select(OmegaConf.load(saved_file), key, default=None) if saved_file.is_file() else None


# ----------------------------------------------------------------------------- learning rates
def _inner(scheduler):
    return getattr(scheduler, "scheduler", scheduler)  # accelerate wraps torch schedulers


def capture_learning_rates(task) -> Dict[str, Any]:
    """The task's freshly built learning rates (call before loading a checkpoint into it)."""
    groups = {name: [dict(lr=g["lr"], initial_lr=g.get("initial_lr", g["lr"])) for g in opt.param_groups]
              for name, opt in task.optimizers().items()}
    schedulers = {name: _inner(s).state_dict() for name, s in task.schedulers().items()}
    return {"groups": groups, "schedulers": schedulers}


def apply_learning_rates(task, fresh: Dict[str, Any]) -> List[str]:
    """Give the restored optimizers the base rates of ``fresh`` at the restored schedule position.
    Returns one line per parameter group whose rate changed."""
    import torch

    scheduled = {}
    for name, scheduler in task.schedulers().items():
        inner = _inner(scheduler)
        old_bases = list(inner.base_lrs)
        new_bases = list(fresh["schedulers"][name]["base_lrs"])
        inner.base_lrs = new_bases
        if isinstance(inner, torch.optim.lr_scheduler.LambdaLR):
            # the lambdas may hold values derived from the lr (a floor as a fraction of it): the fresh ones
            for lmbda, state in zip(inner.lr_lambdas, fresh["schedulers"][name]["lr_lambdas"]):
                if state is not None:
                    lmbda.__dict__.update(state)
            rates = [base * lmbda(inner.last_epoch) for base, lmbda in zip(new_bases, inner.lr_lambdas)]
        else:
            rates = [g["lr"] * new / old for g, new, old in zip(inner.optimizer.param_groups, new_bases, old_bases)]
        for group, rate, base in zip(inner.optimizer.param_groups, rates, new_bases):
            group["lr"], group["initial_lr"] = rate, base
        inner._last_lr = [g["lr"] for g in inner.optimizer.param_groups]
        scheduled.update({id(g): True for g in inner.optimizer.param_groups})
    changed = []
    for name, opt in task.optimizers().items():
        for i, (group, new) in enumerate(zip(opt.param_groups, fresh["groups"][name])):
            if id(group) not in scheduled:
                group["lr"] = new["lr"]
            changed.append(f"optimizer {name!r} group {i}: lr {group['lr']:.6g}")
    return changed
