"""Gradient spikes of DyGA's straight-through Gumbel step (tau = 1e-4) in a real CPU run.

    python benchmarks/gumbel_spikes.py                                  # quickstart sizes, released tokens
    python benchmarks/gumbel_spikes.py --before 100 --after 200 model.encoder.final_relu=false

Trains the quickstart's LDM (with the released extractor's final ReLU unless overridden; the 4096-wide
head stays off on CPU) for ``--before`` steps without anchors, fits DyGA's anchors as an epoch end
would, then trains ``--after`` steps with alignment. At every step it measures, before the real
training step and on its batch, with the same t, noise and dropout masks:
  * the gradient norm of the feature extractor's parameters,
  * each sample's gradient norm with respect to its tokens (before the bottleneck),
with alignment on (after the fit) and with alignment off (always). It also measures how far the
alignment moves features: the paper's delta per sample and unit, and the released code's batch lambda
(anchors refitted with its min/max normalization on the same features). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm_dis  # noqa: E402,F401  (before torch: OpenMP threads wait passively, see docs/benchmarks.md)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ldm_dis.bottlenecks.dyga import DyGABottleneck  # noqa: E402
from ldm_dis.bottlenecks.dyga.alignment import mixture_log_resp, released_alignment  # noqa: E402
from ldm_dis.config.loading import load_config  # noqa: E402
from ldm_dis.models.diffusion import diffusion_loss  # noqa: E402


def grad_norm(params) -> float:
    return float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None)))


def measure(task, images, acc, align: bool, seed: int):
    """(extractor gradient norm, per-sample token gradient norms (B,)) of one loss on ``images``; the
    extractor's BatchNorm statistics are left as they were."""
    fx = task.feature_extractor
    saved = [b.clone() for b in fx.buffers()]
    for module in (fx, task.bottleneck, task.unet):
        module.train()
    latents = task._latents(images, acc)
    tokens = fx.tokens(fx.scalars(images))
    tokens.retain_grad()
    torch.manual_seed(seed)  # the same Gumbel draws, then (reseeded) the same dropout masks, t and noise
    units = task.bottleneck(tokens).value if align else tokens
    torch.manual_seed(seed + 1)
    loss = diffusion_loss(task.unet, task.noise_scheduler, latents, units, task.cfg.model.diffusion.loss,
                          generator=torch.Generator().manual_seed(seed), sample_t=task.sample_t)
    task.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    out = grad_norm(fx.parameters()), tokens.grad.flatten(1).norm(dim=1).detach().numpy()
    task.optimizer.zero_grad(set_to_none=True)
    for b, s in zip(fx.buffers(), saved):
        b.copy_(s)
    return out


@torch.no_grad()
def paper_deltas(bn, tokens: torch.Tensor) -> np.ndarray:
    """delta (B, N) of the paper's alignment with the most responsible anchor (as in evaluation)."""
    z = (tokens - bn.center) / bn.scale[:, None]
    k = mixture_log_resp(z, bn.means, bn.variances, bn.eigenvectors, bn.weights).argmax(-1)  # (B, N)
    means = bn.center[:, None] + bn.scale[:, None, None] * bn.means  # (N, K, D) feature units
    mu = means[torch.arange(tokens.shape[1])[None], k]  # (B, N, D)
    ratio = (tokens - mu).abs() / tokens.abs().clamp_min(1e-6)
    return (bn.lam * torch.exp(-ratio.mean(-1))).numpy()


def summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    return {"median": med, "p99": float(np.quantile(v, 0.99)), "max": float(v.max()), "max/median": float(v.max() / med)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="quickstart.yaml")
    p.add_argument("--before", type=int, default=100, help="steps before the first anchor fit")
    p.add_argument("--after", type=int, default=200, help="steps with alignment")
    p.add_argument("--run-dir", default="runs/bench/gumbel_spikes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="config overrides")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from ldm_dis.data import build_dataset
    from ldm_dis.training.data_order import training_loader
    from ldm_dis.training.pipeline import build_trainer, ensure_first_stage
    from ldm_dis.training.trainer import make_accelerator

    run_dir = Path(args.run_dir)
    cfg = load_config(args.config, ["model.encoder.final_relu=true", "model.first_stage.max_steps=200",
                                    "model.first_stage.ckpt_every=200", "train.sample_every=0",
                                    f"run.dir={run_dir / 'ldm'}", f"run.first_stage_cache={run_dir / 'first_stage'}",
                                    *args.overrides])
    if cfg.model.bottleneck.kind != "dyga":
        raise SystemExit("model.bottleneck.kind must be dyga")
    started = time.perf_counter()
    dataset = build_dataset(cfg.data)
    acc = make_accelerator(cfg)
    cfg.model.first_stage.checkpoint = str(ensure_first_stage(cfg, dataset, acc))
    trainer = build_trainer(cfg, dataset, acc)
    task = trainer.task
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    batches = iter(training_loader(dataset, cfg.train.batch_size, cfg.train.seed, 0, acc, cfg.data.num_workers))

    rows = {"before": [], "on": [], "off": []}  # (extractor norm, per-sample max/median)
    ratios, deltas, lambdas, zero_batches = [], [], [], 0
    released = None
    for step in range(args.before + args.after):
        images = next(batches)[0].to(acc.device)
        fitted = step >= args.before
        off = measure(task, images, acc, align=False, seed=10_000 + step)
        rows["off" if fitted else "before"].append(off)
        if fitted:
            on = measure(task, images, acc, align=True, seed=10_000 + step)
            rows["on"].append(on)
            ratios.append(on[0] / off[0])
            with torch.no_grad():
                task.feature_extractor.eval()
                tokens = task.feature_extractor(images)
            deltas.append(paper_deltas(task.bottleneck, tokens))
            lambdas.append(float(released_alignment(tokens, released.means, released.variances, released.eigenvectors,
                                                    released.weights, lam=cfg.model.bottleneck.dyga.lam)[1]))
            zero_batches += bool((tokens == 0).any())
        task.training_step(images, None, step, acc)
        if step + 1 == args.before:  # the epoch end: anchors from the extractor's features of the training set
            print(f"step {step + 1}: fitting anchors", flush=True)
            features = task.collect_features(trainer, task.bottleneck.fit_rows(len(trainer.dataset), 0))
            task.bottleneck.fit(features)
            released_cfg = copy.deepcopy(cfg.model.bottleneck.dyga)
            released_cfg.alignment = "released"  # anchors fitted on min/max-normalized features, as released
            released = DyGABottleneck.from_config(released_cfg, features.shape[1], features.shape[2])
            released.fit(features)
            zero_share = float((features == 0).mean())
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}/{args.before + args.after}", flush=True)

    print(f"\n{args.config} + {args.overrides or 'no overrides'}, final_relu={cfg.model.encoder.final_relu}; "
          f"{args.before} steps without anchors, then {args.after} with; batch {cfg.train.batch_size}; "
          f"{platform.processor() or platform.machine()}, {args.threads} threads, "
          f"{(time.perf_counter() - started) / 60:.1f} min\n")
    print("| phase | steps | extractor grad norm median | p99 | max | max/median | per-sample token grad max/median, median over steps | its max |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    names = {"before": "no anchors yet (alignment off)", "on": "anchors fitted, alignment on (Gumbel, tau 1e-4)",
             "off": "same batches, alignment off"}
    for key in ("before", "on", "off"):
        norms = [n for n, _ in rows[key]]
        # steps where most samples get no gradient yet (zero-initialised output layers) have no ratio
        per_sample = [float(g.max() / np.median(g)) for _, g in rows[key] if np.median(g) > 0]
        s = summary(norms)
        spread = f"{np.median(per_sample):.2f} | {max(per_sample):.2f}" if per_sample else "n/a | n/a"
        print(f"| {names[key]} | {len(norms)} | {s['median']:.3g} | {s['p99']:.3g} | {s['max']:.3g} | {s['max/median']:.2f} "
              f"| {spread} |")
    r = np.asarray(ratios)
    print(f"\nextractor grad norm, alignment on / off on the same batch: median {np.median(r):.3f}, "
          f"max {r.max():.3f}; steps with ratio > 2: {int((r > 2).sum())}, > 10: {int((r > 10).sum())} of {len(r)}")
    d = np.concatenate(deltas)  # (steps * B, N)
    lam = cfg.model.bottleneck.dyga.lam
    print(f"paper delta per sample and unit (max {lam}): median {np.median(d):.3g}, share below {lam / 1000:g}: "
          f"{(d < lam / 1000).mean():.3f}; share of exact zeros in the fitted tokens: {zero_share:.3f}")
    print(f"released batch lambda (max {lam}): median {np.median(lambdas):.3g}, max {max(lambdas):.3g}; "
          f"batches holding an exact zero token value: {zero_batches} of {len(lambdas)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
