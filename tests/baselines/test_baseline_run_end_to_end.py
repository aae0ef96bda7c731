"""train.py with model.kind=<baseline> on the quickstart data, then `ldm-dis sample traverse / swap`
and the representation read back from the checkpoint (what `ldm-dis evaluate` uses)."""

import numpy as np

from ldm_dis.cli import main as cli_main
from ldm_dis.commands.train import main as train_main


def test_train_then_sample_from_the_run_folder(tmp_path):
    kind = "factorqvae"
    run_dir = tmp_path / kind
    overrides = [
        f"model.kind={kind}", f"run.dir={run_dir}", "data.resolution=16", "data.num_workers=0",
        "model.baseline.base_channels=4", "model.baseline.hidden=16", "model.baseline.disc_hidden=16",
        "train.batch_size=8", "train.max_steps=3", "train.log_every=1", "train.ckpt_every=3",
        "train.sample_every=3", "train.num_sample_images=4",
    ]
    assert train_main(["--config", "quickstart.yaml", *overrides]) == 0
    assert (run_dir / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
    assert (run_dir / "samples" / "step_0000003.png").is_file()

    assert cli_main(["sample", "traverse", str(run_dir), "--images", "1", "--steps", "3", "--reference", "16"]) == 0
    assert (run_dir / "pictures" / "traverse.png").is_file()  # with the other pictures, beside the trainer's samples/
    out = tmp_path / "swap.png"
    assert cli_main(["sample", "swap", str(run_dir), "--pairs", "1", "--out", str(out)]) == 0
    assert out.is_file()

    from ldm_dis.training.export import load_representation

    dataset, representation_fn = load_representation(run_dir)
    images = dataset.images_from_factors(dataset.sample_factors(5, np.random.default_rng(0)))
    codes = representation_fn(images)
    assert codes.shape == (5, 12)  # 2 x 6 factors
    assert np.array_equal(codes, representation_fn(images))  # deterministic
