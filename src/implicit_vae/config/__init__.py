"""Typed configuration (``schema``: YAML files and ``section.key=value`` overrides, validated with
one-line errors; imports nothing else of the library) and the factory that turns a config into
objects (``implicit_vae.config.factory``, imported on demand so that checking a config stays cheap)."""

from .schema import (
    ACTIVATION_NAMES,
    ARCHITECTURE_NAMES,
    ESTIMATOR_NAMES,
    LIKELIHOOD_NAMES,
    POSTERIOR_NAMES,
    PRIOR_NAMES,
    SCHEDULE_NAMES,
    SECTIONS,
    Config,
    ConfigError,
    DataConfig,
    DivergenceConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    parse_override,
)

__all__ = [
    "ACTIVATION_NAMES",
    "ARCHITECTURE_NAMES",
    "ESTIMATOR_NAMES",
    "LIKELIHOOD_NAMES",
    "POSTERIOR_NAMES",
    "PRIOR_NAMES",
    "SCHEDULE_NAMES",
    "SECTIONS",
    "Config",
    "ConfigError",
    "DataConfig",
    "DivergenceConfig",
    "ModelConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "parse_override",
]
