"""Typed configs: every shipped file loads, overrides are typed, mistakes fail early and helpfully."""


import pytest

from ldm_dis.config import ConfigError, load_config, resolve_config_path
from ldm_dis.config.loading import CONFIG_DIR

SHIPPED = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name):
    cfg = load_config(name)
    assert cfg.train.batch_size > 0 and cfg.data.resolution > 0


@pytest.mark.parametrize("dataset", ["shapes3d", "mpi3d", "cars3d", "celeba", "dsprites"])
def test_paper_configs_carry_the_paper_values(dataset):
    cfg = load_config(f"{dataset}.yaml")
    assert cfg.data.name == dataset and cfg.data.resolution == 64
    fs, unet, enc = cfg.model.first_stage, cfg.model.unet, cfg.model.encoder
    assert (fs.embed_dim, fs.n_embed, fs.base_channels, list(fs.channel_mult)) == (3, 2048, 32, [1, 2, 4])
    assert (fs.disc_weight, fs.codebook_weight, fs.disc_start) == (0.75, 1.0, 0)
    assert (unet.base_channels, list(unet.channel_mult), unet.num_res_blocks) == (64, [1, 2, 4, 4], 2)
    assert (list(unet.attention_downsample), unet.num_heads, unet.dropout, unet.skip_dropout) == ([1, 2, 4], 8, 0.1, 0.2)
    assert unet.use_scale_shift_norm and enc.unit_dim == 32
    assert cfg.model.diffusion.num_train_timesteps == 1000 and cfg.model.diffusion.beta_schedule == "scaled_linear"
    assert cfg.train.lr == 1e-4 and cfg.train.ema_decay == 0.9999
    assert cfg.train.batch_size == (64 if dataset == "celeba" else 512)
    assert cfg.model.bottleneck.dyga.fit_every_epochs == (5 if dataset == "cars3d" else 1)


def test_quickstart_is_sized_for_cpu():
    cfg = load_config("quickstart.yaml")
    assert cfg.data.name == "synth-shapes3d" and cfg.data.resolution == 32


def test_lookup_by_name_without_suffix_and_by_path(tmp_path):
    assert resolve_config_path("mpi3d") == resolve_config_path("mpi3d.yaml") == CONFIG_DIR / "mpi3d.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("train:\n  max_steps: 7\n")
    assert load_config(own).train.max_steps == 7


def test_missing_file_names_it_and_lists_known_configs():
    with pytest.raises(ConfigError, match=r"no_such\.yaml.*known: .*mpi3d\.yaml"):
        load_config("no_such.yaml")


def test_overrides_are_converted_to_the_schema_types():
    cfg = load_config("shapes3d.yaml", ["train.max_steps=10", "model.unet.skip_dropout=0.5", "run.dir=/tmp/x",
                                        "model.unet.skip_dropout_levels=[1,2]", "data.subset=100"])
    assert cfg.train.max_steps == 10 and isinstance(cfg.train.max_steps, int)
    assert cfg.model.unet.skip_dropout == 0.5 and cfg.run.dir == "/tmp/x"
    assert list(cfg.model.unet.skip_dropout_levels) == [1, 2] and cfg.data.subset == 100


def test_misspelt_key_suggests_the_nearest_valid_key():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.unet.skip_dropuot=0.1"])
    message = str(info.value)
    assert "model.unet.skip_dropuot" in message and "did you mean `skip_dropout`?" in message


def test_misspelt_key_in_a_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  bottleneck:\n    dyga:\n      k_mx: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*model\.bottleneck\.dyga\.k_mx.*did you mean `k_max`"):
        load_config(bad)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"wrong type for `train\.batch_size`"):
        load_config(None, ["train.batch_size=many"])


def test_malformed_override_and_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["train.max_steps"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(broken)


def test_config_cannot_name_arbitrary_code():
    # components are chosen by registry name; an import path is just an unknown name, at load and at build
    from omegaconf import OmegaConf

    from ldm_dis.bottlenecks import build_bottleneck
    from ldm_dis.config.schema import BottleneckConfig
    from ldm_dis.errors import UserInputError

    with pytest.raises(ConfigError, match="`model.bottleneck.kind`='os.system' is unknown"):
        load_config(None, ["model.bottleneck.kind=os.system"])
    with pytest.raises(UserInputError, match="`model.bottleneck.kind`='os.system' is unknown"):
        build_bottleneck(OmegaConf.structured(BottleneckConfig(kind="os.system")), 4, 8)


def test_every_registry_is_a_dict_of_classes_and_names_the_nearest_valid_name():
    """Bottlenecks, tasks, baseline latents, datasets, metrics: a name maps to a class (or function),
    never to an import path; built outside load_config, a misspelt name still says what was meant."""
    import inspect

    from omegaconf import OmegaConf

    from ldm_dis.baselines.model import KINDS, BaselineModel
    from ldm_dis.bottlenecks import BOTTLENECKS, build_bottleneck
    from ldm_dis.config.schema import BaselineConfig, BottleneckConfig, DataConfig
    from ldm_dis.data import DATASETS, build_dataset
    from ldm_dis.errors import UserInputError
    from ldm_dis.metrics.suite import METRICS, check_names
    from ldm_dis.training.tasks import TASKS, build_task

    assert all(inspect.isclass(c) for registry in (BOTTLENECKS, TASKS, DATASETS) for c in registry.values())
    assert all(inspect.isclass(kind.latent) for kind in KINDS.values()) and all(map(callable, METRICS.values()))
    cases = [
        (lambda: build_bottleneck(OmegaConf.structured(BottleneckConfig(kind="dygaa")), 4, 8),
         "`model.bottleneck.kind`='dygaa' is unknown; did you mean 'dyga'?"),
        (lambda: build_task(load_config(None, []), None, kind="betavea"),
         "`model.kind`='betavea' is unknown; did you mean 'betavae'?"),
        (lambda: BaselineModel("factorqvea", OmegaConf.structured(BaselineConfig), 3, 16, 4),
         "`model.kind`='factorqvea' is unknown; did you mean 'factorqvae'?"),
        (lambda: BaselineModel("qvae", OmegaConf.structured(BaselineConfig(likelihood="bernouli")), 3, 16, 4),
         "`model.baseline.likelihood`='bernouli' is unknown; did you mean 'bernoulli'?"),
        (lambda: build_dataset(OmegaConf.structured(DataConfig(name="synth-shapes3"))),
         "`data.name`='synth-shapes3' is unknown; did you mean 'synth-shapes3d'?"),
        (lambda: check_names(["dci", "modularty"]), "`metric`='modularty' is unknown; did you mean 'modularity'?"),
    ]
    for build, message in cases:
        with pytest.raises(UserInputError) as info:
            build()
        assert message in str(info.value)
