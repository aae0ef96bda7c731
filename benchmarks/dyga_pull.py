"""How hard DyGA's feature alignment acts on a trained model: the pull delta and how far it moves the tokens.

    python benchmarks/dyga_pull.py runs/s12/ldm_dyga/seed0 runs/s15/dyga_lam05/seed0/checkpoints/step_0012500

For each checkpoint (or run folder: its newest checkpoint) of an LDM with a DyGA bottleneck, encodes
``--images`` images of its dataset (a fixed random draw) with the feature extractor in eval mode and
aligns them to the most responsible anchor, as evaluation does. Reports, over (image, unit) pairs:
  * delta, the paper's per-sample, per-unit pull ``lambda * exp(-mean_j |c_j - mu_j| / |c_j|)``, and
    delta / lambda (1 = the feature already sits on its anchor, so the pull is at its largest);
  * the relative move ``|c~ - c| / |c|``: how much the aligned token the U-Net sees differs from the
    feature itself.
Prints a markdown table; ``--out FILE.json`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm_dis  # noqa: E402,F401  (before torch: OpenMP threads wait passively, see docs/benchmarks.md)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gumbel_spikes import paper_deltas  # noqa: E402

from ldm_dis.bottlenecks.dyga import DyGABottleneck  # noqa: E402
from ldm_dis.bottlenecks.dyga.alignment import align_features  # noqa: E402
from ldm_dis.data import build_dataset  # noqa: E402
from ldm_dis.training.checkpoint import load_run_config, load_task_from_checkpoint, resolve_checkpoint  # noqa: E402

COLUMNS = ("step", "lambda", "delta median", "delta p10", "delta p90", "delta / lambda median",
           "move median", "move p90")


@torch.no_grad()
def pull_of(task, images: torch.Tensor, batch: int = 256) -> dict:
    """delta (B, N) and relative move (B, N) of the model's alignment on ``images``, as numpy arrays."""
    bn = task.bottleneck
    if not isinstance(bn, DyGABottleneck) or not bn.is_fitted:
        raise SystemExit("the checkpoint's bottleneck is not a fitted DyGA (model.bottleneck.kind must be dyga, "
                         "trained past its first anchor fit)")
    task.feature_extractor.eval()
    tokens = torch.cat([task.feature_extractor(images[i:i + batch]) for i in range(0, len(images), batch)])
    aligned = align_features(tokens, bn.center, bn.scale, bn.means, bn.variances, bn.eigenvectors, bn.weights,
                             bn.tau, bn.lam, stochastic=False)
    move = (aligned - tokens).norm(dim=-1) / tokens.norm(dim=-1).clamp_min(1e-12)
    return {"lambda": float(bn.lam), "delta": paper_deltas(bn, tokens), "move": move.numpy()}


def summarize(step: int, pull: dict) -> dict:
    d, m, lam = pull["delta"], pull["move"], pull["lambda"]
    return {"step": step, "lambda": lam, "delta median": float(np.median(d)), "delta p10": float(np.quantile(d, 0.1)),
            "delta p90": float(np.quantile(d, 0.9)), "delta / lambda median": float(np.median(d) / lam),
            "move median": float(np.median(m)), "move p90": float(np.quantile(m, 0.9))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint folders or run folders (newest checkpoint)")
    p.add_argument("--images", type=int, default=1024, help="images encoded per checkpoint (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="the draw of images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for given in args.checkpoints:
        folder = resolve_checkpoint(given)
        dataset = build_dataset(load_run_config(folder).data)
        _, task = load_task_from_checkpoint(folder, dataset=dataset)
        count = min(args.images, len(dataset))
        picks = np.random.default_rng(args.seed).choice(len(dataset), count, replace=False)
        images = torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in picks])
        step = int(folder.name.rsplit("_", 1)[-1]) if folder.name.startswith("step_") else -1
        rows.append({"checkpoint": str(given), **summarize(step, pull_of(task, images))})
    print("| checkpoint | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " ---: |" * len(COLUMNS))
    for r in rows:
        print(f"| {r['checkpoint']} | {r['step']} | {r['lambda']:g} | "
              + " | ".join(f"{r[c]:.4f}" for c in COLUMNS[2:]) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
