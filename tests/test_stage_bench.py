"""benchmarks/stage_bench.py: the per-stage clock charges each stage its own time only, and the whole
benchmark (bare step and ldm-dis train side by side) runs and prints its table."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _stages import StageClock  # noqa: E402


def test_a_stage_excludes_the_stages_called_inside_it():
    clock = StageClock()

    class Work:
        def inner(self):
            time.sleep(0.05)

        def outer(self):
            time.sleep(0.02)
            self.inner()

    work = Work()
    clock.wrap(work, "inner", "inner")
    clock.wrap(work, "outer", "outer")
    work.outer()
    wall = clock.take()["wall"]
    assert wall["inner"] >= 0.05 and 0.02 <= wall["outer"] < 0.05  # outer's own 20 ms, not inner's 50
    assert clock.take()["wall"] == {}  # take() starts the next step afresh


def test_background_work_is_kept_apart_from_the_step():
    import threading

    clock = StageClock()

    class Encoder:
        def encode(self):
            time.sleep(0.02)

    enc = Encoder()
    clock.wrap_background(enc, "encode", "encode, in the background")
    t = threading.Thread(target=enc.encode)
    t.start()
    t.join()
    taken = clock.take()
    assert taken["wall"] == {} and taken["background"]["encode, in the background"][0] >= 0.02


@pytest.mark.slow
def test_stage_bench_prints_both_contexts(capsys):
    import stage_bench

    stage_bench.main(["--rounds", "2", "--block", "1", "--fit-at", "0", "--threads", "1"])
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| stage"))
    assert "bare step: ms" in header and "in ldm-dis train: ms" in header
    for stage in ("encode", "extractor", "unet forward", "backward", "optimizer", "ema"):
        assert any(line.startswith(f"| {stage} |") for line in out.splitlines()), stage
    ips = next(line for line in out.splitlines() if line.startswith("| images/s"))
    assert all(float(c) > 0 for c in ips.split("|")[3:5])  # after the name and the empty MFLOP column


def test_train_bench_stages_is_the_stage_benchmark(capsys):
    import train_bench

    with pytest.raises(SystemExit) as done:
        train_bench.main(["--stages", "--help"])
    assert done.value.code == 0 and "--before CHECKOUT" in capsys.readouterr().out
