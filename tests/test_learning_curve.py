"""benchmarks/learning_curve.py: the curves, the scores it reads, and a tiny curve grown over two sittings."""

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import learning_curve as lc  # noqa: E402

from ldm_dis.config.loading import load_config  # noqa: E402

TINY_VAE = ["data.subset=64", "data.num_workers=0", "train.batch_size=8", "train.num_sample_images=4",
            "model.baseline.base_channels=4", "model.baseline.hidden=16", "model.baseline.disc_hidden=16"]


def test_steps_round_up_to_whole_batches():
    assert lc.steps_for(25_000, 32) == 782
    assert lc.steps_for(64, 32) == 2
    assert lc.steps_for(1, 32) == 1


def test_factor_fractions_are_the_best_unit_over_the_factor_entropy():
    mi = np.array([[0.1, 1.0], [math.log(10) / 2, 0.2], [0.0, 0.0]])  # (codes, factors)
    fractions = lc.factor_fractions({"matrices": {"mig": {"mutual_info": mi.tolist()}}}, [10, 4])
    assert fractions == pytest.approx([0.5, 1.0 / math.log(4)])


def test_curves_built_in_and_given_and_bad_names_fail_before_training():
    base = load_config("quickstart.yaml")
    curves = lc.build_curves(["ldm_dyga_sd", "ldm", "betavae"], [["lr3", "quickstart.yaml", "train.lr=3e-4"]], base)
    assert [(c.name, c.is_ldm) for c in curves] == [("ldm_dyga_sd", True), ("ldm", True), ("betavae", False), ("lr3", True)]
    assert curves[1].overrides == ["model.bottleneck.kind=none", "model.unet.skip_dropout=0"]
    method = load_config(curves[0].config, curves[0].overrides)  # the paper's method, whatever the quickstart turns off
    assert (method.model.bottleneck.kind, method.model.unet.skip_dropout) == ("dyga", 0.2)
    assert curves[2].config == "baselines/cpu_betavae.yaml"
    with pytest.raises(SystemExit, match="unknown curve 'ldm_dgya'"):
        lc.build_curves(["ldm_dgya"], [], base)
    with pytest.raises(SystemExit, match="given twice"):
        lc.build_curves(["ldm"], [["ldm", "quickstart.yaml"]], base)
    with pytest.raises(SystemExit, match="NAME CONFIG"):
        lc.build_curves([], [["alone"]], base)


def test_the_images_axis_has_a_tick_at_each_scored_budget(tmp_path, monkeypatch):
    import ldm_dis.viz.figures as figures

    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, dpi=None: drawn.append(fig))
    curves = lc.build_curves(["betavae"], [], load_config("quickstart.yaml"))
    rows = [{"curve": "betavae", "seed": s, "images": n, "cpu_s": 10.0 * n, "MIG": 0.1 * s}
            for s in (0, 1) for n in (25_000, 50_000)]
    lc.draw(tmp_path / "curve.png", rows, curves, ["MIG"])
    images_axis, cpu_axis = drawn[0].axes[:2]
    assert [int(x) for x in images_axis.get_xticks()] == [25_000, 50_000]
    assert [t.get_text() for t in images_axis.get_xticklabels()] == ["25k", "50k"]
    assert list(cpu_axis.get_xticks()) != [250_000.0, 500_000.0]  # the CPU-seconds axis keeps its own ticks


