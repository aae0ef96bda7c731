"""Speed of ``ldm-dis export``: images encoded per second, and where the time goes.

    python benchmarks/export_bench.py                                   # CPU, quickstart-sized model
    python benchmarks/export_bench.py --size paper --num 4096
    python benchmarks/export_bench.py --device cuda --size paper --num 100000 --batch 1024

Rows (synth-shapes3d at the config's resolution, ``--num`` images, random weights: speed does not
depend on them; bottleneck none):
  * read: the export's batch reader alone (one vectorized read per batch, no model);
  * encode: ``task.encode`` alone, on one batch already on the device;
  * export: ``encode_dataset``, the export's loop (read + encode + copy to the output arrays);
  * per-image DataLoader: the loop export used before, ``ordered_loader`` (a DataLoader collating one
    tensor per image) with ``no_grad``, for comparison.
Prints a markdown table with the machine, the load average and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import StepAccelerator  # noqa: E402

from ldm_dis.config.loading import load_config  # noqa: E402
from ldm_dis.data import build_dataset  # noqa: E402
from ldm_dis.training.data_order import ordered_loader  # noqa: E402
from ldm_dis.training.export import _Batches, encode_dataset  # noqa: E402
from ldm_dis.training.ldm_task import LDMTask  # noqa: E402

SIZES = {"quickstart": "quickstart.yaml", "paper": "shapes3d.yaml"}


class ExportAccelerator(StepAccelerator):
    """One process on ``device``: what encode_dataset and ordered_loader ask of an Accelerator."""

    def __init__(self, device):
        super().__init__(device)
        self.gradient_state = None


def build(size: str, device: str, tmp: Path):
    from safetensors.torch import save_file

    from ldm_dis.models.vqgan import FirstStage

    cfg = load_config(SIZES[size], ["model.bottleneck.kind=none", "data.name=synth-shapes3d", "data.path=null"])
    weights = tmp / f"{size}_first_stage.safetensors"
    save_file({k: v.contiguous() for k, v in FirstStage.from_config(cfg.model.first_stage).state_dict().items()},
              str(weights))
    task = LDMTask(cfg, None, first_stage_path=weights)
    task.prepare(StepAccelerator(device))
    return cfg, task


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def rate(fn, images: int, device) -> float:
    """Images per second of one call of ``fn`` (after a warm-up call on a small share)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return images / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="quickstart")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num", type=int, default=8192, help="images exported")
    parser.add_argument("--batch", type=int, default=512, help="images per batch (the export's default)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers reading ahead (data.num_workers)")
    parser.add_argument("--no-legacy", action="store_true", help="skip the per-image DataLoader row")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, task = build(args.size, args.device, Path(tmp))
    dataset = build_dataset({"name": "synth-shapes3d", "resolution": cfg.data.resolution, "subset": args.num})
    acc = ExportAccelerator(args.device)
    n = len(dataset)
    rows = []

    batches = _Batches(dataset, np.arange(n), args.batch, 0, 1)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=args.workers)
    rows.append(("read (batch reader)", rate(lambda: [None for _ in loader], n, args.device)))

    x = batches[0][0].to(args.device)
    with torch.inference_mode():
        task.encode(x)  # warm-up
        repeats = max(1, n // len(x))
        rows.append(("encode (task.encode, data on the device)",
                     rate(lambda: [task.encode(x) for _ in range(repeats)], repeats * len(x), args.device)))
    encode_dataset(task, dataset, acc, args.batch, args.workers, indices=np.arange(min(n, args.batch)), progress=False)
    rows.append(("export (encode_dataset)",
                 rate(lambda: encode_dataset(task, dataset, acc, args.batch, args.workers, progress=False), n, args.device)))
    if not args.no_legacy:
        @torch.no_grad()
        def legacy():
            for images, _ in ordered_loader(dataset, acc, args.batch, num_workers=args.workers):
                task.encode(images).float().cpu().numpy()

        rows.append(("per-image DataLoader + no_grad (the previous loop)", rate(legacy, n, args.device)))

    params = sum(p.numel() for p in task.feature_extractor.parameters())
    device = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else platform.processor() or "CPU"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Command: `python benchmarks/export_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
    print(f"Model: {args.size} ({SIZES[args.size]}), feature extractor {params / 1e6:.1f}M parameters, "
          f"{cfg.data.resolution}x{cfg.data.resolution} images, batch {args.batch}, {args.workers} workers, {n} images")
    print(f"Machine: {device}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average before the end: {load}\n")
    print("| stage | images/s |")
    print("| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
