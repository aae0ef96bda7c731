"""benchmarks/reproduce.py: the variants, the budget arithmetic, the tables, and one tiny reproduction."""

import csv
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import reproduce  # noqa: E402
from _common import write_results  # noqa: E402

from ldm_dis.config.loading import load_config  # noqa: E402

# tiny runs, as tests/training/test_real_tasks.py makes them
TINY_DATA = ["data.subset=64", "data.num_workers=0"]
TINY_LDM = [*TINY_DATA, "train.batch_size=8", "train.max_steps=2", "train.num_sample_images=4",
            "model.first_stage.max_steps=2", "model.first_stage.batch_size=8", "model.first_stage.ckpt_every=2",
            "model.diffusion.sample_steps=2"]
TINY_VAE = ["train.max_steps=2", "train.batch_size=8", "train.num_sample_images=4", "model.baseline.base_channels=4",
            "model.baseline.hidden=16", "model.baseline.disc_hidden=16"]


# ------------------------------------------------------------------------------------------ the plan
@pytest.mark.parametrize("variant, bottleneck, skip_dropout", [
    ("baseline", "none", 0.0), ("dyga", "dyga", 0.0), ("sd", "none", 0.2), ("dyga_sd", "dyga", 0.2)])
def test_variant_overrides_turn_dyga_and_skip_dropout_on_and_off(variant, bottleneck, skip_dropout):
    base = load_config("quickstart.yaml")  # Skip Dropout off: the sd variants take the paper's rate
    assert base.model.unet.skip_dropout == 0
    cfg = load_config("quickstart.yaml", reproduce.variant_overrides(variant, base))
    assert (cfg.model.bottleneck.kind, cfg.model.unet.skip_dropout) == (bottleneck, skip_dropout)


def test_skip_dropout_variants_keep_the_configs_rate_where_it_is_on():
    base = load_config("quickstart.yaml", ["model.unet.skip_dropout=0.5"])
    for variant, rate in (("sd", 0.5), ("dyga_sd", 0.5), ("dyga", 0.0), ("baseline", 0.0)):
        cfg = load_config("quickstart.yaml", ["model.unet.skip_dropout=0.5", *reproduce.variant_overrides(variant, base)])
        assert cfg.model.unet.skip_dropout == rate, variant


def test_the_variant_that_keeps_the_config_needs_dyga_on():
    reproduce.check_ablation_config(load_config("quickstart.yaml"), list(reproduce.VARIANTS))
    with pytest.raises(SystemExit, match="'fsq'"):
        reproduce.check_ablation_config(load_config("quickstart.yaml", ["model.bottleneck.kind=fsq"]), ["dyga_sd"])
    reproduce.check_ablation_config(load_config("quickstart.yaml", ["model.bottleneck.kind=fsq"]), ["baseline", "dyga", "sd"])


def test_baseline_config_is_cpu_sized_for_synthetic_data_and_the_dataset_s_otherwise():
    assert reproduce.baseline_config(load_config("quickstart.yaml"), "betavae") == "baselines/cpu_betavae.yaml"
    assert reproduce.baseline_config(load_config("mpi3d.yaml"), "factorqvae") == "baselines/mpi3d_factorqvae.yaml"
    with pytest.raises(SystemExit, match="cars3d_betavae.yaml"):
        reproduce.baseline_config(load_config("cars3d.yaml"), "betavae")


def test_plan_gives_data_overrides_to_the_baselines_and_every_seed_its_folder(tmp_path):
    overrides = ["data.resolution=16", "train.lr=1.0"]
    base = load_config("quickstart.yaml", overrides)
    runs = reproduce.plan("quickstart.yaml", overrides, ["baseline"], reproduce.data_overrides(overrides),
                          ["betavae"], [0, 1], tmp_path, base)
    assert [(r.model, r.seed) for r in runs] == [("ldm_baseline", 0), ("betavae", 0), ("ldm_baseline", 1), ("betavae", 1)]
    assert runs[0].overrides == [*overrides, "model.bottleneck.kind=none", "model.unet.skip_dropout=0"]
    assert runs[1].overrides == ["data.resolution=16"] and runs[1].config == "baselines/cpu_betavae.yaml"
    assert runs[3].run_dir == tmp_path / "betavae" / "seed1"
    assert [r.is_ldm for r in runs[:2]] == [True, False]
    with pytest.raises(SystemExit, match="16px"):  # a baseline on other data than the LDM
        reproduce.plan("quickstart.yaml", overrides, [], [], ["betavae"], [0], tmp_path, base)


# -------------------------------------------------------------------------------- budget and schedule
def test_budget_steps_charge_the_first_stage_to_the_ldm():
    assert reproduce.budget_steps(240, 0.5) == 480
    assert reproduce.budget_steps(240, 0.5, charged_s=100) == 280  # (240 - 100) / 0.5
    assert reproduce.budget_steps(240, 7.0, charged_s=239) == 1
    with pytest.raises(SystemExit, match="first stage alone took 250 s"):
        reproduce.budget_steps(240, 0.5, charged_s=250)


