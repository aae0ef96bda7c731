"""Where one CPU training step of the latent diffusion model spends its time, stage by stage, for the
bare step and for the same step inside ``ldm-dis train``, side by side in one run.

    python benchmarks/stage_bench.py                          # the quickstart's LDM + DyGA, random weights
    python benchmarks/stage_bench.py --vqgan --rounds 6       # also the first stage's (VQ-GAN) step
    python benchmarks/stage_bench.py --before /path/to/older/checkout   # before/after in one table

Per stage of one step (render, first-stage encode, extractor, DyGA alignment, U-Net forward, backward,
optimizer, EMA): milliseconds (wall and CPU) and achieved GFLOP/s against this machine's measured fp32
matmul rate. Contexts: the bare step (``training_step`` in a plain loop with the trainer's accelerator and
loader) and the step inside ``ldm-dis train``; each runs in its own process, one at a time, in
interleaved blocks, so that both see the same drift of the machine's load (see ``_stages.py``). The
first round is discarded. With the CPU schedule of ``ldm_dis.training.threads`` the next batch's encode
runs in the background during the U-Net: its row is shown apart and is not part of the step's time.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm_dis  # noqa: E402,F401  (before torch: it sets the OpenMP wait policy the trainer runs with)
import torch  # noqa: E402
from train_bench import timed  # noqa: E402

from ldm_dis.config.loading import load_config  # noqa: E402
from ldm_dis.models.vqgan import FirstStage  # noqa: E402


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of one fp32 (n x n) @ (n x n) matmul on this machine with torch's threads (median)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    sec = timed(lambda: a @ b, repeats, 3, torch.device("cpu"))
    return 2 * n**3 / sec / 1e9


def random_first_stage(cfg, tmp: Path) -> Path:
    """A VQ-GAN of the config's shape with seeded random weights, saved as the trainer would load it."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    first = FirstStage.from_config(cfg.model.first_stage)
    path = tmp / "first_stage.safetensors"
    save_file({k: v.contiguous() for k, v in first.state_dict().items()}, str(path))
    return path


def stage_contexts(args, tmp: Path) -> list:
    """The contexts --stages compares (see _stages.run_contexts)."""
    cfg = load_config(args.config)
    first = args.first_stage or random_first_stage(cfg, tmp)
    common = [*args.overrides, f"model.first_stage.checkpoint={first}"]
    fit = []
    if cfg.model.bottleneck.kind == "dyga" and args.fit_at:
        # anchors early (as after epoch_steps in the quickstart) so that the timed steps align features
        fit = [f"train.epoch_steps={args.fit_at}", f"model.bottleneck.dyga.max_samples={args.fit_samples}"]
    base = {"task": "ldm", "config": args.config, "fit_at": args.fit_at}
    contexts = [
        {**base, "name": "bare step", "context": "bare", "overrides": [*common, *fit]},
        {**base, "name": "in ldm-dis train", "context": "trainer",
         "overrides": [*common, *fit, "train.max_steps=100000", "train.sample_every=0", "train.ckpt_every=100000"]},
    ]
    if args.torch_first:  # this script's own step before: torch imported first, so OpenMP busy-waits
        contexts.insert(1, {**base, "name": "bare step, torch imported first", "context": "bare",
                            "overrides": [*common, *fit], "torch_first": True})
    if args.first_stage_steps:  # the quickstart's own flow: the VQ-GAN trained earlier in the same process
        contexts.append({**base, "name": "in ldm-dis train, first stage trained in-process", "context": "trainer",
                         "overrides": [*args.overrides, *fit, f"model.first_stage.max_steps={args.first_stage_steps}",
                                       f"model.first_stage.ckpt_every={args.first_stage_steps}",
                                       "train.max_steps=100000", "train.sample_every=0", "train.ckpt_every=100000"]})
    if args.vqgan:
        vq = {"task": "vqgan", "config": args.config, "fit_at": 0}
        contexts += [
            {**vq, "name": "VQ-GAN bare step", "context": "bare", "overrides": list(args.overrides)},
            {**vq, "name": "VQ-GAN in ldm-dis train", "context": "trainer",
             "overrides": [*args.overrides, "model.first_stage.max_steps=100000", "model.first_stage.ckpt_every=100000"]},
        ]
    if args.before:  # the same contexts, running the package of another checkout (e.g. an older commit)
        contexts += [{**c, "name": f"before: {c['name']}", "env": {"PYTHONPATH": str(Path(args.before).resolve())}}
                     for c in contexts if not c.get("torch_first")]
    for c in contexts:
        c["env"] = {**c.get("env", {}), **dict(kv.split("=", 1) for kv in args.env)}
        c["torch"] = {"set_num_threads": args.threads} if args.threads else {}
    return contexts


