"""Every bad value is refused when the config loads, naming the key; nothing is built or trained first."""

import pytest

from ldm_dis.config import ConfigError, load_config


def refused(overrides, *fragments, config="quickstart.yaml"):
    with pytest.raises(ConfigError) as info:
        load_config(config, overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("override, fragments", [
    # ranges
    ("train.batch_size=-8", ["`train.batch_size`=-8: must be at least 1"]),
    ("train.lr=0", ["`train.lr`=0.0: must be greater than 0"]),
    ("train.lr=inf", ["`train.lr`=inf: must be a finite number"]),
    ("model.encoder.num_units=0", ["`model.encoder.num_units`=0"]),
    ("model.diffusion.num_train_timesteps=0", ["`model.diffusion.num_train_timesteps`=0"]),
    ("model.unet.skip_dropout=1.5", ["`model.unet.skip_dropout`=1.5: must be in [0, 1)"]),
    ("train.epoch_steps=-5", ["`train.epoch_steps`=-5"]),
    ("train.sample_every=-1", ["`train.sample_every`=-1: must be at least 0"]),
    ("data.resolution=0", ["`data.resolution`=0"]),
    ("data.resolution=-32", ["`data.resolution`=-32"]),
    ("train.adam_betas=[0.9,1.5]", ["`train.adam_betas`=[0.9, 1.5]: each entry must be in [0, 1)"]),
    # the first stage's training is derived from model.first_stage: its errors name those keys
    ("model.first_stage.batch_size=0", ["`model.first_stage.batch_size`=0"]),
    ("model.first_stage.lr=-1e-4", ["`model.first_stage.lr`=-0.0001"]),
    ("model.first_stage.max_steps=0", ["`model.first_stage.max_steps`=0"]),
    # choices, with the nearest valid name
    ("model.kind=ldn", ["`model.kind`='ldn' is unknown; did you mean 'ldm'?"]),
    ("model.bottleneck.kind=factorz", ["`model.bottleneck.kind`='factorz' is unknown; did you mean 'factorq'?", "'dyga'"]),
    ("eval.metrics=[dci,migg]", ["`eval.metrics[1]`='migg' is unknown; did you mean 'mig'?"]),
    ("model.diffusion.loss=l3", ["`model.diffusion.loss`='l3' is unknown", "'l1', 'l2'"]),
    ("model.diffusion.beta_schedule=cosine", ["`model.diffusion.beta_schedule`='cosine' is unknown", "'squaredcos_cap_v2'"]),
    ("model.diffusion.prediction_type=v_prediction", ["`model.diffusion.prediction_type`='v_prediction'"]),
    ("model.diffusion.timestep_sampling=logit", ["did you mean 'logit_normal'?"]),
    ("model.diffusion.loss_weighting=min-snr", ["`model.diffusion.loss_weighting`='min-snr' is unknown; did you mean 'min_snr'?"]),
    ("model.diffusion.pdae_gamma=2", ["`model.diffusion.pdae_gamma`=2.0: must be in [0, 1]"]),
    ("model.bottleneck.dyga.fitter=cuda", ["`model.bottleneck.dyga.fitter`='cuda' is unknown", "'torch'"]),
    ("train.max_minutes=0", ["`train.max_minutes`=0.0: must be greater than 0"]),
    ("train.extractor_lr=-1e-3", ["`train.extractor_lr`=-0.001: must be greater than 0"]),
    ("train.mixed_precision=fp8", ["`train.mixed_precision`='fp8' is unknown", "'bf16'"]),
    ("data.name=shapes3", ["`data.name`='shapes3' is unknown; did you mean 'shapes3d'?"]),
    ("model.first_stage.codebook_init=random", ["`model.first_stage.codebook_init`='random'"]),
    # rules across fields (quickstart: 32x32 images, first stage /4, extractor /16, U-Net /4)
    ("data.resolution=33", ["`data.resolution`=33: must be divisible by 4, the first stage's downsampling"]),
    ("data.resolution=36", ["`data.resolution`=36: must be divisible by 16, the feature extractor's"]),
    ("model.unet.num_heads=3", ["`model.unet.num_heads`=3: must divide the widths with attention [32, 64]"]),
    ("model.unet.attention_downsample=[3]", ["`model.unet.attention_downsample`=[3]: no level [3]", "[1, 2, 4]"]),
    ("model.unet.skip_dropout_levels=[8]", ["`model.unet.skip_dropout_levels`=[8]: no level [8]"]),
    ("model.bottleneck.dyga.k_init=40", ["`model.bottleneck.dyga.k_init`=40: must be at most `k_max`=32"]),
    ("model.unet.base_channels=48", ["widths [48, 96, 96]: each must be a multiple of 32"]),
    ("model.diffusion.sample_steps=2000", ["`model.diffusion.sample_steps`=2000: at most `num_train_timesteps`=1000"]),
    # a section given a value: the key inside that was probably meant
    ("model.bottleneck=factorq", ["`model.bottleneck` is a section, not a value; did you mean `model.bottleneck.kind=factorq`?"]),
    ("data=shapes3d", ["did you mean `data.name=shapes3d`?"]),
    ("model.first_stage=runs/vq.ckpt", ["did you mean `model.first_stage.checkpoint=runs/vq.ckpt`?"]),
    ("eval.metrics=dci", ["`eval.metrics` takes a list, written eval.metrics=[a,b]"]),
])
def test_bad_values_are_refused_at_load_naming_the_key(override, fragments):
    refused([override], *fragments)


def test_all_problems_are_listed_at_once():
    message = refused(["train.batch_size=0", "model.unet.skip_dropout=1.5", "train.lr=-1"], "3 invalid values")
    assert message.count("\n  - ") == 3


def test_a_section_set_to_a_value_in_a_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  bottleneck: factorq\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: `model\.bottleneck` is a section.*model\.bottleneck\.kind=factorq"):
        load_config(bad)


def test_baselines_need_a_power_of_two_resolution():
    refused(["data.resolution=48"], "`data.resolution`=48: the VAE baselines need a power of two",
            config="baselines/cpu_betavae.yaml")
    refused(["model.baseline.likelihood=poisson"], "`model.baseline.likelihood`='poisson'", config="baselines/cpu_betavae.yaml")
    load_config("baselines/cpu_betavae.yaml", ["model.unet.num_heads=8"])  # the U-Net rules are for the LDM


def test_the_train_command_refuses_before_building_anything(tmp_path, capsys):
    from ldm_dis.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", "--config", "quickstart.yaml", f"run.dir={run_dir}", "model.bottleneck.kind=dygaa"]) == 2
    assert "did you mean 'dyga'?" in capsys.readouterr().err
    assert not run_dir.exists() and not (tmp_path / ".first_stage").exists()


def test_the_listed_beta_schedules_are_the_ones_both_schedulers_accept():
    from ldm_dis.config.schema import DiffusionConfig
    from ldm_dis.models.diffusion import BETA_SCHEDULES, make_ddim_scheduler, make_train_scheduler

    for name in BETA_SCHEDULES:
        make_train_scheduler(DiffusionConfig(beta_schedule=name))
        make_ddim_scheduler(DiffusionConfig(beta_schedule=name))
    with pytest.raises(NotImplementedError):
        make_ddim_scheduler(DiffusionConfig(beta_schedule="cosine"))


def test_an_unset_resolution_is_checked_at_the_size_the_dataset_serves():
    load_config("quickstart.yaml", ["data.resolution=null"])  # synth-shapes3d at 64: fits every network
    refused(["data.resolution=null", "model.encoder.channels=[8,8,8,8,8,8,8]"],
            "`data.resolution`=64: must be divisible by 128")
    # an arrays file's size is known only once it is read
    load_config("quickstart.yaml", ["data.resolution=null", "data.name=arrays", "data.path=x.npz",
                                    "model.encoder.channels=[8,8,8,8,8,8,8]"])