def test_epoch_steps_stay_unless_the_run_is_shorter_than_two_epochs():
    assert reproduce.epoch_steps_for(900, 300) == 300
    assert reproduce.epoch_steps_for(600, 300) == 300
    assert reproduce.epoch_steps_for(599, 300) == 199
    assert reproduce.epoch_steps_for(2, 300) == 1


def test_schedule_overrides_of_ldm_and_vae_runs():
    common = ["train.max_steps=400", "train.ckpt_every=400", "train.sample_every=400", "train.log_every=20"]
    assert reproduce.schedule_overrides(400, 300) == [*common, "train.epoch_steps=133"]
    assert reproduce.schedule_overrides(400) == [*common, "model.baseline.lr_anneal_steps=400"]
    assert reproduce.schedule_overrides(10)[3] == "train.log_every=1"


def test_first_stage_time_from_its_log_ignores_the_pause_of_a_resume():
    records = [{"step": 50, "time": 100.0}, {"step": 100, "time": 150.0}, {"step": 150, "time": 200.0},
               {"step": 150, "epoch_end": 0, "time": 230.0},  # a DyGA-like record is not a step
               {"step": 200, "time": 1100.0}, {"step": 250, "time": 1150.0}, {"step": 300, "time": 1200.0}]
    assert reproduce.seconds_from_log(records, 300) == pytest.approx(300.0)  # 1 s per step
    assert reproduce.seconds_from_log(records[:1], 300) is None


def test_seconds_per_step_times_an_ldm_and_a_vae(tmp_path):
    from safetensors.torch import save_file

    from ldm_dis.data import build_dataset
    from ldm_dis.models.vqgan import FirstStage

    torch.set_num_threads(1)
    cfg = load_config("quickstart.yaml", [*TINY_LDM, "train.batch_size=4"])
    weights = tmp_path / "first_stage.safetensors"
    save_file({k: v.contiguous() for k, v in FirstStage.from_config(cfg.model.first_stage).state_dict().items()},
              str(weights))
    cfg.model.first_stage.checkpoint = str(weights)
    dataset = build_dataset(cfg.data)
    assert 0 < reproduce.seconds_per_step(cfg, dataset, repeats=2) < 30
    vae = load_config("baselines/cpu_betavae.yaml", [*TINY_DATA, *TINY_VAE])
    assert 0 < reproduce.seconds_per_step(vae, dataset, repeats=2) < 30


# ------------------------------------------------------------------------------------------- tables
def row(model, seed, steps, train_s, **scores):
    return {"model": model, "seed": seed, "steps": steps, "train_s": train_s, "scores": scores}


def test_mean_std_over_seeds():
    assert reproduce.mean_std([0.5, 0.7]) == "0.600 ± 0.141"  # std with ddof=1
    assert reproduce.mean_std([0.5, None]) == "0.500"
    assert reproduce.mean_std([]) == "-" and reproduce.mean([None]) == "-"


def test_results_table_from_hand_made_rows():
    rows = [row("a", 0, 100, 10.0, factorvae={"eval_accuracy": 0.5}, mig={"discrete_mig": 0.1}),
            row("a", 1, 110, 12.0, factorvae={"eval_accuracy": 0.7}, mig={"discrete_mig": 0.3}),
            row("b", 0, 40, 9.6, dci={"disentanglement": 0.25, "completeness": 0.125, "informativeness_test": 0.5})]
    assert reproduce.results_table(rows, [("b", "model B"), ("a", "model A"), ("c", "absent")]) == "\n".join([
        "| model | steps | train s | FactorVAE | DCI D | DCI C | DCI I (test) | MIG | InfoM |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| model B | 40 | 10 | - | 0.250 | 0.125 | 0.500 | - | - |",
        "| model A | 105 | 11 | 0.600 ± 0.141 | - | - | - | 0.200 ± 0.141 | - |",
    ])


def test_section_replaces_only_its_own_markers(tmp_path):
    meta = {"budget_s": 240.0, "dataset": "synth-shapes3d", "command": "python benchmarks/reproduce.py --budget-s 240",
            "date": "2026-11-22 10:00", "machine": "2 CPU cores (x86_64), no GPU", "jobs": 2, "threads": 1,
            "seeds": [0, 1], "total_s": 600.0, "invocations": 1, "protocol": "fast",
            "first_stage": {"path": "w", "seconds": 150.0, "source": "measured"}}
    rows = [row("ldm_dyga_sd", 0, 180, 240.0, mig={"discrete_mig": 0.1}), row("betavae", 0, 900, 238.0)]
    section = reproduce.section_text(rows, meta, ["dyga_sd"], ["betavae"])
    assert "First stage (VQ-GAN, shared by the LDM runs): 150 s (measured); charged to every LDM run" in section
    assert "total wall time 10.0 min" in section and "Budget: 240 s of training per model" in section
    vae_table = section.split("### VAE-family baselines")[1]
    assert "| betavae | 900 | 238 |" in vae_table and "| LDM + DyGA + Skip Dropout | 180 | 240 |" in vae_table

    results = tmp_path / "results.md"
    results.write_text("# Results\n\nkept above\n\n<!-- reproduce:begin -->\nold\n<!-- reproduce:end -->\n\nkept below\n")
    write_results(results, section, "reproduce")
    write_results(results, section, "reproduce")
    text = results.read_text()
    assert text.count("<!-- reproduce:begin -->") == 1 and "old" not in text
    assert text.startswith("# Results\n\nkept above\n") and text.endswith("<!-- reproduce:end -->\n\nkept below\n")
    assert section in text