def test_the_table_is_the_mean_over_seeds_or_with_per_seed_each_runs_own_line():
    curves = lc.build_curves(["betavae"], [], load_config("quickstart.yaml"))
    rows = [{"curve": "betavae", "seed": s, "images": n, "cpu_s": 10.0 * n + s, "MIG": 0.1 + 0.2 * s + n / 1e6,
             "mi/shape": 0.5 * s} for s in (1, 0) for n in (50_000, 25_000)]
    mean = lc.table_lines(rows, curves, ["MIG", "mi/shape"], per_seed=False)
    assert mean[0] == "| curve | images | CPU s | MIG | MI/H shape |"
    assert mean[2:] == ["| beta-VAE | 25,000 | 250000 | 0.225 ± 0.141 | 0.25 ± 0.35 |",
                        "| beta-VAE | 50,000 | 500000 | 0.250 ± 0.141 | 0.25 ± 0.35 |"]
    each = lc.table_lines(rows, curves, ["MIG", "mi/shape"], per_seed=True)
    assert each[0] == "| curve | seed | images | CPU s | MIG | MI/H shape |"
    assert each[1].count("---") == 6
    assert each[2:] == ["| beta-VAE | 0 | 25,000 | 250000 | 0.125 | 0.00 |",  # seed, then images, in order
                        "| beta-VAE | 0 | 50,000 | 500000 | 0.150 | 0.00 |",
                        "| beta-VAE | 1 | 25,000 | 250001 | 0.325 | 0.50 |",
                        "| beta-VAE | 1 | 50,000 | 500001 | 0.350 | 0.50 |"]
    rows[0]["MIG"] = None  # a score not measured at a point
    assert lc.table_lines(rows, curves, ["MIG"], per_seed=True)[-1] == "| beta-VAE | 1 | 50,000 | 500001 | - |"


def test_a_report_of_a_folder_without_curves_says_so_and_trains_nothing(tmp_path):
    with pytest.raises(SystemExit, match="learning_curve.json not found"):
        lc.main(["--report", "--curves", "ldm", "--runs-dir", str(tmp_path / "none"), "--results", ""])
    assert not (tmp_path / "none").exists()


def _scored_folder(runs_dir, command, total_s, runs, first_stage_cpu=None):
    """A runs-dir as a sitting leaves it: its learning_curve.json and each run's curve_state.json."""
    runs_dir.mkdir(parents=True)
    (runs_dir / "learning_curve.json").write_text(json.dumps(
        {"command": command, "date": "2026-12-03 10:00", "machine": "2 CPU cores", "jobs": 2, "threads": 1,
         "invocations": 1, "total_s": total_s, "rows": []}))
    for (curve, seed), dci in runs.items():
        folder = runs_dir / curve / f"seed{seed}"
        folder.mkdir(parents=True)
        points = [{"images": n, "steps": n // 32, "cpu_s": n / 10 + seed, "scores": {"DCI D": dci * n / 100_000},
                   "mi_fraction": [0.5, 0.6, 0.1 * seed, 0.0, 0.0, 0.0]} for n in (50_000, 100_000)]
        (folder / "curve_state.json").write_text(json.dumps({"points": points, "cpu_s": 1.0, "anneal_steps": None}))
    if first_stage_cpu is not None:
        (runs_dir / "first_stage_cpu.json").write_text(json.dumps(first_stage_cpu))