def stage_table(results: dict, peak: float) -> str:
    """Markdown: one column pair (ms, GFLOP/s) per context, one row per stage, then the step totals."""
    from _stages import LDM_STAGES, VQGAN_STAGES, summarize

    lines = []
    for task, stages in (("ldm", LDM_STAGES), ("vqgan", VQGAN_STAGES)):
        names = [n for n, r in results.items() if r["task"] == task]
        if not names:
            continue
        sums = {n: summarize(results[n], stages) for n in names}
        batch = results[names[0]]["batch"]
        head = ["stage", "MFLOP/step"] + [f"{n}: ms (CPU ms)" for n in names] + [f"{n}: GFLOP/s" for n in names]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for s in stages:
            flops = max(sums[n]["stage"][s]["flops"] for n in names)
            cells = [f"{sums[n]['stage'][s]['wall']:.1f} ({sums[n]['stage'][s]['cpu']:.1f})" for n in names]
            rates = []
            for n in names:  # each context's own FLOPs: the encode runs in the step or in the background
                f, w = sums[n]["stage"][s]["flops"], sums[n]["stage"][s]["wall"]
                rates.append(f"{f / w / 1e6:.0f}" if f > 1e6 and w > 0 else "")
            lines.append(f"| {s} | {flops / 1e6:,.0f} | " + " | ".join(cells + rates) + " |")
        total = sum(results[names[0]]["flops"].values())
        step = [f"**{sums[n]['wall']:.0f}** [{sums[n]['wall_p10']:.0f}-{sums[n]['wall_p90']:.0f}] ({sums[n]['cpu']:.0f})" for n in names]
        rates = [f"{total / sums[n]['wall'] / 1e6:.0f} ({100 * total / sums[n]['wall'] / 1e6 / peak:.0f}% of matmul)" for n in names]
        lines.append(f"| step (training_step, median [p10-p90]) | {total / 1e6:,.0f} | " + " | ".join(step + rates) + " |")
        ips = [f"{batch / sums[n]['wall'] * 1e3:.1f}" for n in names]
        lines.append("| images/s (batch %d) | | " % batch + " | ".join(ips + [""] * len(names)) + " |")
        info = "; ".join(f"{n}: {sums[n]['steps']} steps" + (", anchors fitted" if sums[n]["fitted"] and task == "ldm" else "")
                         + f", other processes {sums[n]['others']:.2f} cores (median)"
                         + (f", {sums[n]['dropped']} steps dropped" if sums[n]["dropped"] else "") for n in names)
        lines += ["", info, ""]
    return "\n".join(lines)


def bench_stages(args) -> None:
    from _stages import others_cores, run_contexts

    def peak_rate():
        while args.quiet is not None and others_cores([os.getpid()]) > args.quiet:
            pass
        return matmul_rate()

    with tempfile.TemporaryDirectory() as tmp:
        contexts = stage_contexts(args, Path(tmp))
        peak_before, load_before = peak_rate(), os.getloadavg()
        results = run_contexts(contexts, args.rounds, args.block, quiet=args.quiet)
        peak_after = peak_rate()
    for c in contexts:
        results[c["name"]]["task"] = c["task"]
    peak = (peak_before + peak_after) / 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"{' '.join(args.env)}; fp32 2048^3 matmul: {peak_before:.0f} / {peak_after:.0f} GFLOP/s (before / after); "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; rounds {args.rounds} x {args.block} steps\n")
    print(stage_table(results, peak))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch threads in every context (default: all cores)")
    p.add_argument("--config", default="quickstart.yaml", help="the config (default quickstart.yaml)")
    p.add_argument("--first-stage", default=None, help="a trained VQ-GAN (default: random weights)")
    p.add_argument("--first-stage-steps", type=int, default=0,
                   help="add a context that trains the VQ-GAN for this many steps in the same process first")
    p.add_argument("--torch-first", action="store_true",
                   help="add the bare step of a process that imported torch before ldm_dis")
    p.add_argument("--before", default=None, metavar="CHECKOUT",
                   help="also run every context with the ldm_dis package of another checkout")
    p.add_argument("--vqgan", action="store_true", help="also the first stage's step, bare and in the trainer")
    p.add_argument("--fit-at", type=int, default=20, help="fit DyGA anchors after this many steps (0: never)")
    p.add_argument("--fit-samples", type=int, default=2000, help="features per DyGA fit")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (the first is discarded)")
    p.add_argument("--block", type=int, default=5, help="steps per context and round")
    p.add_argument("--quiet", type=float, default=None, metavar="CORES",
                   help="start each round when other processes use at most CORES cores, and drop "
                        "blocks during which they used more (a shared machine)")
    p.add_argument("--env", nargs="*", default=[], metavar="VAR=VALUE", help="environment of the contexts")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every context")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_stages(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
