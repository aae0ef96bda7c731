"""Peak memory of iterating a full-size MPI3D-format file (1,036,800 x 64x64x3 uint8 = 12.7 GB) through a
DataLoader with 2 workers: the main process plus its workers must stay well under 2 GB.

    .venv/bin/python benchmarks/data_memory.py                     # generate, measure one epoch, delete
    .venv/bin/python benchmarks/data_memory.py --max-batches 500   # a shorter run

The file is written once to a temporary folder (an uncompressed .npz, as ``np.savez`` writes it, streamed
so that generating it needs little memory either) and deleted afterwards unless ``--keep``. A sampler
thread reads ``/proc`` every 50 ms and sums the resident memory (VmRSS) of this process and all its
descendants; it reports the peak of that sum and the peak of each process (VmHWM). Linux only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from ldm_dis.data import build_dataset

IMAGE_SHAPE = (64, 64, 3)


def write_mpi3d_file(path: Path, n: int, chunk: int = 8192) -> None:
    """An MPI3D-format ``.npz`` (member ``images.npy``, stored uncompressed, zip64) written chunk by chunk."""
    template = np.random.default_rng(0).integers(0, 256, (1024,) + IMAGE_SHAPE, dtype=np.uint8)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (n,) + IMAGE_SHAPE}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            for start in range(0, n, chunk):
                idx = np.arange(start, min(start + chunk, n))
                # distinct images without a 12.7 GB random draw: template image plus a per-block offset
                block = template[idx % 1024] + (idx // 1024 % 251).astype(np.uint8)[:, None, None, None]
                fh.write(block.tobytes())


def _descendants(pid: int) -> list:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory(threading.Thread):
    """Samples the summed VmRSS of this process tree every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_kb, self.peak_anon_kb, self.per_process_kb = interval, 0, 0, {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        pids = _descendants(os.getpid())
        self.peak_kb = max(self.peak_kb, sum(_status_kb(p, "VmRSS") for p in pids))
        self.peak_anon_kb = max(self.peak_anon_kb, sum(_status_kb(p, "RssAnon") for p in pids))
        for p in pids:
            self.per_process_kb[p] = max(self.per_process_kb.get(p, 0), _status_kb(p, "VmHWM"))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_036_800)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (default: one epoch)")
    parser.add_argument("--dir", default=None, help="folder for the generated file (default: a new temp folder in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    args = parser.parse_args()

    folder = Path(args.dir or tempfile.mkdtemp(prefix="ldm_dis_mem_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mpi3d_toy.npz"
    size = args.images * int(np.prod(IMAGE_SHAPE))
    try:
        if not path.exists():
            free = shutil.disk_usage(folder).free
            if free < size + (2 << 30):
                raise SystemExit(f"need {size / 2**30:.1f} GiB + 2 GiB free in {folder}; only {free / 2**30:.1f} GiB")
            t0 = time.perf_counter()
            write_mpi3d_file(path, args.images)
            print(f"generated {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")

        sizes = None if args.images in (1_036_800, 460_800) else [args.images, 1, 1, 1, 1, 1, 1]
        dataset = build_dataset({"name": "mpi3d", "path": str(path), "factor_sizes": sizes})
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                             generator=torch.Generator().manual_seed(0))
        monitor = PeakMemory()
        monitor.start()
        t0, batches, images, checksum = time.perf_counter(), 0, 0, 0.0
        for x, _ in loader:
            batches += 1
            images += len(x)
            checksum += float(x[:, 0, 0, 0].sum())  # touch the data
            if args.max_batches and batches >= args.max_batches:
                break
        seconds = time.perf_counter() - t0
        monitor.stop()
        del loader

        print()
        print("| images in file | file size | workers | batch | images read | seconds | images/s | peak RSS, sum of processes | peak anonymous RSS, sum | peak RSS per process (VmHWM) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        per = ", ".join(f"{kb / 1024:.0f}" for kb in monitor.per_process_kb.values())
        print(f"| {args.images:,} | {size / 2**30:.1f} GiB | {args.workers} | {args.batch_size} | {images:,} | {seconds:.0f} | "
              f"{images / seconds:,.0f} | {monitor.peak_kb / 1024:.0f} MiB | {monitor.peak_anon_kb / 1024:.0f} MiB | {per} MiB |")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            if args.dir is None:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
