"""`protocol: paper | released` sets every released-code behaviour at once; explicit keys win."""

import pytest

from ldm_dis.config import load_config, to_yaml
from ldm_dis.config.protocol import protocol_differences, resolve_protocol
from ldm_dis.errors import UserInputError

KEYS = ("model.unet.skip_dropout_levels", "model.unet.resblock_updown", "model.bottleneck.dyga.alignment",
        "eval.unit_pca", "eval.infomec_active")


def values(cfg):
    from omegaconf import OmegaConf

    out = {k: OmegaConf.select(cfg, k) for k in KEYS}
    levels = out["model.unet.skip_dropout_levels"]
    out["model.unet.skip_dropout_levels"] = None if levels is None else list(levels)
    return out


def test_paper_is_the_default_and_leaves_the_keys_to_their_paper_reading():
    cfg = load_config("shapes3d.yaml")
    assert cfg.protocol == "paper" and set(values(cfg).values()) == {None}
    assert protocol_differences(cfg) == []


def test_released_sets_every_behaviour():
    cfg = load_config("shapes3d.yaml", ["protocol=released"])
    assert values(cfg) == {
        "model.unet.skip_dropout_levels": [1, 2],  # 16x16 and 8x8 at Table 8's size
        "model.unet.resblock_updown": True,
        "model.bottleneck.dyga.alignment": "released",
        "eval.unit_pca": "all",
        "eval.infomec_active": "iqr",
    }
    assert protocol_differences(cfg) == []
    again = load_config(None, [])  # the saved config.yaml of such a run reloads to the same values
    from omegaconf import OmegaConf

    again = OmegaConf.merge(again, OmegaConf.create(to_yaml(cfg)))
    assert values(resolve_protocol(again)) == values(cfg)


def test_explicit_values_win_and_are_listed():
    cfg = load_config("shapes3d.yaml", ["protocol=released", "model.unet.resblock_updown=false",
                                        "model.unet.skip_dropout_levels=[8]"])
    assert cfg.model.unet.resblock_updown is False and list(cfg.model.unet.skip_dropout_levels) == [8]
    assert cfg.eval.unit_pca == "all"  # the keys left null still follow the protocol
    assert sorted(protocol_differences(cfg)) == [("model.unet.resblock_updown", False, True),
                                                 ("model.unet.skip_dropout_levels", [8], [1, 2])]
    paper = load_config("shapes3d.yaml", ["eval.infomec_active=iqr"])
    assert protocol_differences(paper) == [("eval.infomec_active", "iqr", "range")]


def test_train_prints_the_kept_differences(tmp_path, capsys, monkeypatch):
    import ldm_dis.training.pipeline as pipeline
    from ldm_dis.commands import train

    monkeypatch.setattr(pipeline, "run_training", lambda cfg, **kw: None)
    assert train.main(["--config", "shapes3d.yaml", "protocol=released", "model.unet.resblock_updown=false"]) == 0
    assert "protocol released: model.unet.resblock_updown=False as set (the protocol's value is True)" in capsys.readouterr().out


def test_unknown_protocol_is_refused():
    with pytest.raises(UserInputError, match=r"protocol='relased' is unknown; expected one of \['paper', 'released'\]"):
        load_config("shapes3d.yaml", ["protocol=relased"])
