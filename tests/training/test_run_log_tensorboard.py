"""The optional TensorBoard mirror of the run log (runs where the `tensorboard` package is installed)."""

import pytest

from ldm_dis.training.run_log import RunLog, read_log


def test_logged_scalars_reach_tensorboard_and_the_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLog(tmp_path, enabled=True)
    for step in (1, 2, 3):
        log.write(step, {"loss": 1.0 / step, "img/s": 10.0 * step, "bad": float("nan")})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["img/s", "loss"]  # non-finite values stay out
    assert [round(e.value, 4) for e in events.Scalars("loss")] == [1.0, 0.5, 0.3333]
    assert [r["step"] for r in read_log(tmp_path)] == [1, 2, 3]