def test_a_failed_run_names_itself_and_shows_its_log(tmp_path):
    run = reproduce.Run("betavae", 3, "baselines/cpu_betavae.yaml", [], tmp_path / "betavae" / "seed3")
    failing = [sys.executable, "-c", "import sys; print('line one'); print('the reason'); sys.exit(5)"]
    with pytest.raises(RuntimeError, match=r"run betavae seed 3 failed in train \(exit 5\)") as caught:
        reproduce.execute(run, {"train": failing, "evaluate": [sys.executable, "-c", "pass"]}, threads=1)
    assert str(run.run_dir / "stdout.log") in str(caught.value) and "the reason" in str(caught.value)


# ----------------------------------------------------------------------------------------- end to end
def test_tiny_reproduction_writes_rows_and_section_then_reuses_them(tmp_path, capsys):
    runs_dir, results = tmp_path / "runs", tmp_path / "results.md"
    argv = [*TINY_LDM, "--budget-s", "0", "--variants", "dyga_sd", "--baselines", "betavae", "--seeds", "0",
            "--metrics", "mig", "infomec", "--set", "mig.num_train=200", "--set", "infomec.num_points=200",
            "--jobs", "2", "--threads", "1", "--runs-dir", str(runs_dir), "--results", str(results),
            "--vae-overrides", *TINY_VAE]
    assert reproduce.main(argv) == 0
    rows = json.loads((runs_dir / "reproduce.json").read_text())["rows"]
    assert [(r["model"], r["seed"], r["steps"]) for r in rows] == [("ldm_dyga_sd", 0, 2), ("betavae", 0, 2)]
    for r in rows:
        assert math.isfinite(r["scores"]["mig"]["discrete_mig"]) and math.isfinite(r["scores"]["infomec"]["infom"])
        assert r["train_s"] >= 0 and (Path(r["run_dir"]) / "stdout.log").is_file()
    assert rows[0]["first_stage_s"] > 0 and rows[0]["train_s"] > rows[0]["first_stage_s"]
    with open(runs_dir / "reproduce.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["model"] for t in table] == ["ldm_dyga_sd", "betavae"]
    assert float(table[1]["mig.discrete_mig"]) == rows[1]["scores"]["mig"]["discrete_mig"]
    text = results.read_text()
    section = text.split("<!-- reproduce:begin -->")[1].split("<!-- reproduce:end -->")[0]
    mig = f"{rows[1]['scores']['mig']['discrete_mig']:.3f}"
    assert f"| betavae | 2 | {rows[1]['train_s']:.0f} | - | - | - | - | {mig} |" in section
    assert section.count("| LDM + DyGA + Skip Dropout | 2 |") == 2  # ablation table and baseline table
    assert "measured: 2 steps trained by this script" in section
    assert "betavae seed 0: 2 steps" in capsys.readouterr().out

    log = runs_dir / "betavae" / "seed0" / "stdout.log"
    before = log.stat().st_mtime_ns
    assert reproduce.main([*argv, "--reuse"]) == 0  # nothing is redone
    assert log.stat().st_mtime_ns == before
    text = results.read_text()
    assert "measured when this script trained it" in text and "over 2 invocations (--reuse)" in text


def test_set_steps_gives_each_run_its_budget_and_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "seconds_per_step", lambda cfg, dataset, accelerator: 0.5)
    base = load_config("quickstart.yaml", TINY_DATA)
    runs = reproduce.plan("quickstart.yaml", TINY_DATA, ["dyga_sd"], TINY_DATA, ["betavae"], [0], tmp_path, base)
    first_stage = reproduce.FirstStage(tmp_path / "weights", 100.0, "measured")
    assert reproduce.set_steps(runs, 240.0, first_stage) == {"ldm_dyga_sd": 0.5, "betavae": 0.5}
    ldm, vae = runs
    assert ldm.steps == 280 and "train.epoch_steps=93" in ldm.schedule  # (240 - 100) / 0.5; 280 < 2 x 300
    assert vae.steps == 480 and "model.baseline.lr_anneal_steps=480" in vae.schedule
    train = reproduce.run_commands(ldm, ["mig"], threads=1)["train"]
    assert train[-len(ldm.schedule) - 2:] == [f"run.dir={ldm.run_dir}", "train.seed=0", *ldm.schedule]