def test_a_report_takes_runs_from_other_runs_dirs_and_lists_their_sittings(tmp_path, capsys):
    from ldm_dis.training.pipeline import first_stage_hash

    key = first_stage_hash(load_config("quickstart.yaml"))  # the quickstart's and the plain LDM's first stage
    weights = lambda d: f"{d}/.first_stage/{key}/checkpoints/step_0000600/model.safetensors"  # noqa: E731
    earlier, later = tmp_path / "s12", tmp_path / "s14"
    _scored_folder(earlier, "python benchmarks/learning_curve.py --curves ldm_dyga betavae", 600.0,
                   {("ldm_dyga", 0): 0.2, ("ldm_dyga", 1): 0.3, ("betavae", 0): 0.25}, {weights(earlier): 203.0})
    _scored_folder(later, "python benchmarks/learning_curve.py --curves ldm", 300.0,
                   {("ldm", 0): 0.4, ("ldm", 1): 0.5, ("ldm_dyga", 0): 0.9}, {weights(later): 210.0})
    out = tmp_path / "paired"
    common = ["--report", "--per-seed", "--curves", "ldm_dyga", "ldm", "betavae", "--seeds", "0", "1",
              "--runs-dir", str(out), "--results", ""]
    figure = tmp_path / "assets" / "paired.png"
    figure.parent.mkdir()
    assert lc.main([*common, "--from", str(earlier), str(later), "--asset", str(figure), "--title", "Paired"]) == 0
    assert figure.read_bytes() == (out / "learning_curve.png").read_bytes()
    assert not (out / ".first_stage").exists() and not (out / "ldm").exists()  # nothing trained, nothing copied
    with open(out / "learning_curve.csv") as f:
        rows = [(r["curve"], int(r["seed"]), int(r["images"]), float(r["DCI D"])) for r in csv.DictReader(f)]
    assert rows == [("ldm_dyga", 0, 50_000, 0.1), ("ldm_dyga", 0, 100_000, 0.2),  # the first folder that has a run wins
                    ("ldm", 0, 50_000, 0.2), ("ldm", 0, 100_000, 0.4),
                    ("betavae", 0, 50_000, 0.125), ("betavae", 0, 100_000, 0.25),
                    ("ldm_dyga", 1, 50_000, 0.15), ("ldm_dyga", 1, 100_000, 0.3),
                    ("ldm", 1, 50_000, 0.25), ("ldm", 1, 100_000, 0.5)]  # betavae seed 1 scored nowhere
    meta = json.loads((out / "learning_curve.json").read_text())
    assert [(s["runs_dir"], s["total_s"]) for s in meta["sittings"]] == [(str(earlier), 600.0), (str(later), 300.0)]
    assert meta["total_s"] >= 900.0 and meta["invocations"] == 2 and "command" not in meta
    assert meta["first_stage_cpu_s"] == {weights(earlier): 203.0, weights(later): 210.0}  # each curve's own folder's
    section = capsys.readouterr().out
    assert f"- `python benchmarks/learning_curve.py --curves ldm` ({later}; 2026-12-03 10:00;" in section
    assert "wall time 5.0 min)" in section and "Table and figure: `python benchmarks/learning_curve.py --report" in section
    assert "first stage's CPU seconds (203, 210)" in section
    assert section.split("\n\nrows: ")[0].endswith(f"![Paired]({os.path.relpath(figure, lc.ROOT / 'docs')})")  # the copy, from docs/

    again = lc.main([*common, "--from", str(earlier), str(later)])  # its own record lists the same sittings once
    assert again == 0 and len(json.loads((out / "learning_curve.json").read_text())["sittings"]) == 2
    with pytest.raises(SystemExit, match="only with --report"):
        lc.main(["--curves", "ldm", "--runs-dir", str(tmp_path / "x"), "--results", "", "--from", str(earlier)])
    with pytest.raises(SystemExit, match=f"--from {tmp_path / 'none'}: .*learning_curve.json not found"):
        lc.main([*common, "--from", str(earlier), str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="no run of curves factorqvae"):
        lc.main(["--report", "--curves", "factorqvae", *common[6:], "--from", str(earlier)])
    assert not (tmp_path / "x").exists()


def test_ldm_curves_share_a_first_stage_unless_they_change_it(tmp_path):
    tiny = ["data.subset=64", "data.num_workers=0", "model.first_stage.max_steps=1", "model.first_stage.batch_size=4",
            "model.first_stage.ckpt_every=1", "model.first_stage.base_channels=32", "model.first_stage.channel_mult=[1,1]",
            "model.first_stage.disc_channels=8", "train.num_sample_images=2"]
    base = load_config("quickstart.yaml", tiny)
    curves = lc.build_curves(["ldm_dyga_sd", "ldm"], [["fs_lr", "quickstart.yaml", *tiny, "model.first_stage.lr=1e-5"]], base)
    for c in curves[:2]:
        c.overrides[:0] = tiny
    charges = lc.prepare_first_stages(curves, tmp_path, threads=1)
    assert curves[0].first_stage == curves[1].first_stage != curves[2].first_stage
    assert all(c.first_stage.is_file() and c.charge > 0 for c in curves)
    assert set(charges) == {str(curves[0].first_stage), str(curves[2].first_stage)}
    again = lc.build_curves(["ldm"], [], base)
    again[0].overrides[:0] = tiny
    assert lc.prepare_first_stages(again, tmp_path, threads=1) == charges  # found in the cache, charged as before
    assert again[0].first_stage == curves[1].first_stage and again[0].charge == curves[1].charge


def test_a_curve_grows_over_two_sittings_with_the_points_of_the_first_kept(tmp_path):
    runs = tmp_path / "curves"
    common = ["--curves", "betavae", "--seeds", "0", "--metrics", "mig", "--runs-dir", str(runs), "--results", "",
              "--overrides", *TINY_VAE]
    assert lc.main([*common, "--images", "16", "32"]) == 0
    state = json.loads((runs / "betavae" / "seed0" / "curve_state.json").read_text())
    assert [p["steps"] for p in state["points"]] == [2, 4]
    assert state["anneal_steps"] == 4  # the VAE's lr schedule is fixed by the first sitting's longest point
    first_cpu = [p["cpu_s"] for p in state["points"]]
    assert first_cpu[0] > 0 and first_cpu[1] > first_cpu[0]

    with pytest.raises(SystemExit, match="--resume"):
        lc.main([*common, "--images", "16", "32", "48"])
    assert lc.main([*common, "--images", "16", "32", "48", "--resume"]) == 0
    state = json.loads((runs / "betavae" / "seed0" / "curve_state.json").read_text())
    assert [p["steps"] for p in state["points"]] == [2, 4, 6]
    assert [p["cpu_s"] for p in state["points"]][:2] == first_cpu  # not retrained
    checkpoint_cfg = load_config(runs / "betavae" / "seed0" / "config.yaml")
    assert checkpoint_cfg.model.baseline.lr_anneal_steps == 4 and checkpoint_cfg.train.max_steps == 6

    with open(runs / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["images"]) for r in rows] == [16, 32, 48]
    assert {"MIG", "mi/object_hue", "mi/shape", "cpu_s"} <= set(rows[0])
    assert (runs / "learning_curve.png").stat().st_size > 10_000
    meta = json.loads((runs / "learning_curve.json").read_text())
    assert meta["invocations"] == 2

    assert lc.main([*common, "--images", "16", "32", "48", "96", "--report"]) == 0  # a stopped sitting's points
    state = json.loads((runs / "betavae" / "seed0" / "curve_state.json").read_text())
    assert [p["steps"] for p in state["points"]] == [2, 4, 6]  # nothing trained
    with open(runs / "learning_curve.csv") as f:
        assert [int(r["images"]) for r in csv.DictReader(f)] == [16, 32, 48]
    reported = json.loads((runs / "learning_curve.json").read_text())
    assert reported["invocations"] == 2 and "--report" not in reported["command"]  # the sittings' own command


