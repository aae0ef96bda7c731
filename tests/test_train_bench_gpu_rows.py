"""benchmarks/train_bench.py's GPU-oriented rows (the data-loader-fed step, the VQ-GAN step, FLOP counts)
run on a CPU at tiny sizes: the code path the GPU run takes, minus the device."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import train_bench  # noqa: E402


def test_gpu_rows_run_on_a_cpu(capsys):
    train_bench.main(["--device", "cpu", "--sizes", "quickstart", "--batch", "2", "--ddim-batch", "1", "--ddim-steps", "1",
                      "--repeats", "1", "--loader-workers", "0", "--first-stage", "--fs-batch", "2", "--flops",
                      "--bf16", "--channels-last", "--threads", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| quickstart")]
    what = [row.split("|")[2].strip() for row in rows]
    assert what == ["ldm train step", "ddim 1 steps + decode", "ldm train step, data from 0 workers",
                    "vq-gan train step (with discriminator)", "FLOPs counted"]
    assert all(float(row.split("|")[4]) > 0 for row in rows[:4])  # images/s
    assert "GFLOP/image" in rows[3] and "train step" in rows[4] and "DDIM step" in rows[4]


def test_flops_are_counted_per_image():
    import torch

    layer = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(5, 8)
    assert train_bench.flops_per_image(lambda: layer(x), batch=5) == 2 * 8 * 4
