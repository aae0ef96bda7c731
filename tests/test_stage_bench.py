"""benchmarks/stage_bench.py: the per-stage clock charges each stage its own time only, and the whole
benchmark (bare step and ldm-dis train side by side) runs and prints its table."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _stages  # noqa: E402
from _stages import StageClock  # noqa: E402


class FakeClock:
    """Stands in for the time module in _stages: time passes only when a test says so."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    process_time = thread_time = perf_counter

    def spend(self, seconds):
        self.now += seconds


def test_a_stage_excludes_the_stages_called_inside_it(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_stages, "time", fake)
    clock = StageClock()

    class Work:
        def inner(self):
            fake.spend(0.05)

        def outer(self):
            fake.spend(0.02)
            self.inner()

    work = Work()
    clock.wrap(work, "inner", "inner")
    clock.wrap(work, "outer", "outer")
    work.outer()
    taken = clock.take()
    assert taken["wall"] == pytest.approx({"inner": 0.05, "outer": 0.02})  # outer's own 20 ms, not inner's 50
    assert taken["cpu"] == pytest.approx({"inner": 0.05, "outer": 0.02})
    assert clock.take()["wall"] == {}  # take() starts the next step afresh


def test_background_work_is_kept_apart_from_the_step(monkeypatch):
    import threading

    fake = FakeClock()
    monkeypatch.setattr(_stages, "time", fake)
    clock = StageClock()

    class Encoder:
        def encode(self):
            fake.spend(0.02)

    enc = Encoder()
    clock.wrap_background(enc, "encode", "encode, in the background")
    t = threading.Thread(target=enc.encode)
    t.start()
    t.join()
    taken = clock.take()
    assert taken["wall"] == {} and taken["background"]["encode, in the background"] == pytest.approx([0.02, 0.02])


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
