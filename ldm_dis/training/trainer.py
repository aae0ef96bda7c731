"""The generic training loop: Accelerate, data order, progress bar, logs, samples, checkpoints, resume,
NaN checks and epoch hooks. *What* is trained and how one step is computed belongs to the task
(:mod:`ldm_dis.training.task`); tasks are made by :func:`ldm_dis.training.tasks.build_task`.

    trainer = Trainer(cfg, task, dataset)   # task built after seed_everything(cfg.train.seed)
    trainer.resume()                         # optional: newest checkpoint of cfg.run.dir
    trainer.fit()                            # until cfg.train.max_steps

Step numbers count *completed* optimization steps: ``checkpoints/step_0000100`` holds the state after
100 steps, and the task's ``training_step(..., step)`` receives the number of steps done before it.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ldm_dis.config.loading import to_yaml
from ldm_dis.errors import UserInputError
from ldm_dis.training.checkpoint import (
    CONFIG_FILE, CheckpointError, checkpoint_path, find_checkpoints, last_good_checkpoint, load_checkpoint,
    load_modules, prune_checkpoints, resolve_checkpoint, save_checkpoint,
)
from ldm_dis.training.budget import TrainingBudget
from ldm_dis.training.data_order import ordered_loader, steps_per_pass, training_loader
from ldm_dis.training.integrity import named_tensors, non_finite_tensors
from ldm_dis.training.resume_changes import apply_learning_rates, capture_learning_rates, saved_config_value
from ldm_dis.training.rng import capture_rng, restore_rng, seed_everything
from ldm_dis.training.run_log import TRACKER_DIR, RunLog, tracker_names


class TrainingDiverged(RuntimeError):
    """A loss term or a weight became NaN or infinite; the run stops before writing anything else."""


MIXED_PRECISION = ("no", "fp16", "bf16")  # passed to Accelerate; fp8 needs libraries and hardware we do not set up


def make_accelerator(cfg):
    """The run's Accelerator. ``train.mixed_precision`` None leaves the precision to accelerate (``accelerate
    launch --mixed_precision``, its config file, ACCELERATE_MIXED_PRECISION); a value in the config wins."""
    from accelerate import Accelerator, DataLoaderConfiguration

    # split_batches: our batch sizes are global, so an LR scheduler steps once per optimizer step
    # whatever the number of processes, and ordered_loader splits each batch across processes
    return Accelerator(mixed_precision=cfg.train.mixed_precision,  # a bare YAML `no` is "no" (load_config)
                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                       log_with=tracker_names(cfg.train.log_with),
                       project_dir=str(Path(cfg.run.dir) / TRACKER_DIR))


class Trainer:
    """Drives one task. Attributes a task's ``on_epoch_end`` may use: ``accelerator``, ``dataset``,
    ``run_dir``, ``step``, ``epoch``, ``cfg`` and :meth:`eval_loader`."""

    def __init__(self, cfg, task, dataset, accelerator=None):
        self.cfg, self.task, self.dataset = cfg, task, dataset
        self.accelerator = accelerator if accelerator is not None else make_accelerator(cfg)
        self.run_dir = Path(cfg.run.dir)
        self.step = 0
        self.resumed_from: Optional[Path] = None
        train = cfg.train
        for key in ("max_steps", "batch_size", "log_every", "ckpt_every", "keep_last"):
            if train[key] < 1:
                raise UserInputError(f"train.{key}={train[key]} must be at least 1")
        if train.max_minutes is not None and train.max_minutes <= 0:
            raise UserInputError(f"train.max_minutes={train.max_minutes} must be positive (or null: no time limit)")
        self.steps_per_epoch = train.epoch_steps or steps_per_pass(len(dataset), train.batch_size)
        task.prepare(self.accelerator)
        # every process was built from the same seed (same initial weights); now give each its own
        # stream so that dropout masks and diffusion timesteps differ between processes
        seed_everything(train.seed + self.accelerator.process_index)
        self.log = RunLog(self.run_dir, enabled=self.accelerator.is_main_process, accelerator=self.accelerator)

    @property
    def epoch(self) -> int:
        """Completed epochs (an epoch is a pass over the data, or ``train.epoch_steps`` steps)."""
        return self.step // self.steps_per_epoch

    def eval_loader(self, batch_size: Optional[int] = None, indices=None):
        """The training set (or ``indices`` of it) in dataset order, each batch split across processes.
        ``self.accelerator.gather_for_metrics(outputs)`` returns a batch's outputs in order on every process."""
        return ordered_loader(self.dataset, self.accelerator, batch_size or self.cfg.train.batch_size,
                              indices, self.cfg.data.num_workers)

    # ------------------------------------------------------------------------------------ the loop
    def fit(self) -> None:
        acc, train = self.accelerator, self.cfg.train
        if self.resumed_from is None and any(find_checkpoints(self.run_dir)):  # damaged ones count too
            raise CheckpointError(
                f"run.dir {str(self.run_dir)!r} already holds checkpoints; pass --resume to continue that "
                "run, or choose another run.dir"
            )
        if self.resumed_from is None:
            self.log.truncate_after(0)  # records of an earlier start killed before its first checkpoint
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(to_yaml(self.cfg))
            if self.cfg.train.mixed_precision is None and acc.mixed_precision != "no":
                print(f"mixed precision {acc.mixed_precision}, as accelerate was told (train.mixed_precision is unset)")
        self.log.start(self.cfg)
        batches = iter(training_loader(self.dataset, train.batch_size, train.seed, self.step, acc,
                                       self.cfg.data.num_workers))
        if hasattr(self.task, "batches"):  # the task may read ahead (same batches, same order)
            batches = self.task.batches(batches)
        sample_batch = self._sample_batch() if train.sample_every else None
        bar = tqdm(total=train.max_steps, initial=self.step, disable=not acc.is_main_process,
                   desc=self.cfg.run.name, dynamic_ncols=True)
        sums, count, since = defaultdict(float), 0, time.perf_counter()
        budget = TrainingBudget(train.max_minutes, acc, self.step)
        while self.step < train.max_steps:
            images, factors = next(batches)
            images = images.to(acc.device, non_blocking=True)
            factors = factors.to(acc.device, non_blocking=True)
            losses = self.task.training_step(images, factors, self.step, acc)
            values = self._checked(losses)  # stops the run on NaN/inf before anything is written
            self.step += 1
            bar.update(1)
            for key, value in values.items():
                sums[key] += value
            count += 1

            out_of_time = budget.spent()
            last = self.step == train.max_steps or out_of_time  # a time budget ends at a checkpoint too
            if self.step % train.log_every == 0 or last:
                seconds = time.perf_counter() - since
                budget.step_seconds += seconds
                means = {key: total / count for key, total in sums.items()}
                speed = train.batch_size * count / max(seconds, 1e-9)
                self.log.write(self.step, {**means, **self._learning_rates()}, epoch=self.epoch,
                               images_per_s=round(speed, 2))
                bar.set_postfix({**{k: f"{v:.4g}" for k, v in means.items()}, "img/s": f"{speed:.1f}"})
                sums, count, since = defaultdict(float), 0, time.perf_counter()
            hooks_started = time.perf_counter()
            if self.step % self.steps_per_epoch == 0:
                self._end_epoch(self.epoch - 1)
            if train.sample_every and (self.step % train.sample_every == 0 or last):
                self.save_samples(sample_batch)
            if self.step % train.ckpt_every == 0 or last:
                self.save()
            since += time.perf_counter() - hooks_started  # images/s measures training steps only
            if out_of_time:
                break
        bar.close()
        self.log.write(self.step, {}, **budget.summary(self.step, train.batch_size))
        self.log.close()

    def _checked(self, losses: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """Loss terms averaged over processes; raises :class:`TrainingDiverged` naming the step and the term."""
        acc = self.accelerator
        names = sorted(losses)
        local = torch.stack([torch.as_tensor(losses[k], dtype=torch.float32, device=acc.device).detach().reshape(())
                             for k in names])
        every = acc.gather(local[None]).reshape(acc.num_processes, len(names)).cpu()  # every process sees all
        bad = (~torch.isfinite(every)).nonzero()
        if len(bad):
            rank, term = bad[0].tolist()
            good = last_good_checkpoint(self.run_dir)
            raise TrainingDiverged(
                f"step {self.step + 1}: loss term {names[term]!r} is {every[rank, term].item()} "
                f"(process {rank}); training stopped. Last good checkpoint: {good or 'none'}"
            )
        return dict(zip(names, every.mean(0).tolist()))

    def _learning_rates(self) -> Dict[str, float]:
        return {f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.task.optimizers().items()}

    @contextlib.contextmanager
    def _same_train_modes(self):
        """Hooks may switch modules to eval mode; the loop continues with the modes it had."""
        modes = [(m, m.training) for root in self.task.modules().values() for m in root.modules()]
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training

    def _end_epoch(self, epoch: int) -> None:
        with self._same_train_modes():
            extra = self.task.on_epoch_end(epoch, self)
        if extra:
            self.log.write(self.step, {k: float(v) for k, v in extra.items()}, epoch_end=epoch)

    # ------------------------------------------------------------------------------------ pictures
    def _sample_batch(self) -> torch.Tensor:
        """The same images every time: a fixed random choice (datasets are often stored in factor order)."""
        count = min(self.cfg.train.num_sample_images, len(self.dataset))
        indices = np.random.default_rng(self.cfg.train.seed).choice(len(self.dataset), count, replace=False)
        return torch.stack([self.dataset[int(i)][0] for i in indices]).to(self.accelerator.device)

    def save_samples(self, images: torch.Tensor) -> Path:
        """``run.dir/samples/step_XXXXXXX.png`` from ``task.sample_images`` (run on every process, so that
        collective operations inside wrapped modules match; the main process writes)."""
        acc = self.accelerator
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        devices = [acc.device] if acc.device.type == "cuda" else []
        # forked RNG: drawing samples must not change the training stream (a run with samples off is the same run)
        with self._same_train_modes(), torch.random.fork_rng(devices=devices):
            generator = torch.Generator(device=acc.device).manual_seed(self.cfg.train.seed)
            pictures = self.task.sample_images(images, generator)
        if acc.is_main_process:
            from ldm_dis.viz.grids import image_grid

            path.parent.mkdir(parents=True, exist_ok=True)
            grid = image_grid(pictures.detach().float().cpu(), nrow=min(8, len(pictures)), title=f"step {self.step}",
                              caption=getattr(self.task, "sample_caption", "") or None)
            grid.save(path)
            self.log.image("samples", np.asarray(grid.convert("RGB")), self.step)
        pairs = self.cfg.train.sample_interchange_pairs
        if pairs and hasattr(self.task, "interchange_panels") and len(images) >= 2 * pairs:
            self.save_interchange(images[:2 * pairs])
        return path

    def save_interchange(self, images: torch.Tensor) -> Path:
        """``run.dir/samples/interchange_XXXXXXX.png``: the first half of ``images`` interchanged with the
        second (``task.interchange_panels``, every process; the main process writes and logs it)."""
        acc = self.accelerator
        path = self.run_dir / "samples" / f"interchange_{self.step:07d}.png"
        devices = [acc.device] if acc.device.type == "cuda" else []
        with self._same_train_modes(), torch.random.fork_rng(devices=devices):
            panels = self.task.interchange_panels(images, self.cfg.train.seed)
        if acc.is_main_process:
            from ldm_dis.viz.interchange_grid import interchange_grid

            p = len(images) // 2
            grid = interchange_grid(images[:p].cpu(), images[p:].cpu(), panels.cpu(), title=f"step {self.step}")
            path.parent.mkdir(parents=True, exist_ok=True)
            grid.save(path)
            self.log.image("interchange", np.asarray(grid.convert("RGB")), self.step)
        return path

    # --------------------------------------------------------------------------------- checkpoints
    def _unwrapped(self) -> Dict[str, torch.nn.Module]:
        return {name: self.accelerator.unwrap_model(m) for name, m in self.task.modules().items()}

    def save(self) -> Optional[Path]:
        """Checkpoint the current step (the main process writes; all processes take part)."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        self._check_weights()
        rngs = gather_object([capture_rng(acc.device)]) if acc.num_processes > 1 else [capture_rng(acc.device)]
        path = None
        if acc.is_main_process:
            state = {
                "modules": {name: m.state_dict() for name, m in self._unwrapped().items()},
                "optimizers": {name: opt.state_dict() for name, opt in self.task.optimizers().items()},
                "schedulers": {name: s.state_dict() for name, s in self.task.schedulers().items()},
                "step": self.step,
                "epoch": self.epoch,
                "num_processes": acc.num_processes,
                "rng": rngs,  # one entry per process, in process order
            }
            path = save_checkpoint(checkpoint_path(self.run_dir, self.step), state, to_yaml(self.cfg))
            prune_checkpoints(self.run_dir, self.cfg.train.keep_last)
        acc.wait_for_everyone()
        return path

    def _check_weights(self) -> None:
        """Raise :class:`TrainingDiverged` (on every process) if a weight or an optimizer state is NaN or
        inf: a finite loss does not make finite weights (an infinite learning rate, for one)."""
        tensors = [*named_tensors({n: m.state_dict() for n, m in self._unwrapped().items()}),
                   *named_tensors({f"optimizer {n}": o.state_dict()["state"] for n, o in self.task.optimizers().items()})]
        bad, count = non_finite_tensors(tensors)
        acc = self.accelerator
        worst = acc.gather(torch.tensor([len(bad)], device=acc.device)).max().item()
        if worst:
            shown = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "") if bad else "on another process"
            raise TrainingDiverged(
                f"step {self.step}: {worst} of {count} tensors of the weights and optimizer states are NaN or "
                f"infinite ({shown}); no checkpoint is written. Last good checkpoint: "
                f"{last_good_checkpoint(self.run_dir) or 'none'}"
            )

    def resume(self, checkpoint=None) -> Path:
        """Restore everything from ``checkpoint`` (default: the newest in run.dir), on every process."""
        acc = self.accelerator
        if checkpoint is None and not any(find_checkpoints(self.run_dir)):
            raise CheckpointError(f"--resume: run.dir {str(self.run_dir)!r} holds no checkpoint to resume from")
        path = resolve_checkpoint(checkpoint or self.run_dir, quiet=not acc.is_main_process)  # newest intact
        fresh_rates = capture_learning_rates(self.task)  # what the task derived from this run's train.lr
        state = load_checkpoint(path)
        bad, _ = non_finite_tensors(named_tensors(state["modules"]))
        if bad:  # never written by this trainer, which checks the weights before saving
            raise CheckpointError(
                f"{path}: {len(bad)} weight tensors are NaN or infinite (e.g. {bad[0]}); resuming would diverge at "
                f"once. Last good checkpoint: {last_good_checkpoint(self.run_dir) or 'none'} (remove the newer ones "
                "to resume from it)"
            )
        load_modules(self._unwrapped(), state["modules"], str(path))
        for kind, objects in (("optimizers", self.task.optimizers()), ("schedulers", self.task.schedulers())):
            saved = state[kind]
            if set(saved) != set(objects):
                raise CheckpointError(f"{path}: the task's {kind} {sorted(objects)} do not match the checkpoint's {sorted(saved)}")
            for name, obj in objects.items():
                try:
                    obj.load_state_dict(saved[name])
                except (ValueError, KeyError, RuntimeError) as exc:
                    raise CheckpointError(f"{path}: {kind[:-1]} {name!r} does not fit the checkpoint: {exc}") from None
        saved_lr = saved_config_value(path, "train.lr")
        if saved_lr is not None and saved_lr != self.cfg.train.lr:  # --resume train.lr=...: the new rate, not the saved one
            lines = apply_learning_rates(self.task, fresh_rates)
            if acc.is_main_process:
                print("resume: learning rates now " + "; ".join(lines))
        self.step = int(state["step"])
        if len(state["rng"]) == acc.num_processes:
            restore_rng(state["rng"][acc.process_index], acc.device)
        else:  # still deterministic, but not the stream an uninterrupted run would have drawn
            seed_everything(self.cfg.train.seed + 1_000_003 * self.step + acc.process_index)
            if acc.is_main_process:
                print(f"warning: {path} was written by {len(state['rng'])} processes, this run has "
                      f"{acc.num_processes}: random streams are reseeded, the data order is kept")
        self.resumed_from = path
        self.log.truncate_after(self.step)
        acc.wait_for_everyone()
        return path
