"""Typed configs: :func:`load_config` merges a YAML file and overrides onto :class:`Config`."""

from ldm_dis.config.loading import ConfigError, config_to_dict, load_config, resolve_config_path, to_yaml
from ldm_dis.config.schema import Config

__all__ = ["Config", "ConfigError", "config_to_dict", "load_config", "resolve_config_path", "to_yaml"]