def test_cpu_seconds_of_parallel_runs_are_each_runs_own(tmp_path):
    # --jobs > 1 runs children from threads of one process: the sleeper's count must not take in the busy
    # sibling that ends while it waits (getrusage(RUSAGE_CHILDREN) before/after would)
    from concurrent.futures import ThreadPoolExecutor

    busy = [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(3)"]
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(lc.run_logged, sleeper, tmp_path / "sleeper.log", 1)
        fast = pool.submit(lc.run_logged, busy, tmp_path / "busy.log", 1)
        busy_s, sleeper_s = fast.result(), slow.result()
    assert busy_s >= 0.6
    assert sleeper_s < 0.3
    assert (tmp_path / "busy.log").read_text().startswith("$ ")


def test_a_failing_command_raises_with_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"exit 3\).*\n.*bad config"):
        lc.run_logged([sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"], tmp_path / "x.log", 1)


def test_a_sitting_stopped_after_its_first_point_keeps_its_rows_and_wall_time(tmp_path, monkeypatch):
    runs = tmp_path / "curves"
    real_score = lc.score_point
    scored = []

    def score_then_stop(run, steps, metrics, threads):
        if scored:
            raise KeyboardInterrupt  # the sitting is stopped while its second point is scored
        scored.append(steps)
        return real_score(run, steps, metrics, threads)

    monkeypatch.setattr(lc, "score_point", score_then_stop)
    with pytest.raises(KeyboardInterrupt):
        lc.main(["--curves", "betavae", "--seeds", "0", "--metrics", "mig", "--runs-dir", str(runs), "--results", "",
                 "--images", "16", "32", "--overrides", *TINY_VAE])
    record = json.loads((runs / "learning_curve.json").read_text())
    assert [r["images"] for r in record["rows"]] == [16]
    assert record["invocations"] == 1 and record["total_s"] > 0
    with open(runs / "learning_curve.csv") as f:
        assert [int(r["images"]) for r in csv.DictReader(f)] == [16]
