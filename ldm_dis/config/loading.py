"""Load a YAML config onto the typed schema, apply ``a.b=value`` overrides, fail early and clearly.

    cfg = load_config("quickstart.yaml", ["train.max_steps=100"])

``quickstart.yaml`` is looked up in ``configs/`` when it is not a path. Errors are :class:`ConfigError`
with one message that names the offending key and, for a misspelt key, the nearest valid one.
"""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from ldm_dis.config.protocol import resolve_protocol
from ldm_dis.config.schema import Config
from ldm_dis.config.validation import section_given_a_value, validate_config
from ldm_dis.errors import UserInputError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # shipped in the package (configs/ at the root links here)


class ConfigError(UserInputError):
    """A config file or override that does not fit the schema."""


def resolve_config_path(name: str | Path) -> Path:
    """``mpi3d.yaml`` -> ``configs/mpi3d.yaml``; an existing path is used as it is."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []
    raise ConfigError(f"config file {str(name)!r} not found (neither a path nor in {CONFIG_DIR}); known: {known}")


def _valid_keys(schema: Any, dotted: str) -> list[str]:
    """The field names valid next to the last component of ``dotted`` in the dataclass tree."""
    node = schema
    for part in dotted.split(".")[:-1]:
        if not is_dataclass(node):
            return []
        match = {f.name: f for f in fields(node)}.get(part)
        if match is None:
            return []
        node = match.default_factory() if callable(match.default_factory) else match.default  # type: ignore[misc]
    return [f.name for f in fields(node)] if is_dataclass(node) else []


def _explain(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, ConfigKeyError) or "not in struct" in str(exc) or "Key '" in str(exc):
        valid = _valid_keys(Config(), key) if key else []
        last = key.split(".")[-1]
        near = difflib.get_close_matches(last, valid, n=1, cutoff=0.5)
        hint = f"did you mean `{near[0]}`?" if near else f"valid keys here: {', '.join(valid)}"
        return ConfigError(f"{source}: unknown config key `{key}`; {hint}")
    if isinstance(exc, ValidationError):
        msg = str(exc).splitlines()[0]
        if "is not a ListConfig" in msg:
            return ConfigError(f"{source}: `{key}` takes a list, written {key}=[a,b] (in YAML: [a, b])")
        return ConfigError(f"{source}: wrong type for `{key}`: {msg}")
    return ConfigError(f"{source}: invalid config at `{key}`: {str(exc).splitlines()[0]}")


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    problem = section_given_a_value(Config(), other)  # OmegaConf's own message names no key here
    if problem:
        raise ConfigError(f"{source}: {problem}")
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _explain(exc, source) from None


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value))
    return pairs


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Return the typed config (an OmegaConf DictConfig behaving like :class:`Config`)."""
    cfg = OmegaConf.structured(Config)
    if path is not None:
        file = resolve_config_path(path)
        try:
            loaded = OmegaConf.load(file)
        except Exception as exc:  # yaml errors carry line numbers; keep them
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = OmegaConf.create({})
        cfg = _merge(cfg, loaded, str(file))
    for key, value in parse_overrides(overrides):
        try:
            dotlist = OmegaConf.from_dotlist([f"{key}={value}"])
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override {key}={value}: {exc}") from None
        cfg = _merge(cfg, dotlist, f"override {key}={value}")
    OmegaConf.set_readonly(cfg, False)
    source = str(resolve_config_path(path)) if path is not None else "config"
    cfg = resolve_protocol(cfg)  # null protocol keys -> the protocol's values, before they are validated
    if cfg.train.mixed_precision in ("False", "false"):  # YAML reads a bare `no` as false; the str field keeps "False"
        cfg.train.mixed_precision = "no"
    validate_config(cfg, source + (" with overrides" if overrides else ""))  # ranges, choices, rules across keys
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg)


def config_to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
