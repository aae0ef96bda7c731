"""What does a trained first stage keep of each factor? Linear probes on images, latents and reconstructions.

The latent diffusion model can only put into its units what the VQ-GAN's latents hold: a factor that the
first stage blurs away gives the denoising loss nothing to gain from it. For each first stage, held-out
images of its dataset are encoded and decoded, and a multinomial logistic regression is fitted, factor by
factor, on three inputs: the original pixels (what the data offers a linear read-out), the pre-quantization
latents (what the LDM sees) and the reconstructions (what the decoder gives back). The table gives the
test accuracy of each probe with chance (1 / factor size) beside it, and the reconstruction PSNR.

    python benchmarks/first_stage_probe.py runs/curves/.first_stage/<hash> runs/levers100k/.first_stage/<hash>
    python benchmarks/first_stage_probe.py FOLDER --num-images 4000 --json probe.json

Each argument is a first-stage run folder (the cache folders that ``learning_curve.py`` and the trainer write:
``config.yaml`` plus ``checkpoints/``; its latest checkpoint is used) or one checkpoint folder of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def encode_decode(first_stage, images: torch.Tensor, batch: int = 256):
    """(latents flattened (N, D), reconstructions (N, 3, R, R)) of ``images`` in [-1, 1]."""
    latents, recons = [], []
    for chunk in images.split(batch):
        h = first_stage.encode(chunk)
        latents.append(h.flatten(1))
        recons.append(first_stage.decode(h).clamp(-1, 1))
    return torch.cat(latents).numpy(), torch.cat(recons)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    """Test accuracy of a standardized multinomial logistic regression (the usual linear probe). At most 500
    L-BFGS iterations: where the classes are separable it stops short of convergence, with the accuracy
    already settled."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def probe_factors(inputs: dict, factors: np.ndarray, names, sizes, seed: int) -> list:
    """One row per factor: chance (1 / size) and, for each named input (N, D), the probe's accuracy on the
    last quarter of the rows after fitting on the first three quarters."""
    n_train = len(factors) * 3 // 4
    rows = []
    for k, (name, size) in enumerate(zip(names, sizes)):
        y = factors[:, k]
        row = {"factor": name, "chance": 1.0 / size}
        for key, x in inputs.items():
            row[key] = probe_accuracy(x[:n_train], y[:n_train], x[n_train:], y[n_train:], seed)
        rows.append(row)
    return rows


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB) the VQ-GAN trainer logs (images in [-1, 1])."""
    from ldm_dis.training.vqgan_task import psnr as psnr_of_mse

    return float(psnr_of_mse(((a - b) ** 2).flatten(1).mean(1)).mean())


def probe_first_stage(folder: str, num_images: int, seed: int) -> dict:
    from ldm_dis.models.vqgan import load_first_stage
    from ldm_dis.runs import load_run_config, resolve_checkpoint
    from ldm_dis.sampling.components import run_dataset

    cfg = load_run_config(folder)
    checkpoint = resolve_checkpoint(folder)
    first_stage = load_first_stage(checkpoint, cfg.model.first_stage).eval()
    dataset = run_dataset(cfg)
    rng = np.random.default_rng(seed)
    idx = dataset.grid_indices(rng.choice(len(dataset), size=min(num_images, len(dataset)), replace=False))
    images = torch.as_tensor(dataset.images_at(idx)).float()
    factors = dataset.factors_of(idx)
    latents, recons = encode_decode(first_stage, images)
    inputs = {"pixels": images.flatten(1).numpy(), "latents": latents, "reconstructions": recons.flatten(1).numpy()}
    rows = probe_factors(inputs, factors, dataset.factor_names, dataset.factor_sizes, seed)
    steps = int(Path(checkpoint).name.rsplit("_", 1)[-1]) if "_" in Path(checkpoint).name else None
    return {"first_stage": str(folder), "checkpoint": str(checkpoint), "steps": steps,
            "lr": cfg.model.first_stage.lr, "psnr": psnr(recons, images), "num_images": len(idx),
            "latent_dims": int(latents.shape[1]), "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first_stages", nargs="+", help="first-stage run folders or checkpoint folders")
    p.add_argument("--num-images", type=int, default=4000, help="images probed (3/4 train, 1/4 test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    results = [probe_first_stage(f, args.num_images, args.seed) for f in args.first_stages]
    for r in results:
        print(f"\n{r['checkpoint']}: {r['steps']} steps, lr {r['lr']:g} per sample; reconstruction PSNR "
              f"{r['psnr']:.2f} dB; {r['num_images']} images ({r['latent_dims']} latent values each)")
        print("| factor | chance | probe on pixels | on latents | on reconstructions |\n| --- | ---: | ---: | ---: | ---: |")
        for row in r["rows"]:
            print(f"| {row['factor']} | {row['chance']:.3f} | {row['pixels']:.3f} | {row['latents']:.3f} | "
                  f"{row['reconstructions']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
