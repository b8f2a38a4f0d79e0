"""The networks a config asks for: ``model.architecture`` (mlp or conv) or a user's own builders.

A user builder is named by import path, ``"package.module:function"``; it is called with keyword
arguments ``event_shape`` (the shape of one x, e.g. ``(1, 28, 28)``) and ``latent_dim`` and returns
an ``nn.Module``:

- ``model.encoder``: x (B, *event_shape) -> features (B, F). Each posterior adds its own heads: a
  linear layer to its parameters (gaussian, gaussian_full), a noise-injected MLP on [features, ε]
  (implicit), z0(x) and the coefficients a_i(x) (noise_basis).
- ``model.decoder``: z (N, latent_dim) -> (N, *event_shape) or (N, prod(event_shape)).
- ``model.critic``: the critic's x-branch, x (N, *event_shape) -> features (N, F); the critic
  T(x, z) is a residual MLP on [features, z].

Each built network is run once on a small batch here, so a wrong output shape is a one-line
:class:`ConfigError` naming the key, not an error deep inside training.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..networks import (
    ConvCriticFeatures,
    ConvDecoder,
    ConvEncoder,
    ConvNoiseEncoder,
    NoiseInjectedMLP,
)
from .schema import Config, ConfigError

_PROBE_BATCH = 2


def load_builder(key: str, path: str) -> Callable[..., nn.Module]:
    """The function named by ``"package.module:function"``; a one-line ConfigError naming ``key``
    for a malformed path, a missing module or a missing attribute."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{key}: {path!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{key}: cannot import {module_name!r} ({err})") from None
    builder = getattr(module, attribute, None)
    if not callable(builder):
        raise ConfigError(f"{key}: module {module_name!r} has no function {attribute!r}")
    return builder


def _call_builder(key: str, path: str, event_shape: tuple[int, ...], latent_dim: int) -> nn.Module:
    builder = load_builder(key, path)
    try:
        net = builder(event_shape=event_shape, latent_dim=latent_dim)
    except Exception as err:  # the user's code: report it on one line, naming the key
        raise ConfigError(f"{key}: {path}(event_shape=..., latent_dim=...) failed: {err}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{key}: {path} returned {type(net).__name__}; expected an nn.Module")
    return net


def _probe(key: str, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``net(inputs)`` on a small batch, with errors turned into one line naming ``key``."""
    try:
        with torch.no_grad():
            return net(inputs)
    except Exception as err:
        shape = tuple(inputs.shape)
        raise ConfigError(f"{key}: the network failed on an input of shape {shape}: {err}") from None


def _features(key: str, net: nn.Module, event_shape: tuple[int, ...]) -> int:
    """The width F of a feature network x (B, *event_shape) -> (B, F)."""
    out = _probe(key, net, torch.zeros(_PROBE_BATCH, *event_shape))
    if out.dim() != 2 or out.shape[0] != _PROBE_BATCH:
        raise ConfigError(
            f"{key}: the network maps x of shape {(_PROBE_BATCH, *event_shape)} to "
            f"{tuple(out.shape)}; expected ({_PROBE_BATCH}, F) features"
        )
    return int(out.shape[1])


class FeaturesThenNoise(nn.Module):
    """An implicit sampler g(x, ε) = MLP([h(x), ε]) on a feature network h (a user's encoder).

    Shapes: x (N, *event_shape), eps (N, noise_dim) -> (N, D).
    """

    def __init__(self, features: nn.Module, sampler: NoiseInjectedMLP):
        super().__init__()
        self.features, self.sampler = features, sampler

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.sampler(self.features(x), eps)


class SizedFeatures(nn.Module):
    """A feature network with its output width recorded as ``out_features`` (what a critic reads
    to size the layer after it). Shapes: x (N, ...) -> (N, out_features)."""

    def __init__(self, net: nn.Module, out_features: int):
        super().__init__()
        self.net, self.out_features = net, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class Networks:
    """Keyword arguments for each component; empty where the component's default MLP serves."""

    posterior: dict
    likelihood: dict
    critic: dict


def build_networks(cfg: Config, event_shape: tuple[int, ...]) -> Networks:
    """The networks ``cfg.model`` asks for, for data whose examples have ``event_shape``.

    Raises:
        ConfigError: conv on data that are not images; a user builder that cannot be loaded, fails,
            or returns a network with the wrong output shape.
    """
    m = cfg.model
    if m.architecture == "conv" and len(event_shape) != 3:
        raise ConfigError(
            f"model.architecture: 'conv' needs images, but one example has shape {event_shape}; "
            "give data.image_shape for a file of images, or use model.architecture=mlp"
        )
    conv = m.architecture == "conv"
    width = {"width": m.conv_width}
    nets = Networks({}, {}, {})
    d = m.latent_dim
    features = None
    if m.encoder:
        features = _call_builder("model.encoder", m.encoder, event_shape, d)
    elif conv and m.posterior != "implicit":
        features = ConvEncoder(event_shape, m.activation, **width)
    if features is not None:
        f = _features("model.encoder", features, event_shape)
        if m.posterior == "gaussian":
            nets.posterior["net"] = nn.Sequential(features, nn.Linear(f, 2 * d))
        elif m.posterior == "gaussian_full":
            nets.posterior["net"] = nn.Sequential(features, nn.Linear(f, d + d * (d + 1) // 2))
        elif m.posterior == "noise_basis":
            nets.posterior.update(trunk=features, feature_dim=f)
        else:  # implicit: the noise enters after the user's features
            sampler = NoiseInjectedMLP(f, m.noise_dim, m.hidden, d, m.activation, m.inject_noise)
            nets.posterior["net"] = FeaturesThenNoise(features, sampler)
    elif conv:  # implicit: AVB's conv0, the noise added at every conv layer
        nets.posterior["net"] = ConvNoiseEncoder(event_shape, m.noise_dim, d, m.activation, **width)
    if m.decoder:
        decoder = _call_builder("model.decoder", m.decoder, event_shape, d)
        out = _probe("model.decoder", decoder, torch.zeros(_PROBE_BATCH, d))
        if out.shape[0] != _PROBE_BATCH or out[0].numel() != math.prod(event_shape):
            raise ConfigError(
                f"model.decoder: the network maps z of shape ({_PROBE_BATCH}, {d}) to "
                f"{tuple(out.shape)}; expected ({_PROBE_BATCH}, {', '.join(map(str, event_shape))})"
            )
        nets.likelihood["decoder"] = decoder
    elif conv:
        nets.likelihood["decoder"] = ConvDecoder(d, event_shape, m.activation, **width)
    x_branch = None
    if m.critic:
        x_branch = _call_builder("model.critic", m.critic, event_shape, d)
        x_branch = SizedFeatures(x_branch, _features("model.critic", x_branch, event_shape))
    elif conv:
        x_branch = ConvCriticFeatures(event_shape, **width)
    if x_branch is not None:
        nets.critic["x_features"] = x_branch
    return nets
