"""Build an :class:`ImplicitVAE` from a validated :class:`Config`, choosing components by name.

The only place where a config becomes objects: components take plain arguments and modules. Every
option a component's class accepts is reachable, from a typed key (``model.noise_dim``,
``divergence.critic_width`` …) or from the section's options mapping (``model.posterior_options``,
``model.prior_options``, ``model.likelihood_options``, ``divergence.options``); a typed key set
away from its default for a class that does not take it, or an option the class does not accept, is
a one-line :class:`ConfigError` rather than silently dropped.

The family-wide sizes (``model.noise_dim``, ``model.n_basis``, ``model.inject_noise``, the
``model.prior_*`` sizes, ``divergence.critic_width`` / ``critic_blocks``) only warn when the chosen
class does not read them: a shipped config sets them for its own posterior, and
``--set model.posterior=gaussian`` on top of it must still run.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

from ..divergences import ESTIMATORS
from ..divergences.adaptive_contrast import full_contrast_moment_error
from ..divergences.aggregate_ratio import AggregateRatioCritic, needs_aggregate_critic
from ..likelihoods import LIKELIHOODS
from ..model import (
    ImplicitVAE,
    IncompatibleComponentsError,
    compatible_estimators,
    log_ratio_estimators,
)
from ..networks.shapes import event_shape_of
from ..posteriors import POSTERIORS
from ..priors import PRIORS, Prior, SamplePrior
from .networks import build_networks
from .schema import Config, ConfigError, DivergenceConfig, ModelConfig

# typed key -> (the constructor argument it fills, for the family it belongs to)
_POSTERIOR_KEYS = {
    "noise_dim": "noise_dim",
    "n_basis": "n_basis",
    "inject_noise": "inject_hidden",
    "moment_samples": "moment_samples",
    "posterior_sigma": "sigma",
}
_PRIOR_KEYS = {
    "prior_components": "components",
    "prior_learnable": "learnable",
    "prior_noise_dim": "noise_dim",
    "prior_hidden": "hidden",
}
_ESTIMATOR_KEYS = {
    "critic_width": "width",
    "critic_blocks": "blocks",
    "waymarks": "waymarks",
    "contrast": "contrast",
    "contrast_scale": "contrast_scale",
    "mixing_samples": "mixing_samples",
}
# keys that name one component's feature: set for another class, they are an error
_SPECIFIC = {"contrast", "contrast_scale", "waymarks", "posterior_sigma", "mixing_samples"}


class UnusedOptionWarning(UserWarning):
    """A config key was set for a class that does not read it."""


# set by the factory itself, never by an options mapping
_RESERVED = {"event_shape", "latent_dim", "self", "net", "trunk", "feature_dim", "decoder",
             "x_features", "generator", "bank", "sigma_net"}  # fmt: skip


def _accepted(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


def _defaults(section: type) -> dict[str, Any]:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(section)
    }


def _typed_options(
    section_name: str, section: Any, keys: dict[str, str], cls: type, label: str
) -> dict[str, Any]:
    """Constructor arguments from typed keys; a key set away from its default for a class that
    does not take it is an error naming the key."""
    accepted, defaults, out = _accepted(cls), _defaults(type(section)), {}
    for key, argument in keys.items():
        value = getattr(section, key)
        if argument in accepted:
            out[argument] = tuple(value) if isinstance(value, list) else value
        elif value != defaults[key]:
            if key in _SPECIFIC:
                raise ConfigError(
                    f"{section_name}.{key}: {value!r} does not apply to {label}, whose "
                    f"{cls.__name__} takes no {argument!r}; leave it at {defaults[key]!r}"
                )
            warnings.warn(
                f"{section_name}.{key}: {value!r} has no effect with {label} ({cls.__name__} "
                f"takes no {argument!r})",
                UnusedOptionWarning,
                stacklevel=3,
            )
    return out


def _extra_options(key: str, options: dict[str, Any], cls: type, label: str) -> dict[str, Any]:
    """An options mapping, checked against the class's constructor."""
    accepted = _accepted(cls) - _RESERVED
    for name in options:
        if name not in accepted:
            names = ", ".join(sorted(accepted)) or "none"
            raise ConfigError(
                f"{key}: {name!r} is not an option of {label} ({cls.__name__}); it accepts: {names}"
            )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _construct(key: str, cls: type, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)``; a ValueError from the class (a bad option value) becomes a
    ConfigError naming ``key``."""
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {err}") from None


def _build_prior(m: ModelConfig) -> Prior:
    """The prior named by ``model.prior``; file problems become one-line ConfigErrors."""
    if m.prior == "samples":
        if not m.prior_path:
            raise ConfigError(
                "model.prior_path: required when model.prior is 'samples'; give an .npy file "
                "of shape (N, latent_dim)"
            )
        try:
            return SamplePrior.from_file(m.prior_path, m.latent_dim)
        except ValueError as err:
            raise ConfigError(f"model.prior_path: {err}") from None
    cls = PRIORS[m.prior]
    label = f"model.prior={m.prior!r}"
    options = _typed_options("model", m, _PRIOR_KEYS, cls, label)
    if "act" in _accepted(cls):
        options["act"] = m.activation
    options.update(_extra_options("model.prior_options", m.prior_options, cls, label))
    return _construct("model.prior_options", cls, m.latent_dim, **options)


def _estimator_options(d: DivergenceConfig, cls: type) -> dict[str, Any]:
    label = f"divergence.name={d.name!r}"
    accepted = _accepted(cls)
    if d.waymarks > 1 and "waymarks" not in accepted:
        takers = [n for n, c in ESTIMATORS.items() if "waymarks" in _accepted(c)]
        raise ConfigError(
            f"divergence.waymarks: {d.waymarks} needs a logistic-critic estimator "
            f"({', '.join(takers)}), but divergence.name is {d.name!r}; use waymarks=1"
        )
    options = _typed_options("divergence", d, _ESTIMATOR_KEYS, cls, label)
    if "gaussian_skip" in accepted:
        options["gaussian_skip"] = gaussian_skip_setting(d)
        if d.gaussian_skip is False and d.options.get("gaussian_skip", False) is not False:
            raise ConfigError(
                "divergence.options: gaussian_skip=true contradicts divergence.gaussian_skip="
                "false; set only one of them"
            )
    elif d.gaussian_skip is False:
        warnings.warn(
            f"divergence.gaussian_skip: false has no effect with {label} ({cls.__name__} has no "
            "critic with a ½‖z‖² skip)",
            UnusedOptionWarning,
            stacklevel=3,
        )
    options.update(_extra_options("divergence.options", d.options, cls, label))
    return options


def gaussian_skip_setting(d: DivergenceConfig) -> bool | None:
    """The estimator's ``gaussian_skip`` argument for ``divergence.gaussian_skip``: None (auto) for
    ``auto`` and for ``true``, False for ``false``.

    ``true`` means auto because that is what it did before ``auto`` existed (the factory turned the
    skip on only for avb/aae with a standard normal prior, which is now the library's own auto
    rule, :func:`~implicit_vae.divergences.critics.resolve_gaussian_skip`): every stored config,
    whose default was ``true``, builds the same model. The class argument True itself is reached
    through ``divergence.options.gaussian_skip``."""
    return False if d.gaussian_skip is False else None


def build_model(cfg: Config, data_shape: int | Sequence[int]) -> ImplicitVAE:
    """Assemble posterior, prior, likelihood and estimator for data whose examples have shape
    ``data_shape`` (an int ``d`` for flat rows of d values, or an event shape such as (1, 28, 28)).

    Raises:
        ConfigError: when the chosen estimator cannot work with the chosen posterior and prior (the
            message lists the estimators that can), an option does not apply to the chosen class,
            or a network cannot be built.
    """
    m, d = cfg.model, cfg.divergence
    event_shape = event_shape_of(data_shape)
    nets = build_networks(cfg, event_shape)
    hidden = tuple(m.hidden)

    posterior_cls = POSTERIORS[m.posterior]
    label = f"model.posterior={m.posterior!r}"
    options = _typed_options("model", m, _POSTERIOR_KEYS, posterior_cls, label)
    options.update(hidden=hidden, act=m.activation)
    options.update(_extra_options("model.posterior_options", m.posterior_options, posterior_cls,
                                  label))  # fmt: skip
    posterior = _construct(
        "model.posterior_options", posterior_cls, event_shape, m.latent_dim, **options,
        **nets.posterior,
    )  # fmt: skip
    prior = _build_prior(m)
    likelihood_cls = LIKELIHOODS[m.likelihood]
    options = _extra_options("model.likelihood_options", m.likelihood_options, likelihood_cls,
                             f"model.likelihood={m.likelihood!r}")  # fmt: skip
    likelihood = _construct(
        "model.likelihood_options", likelihood_cls, m.latent_dim, event_shape,
        hidden=hidden[::-1], act=m.activation, **options, **nets.likelihood,
    )  # fmt: skip

    estimator_cls = ESTIMATORS[d.name]
    if m.objective == "iw" and not estimator_cls.has_log_ratio:
        raise ConfigError(
            f"model.objective: 'iw' needs a per-sample log q(z|x) - log p(z), which "
            f"divergence.name {d.name!r} does not give; expected one of "
            f"{', '.join(log_ratio_estimators())}"
        )
    reason = estimator_cls.requirements_error(posterior, prior)
    if reason is not None:
        raise ConfigError(
            f"divergence.name: {d.name!r} cannot be used here: {reason}; choose one of "
            f"{', '.join(compatible_estimators(posterior, prior))}"
        )
    if d.name == "avb_ac" and d.contrast == "full" and hasattr(posterior, "moment_samples"):
        reason = full_contrast_moment_error(posterior.moment_samples, m.latent_dim)
        if reason is not None:
            raise ConfigError(f"model.moment_samples: {reason}")
    options = _estimator_options(d, estimator_cls)
    if nets.critic and "x_features" in _accepted(estimator_cls):
        options.update(nets.critic)
    elif m.critic:
        raise ConfigError(
            f"model.critic: divergence.name={d.name!r} has no critic on x to give it to; "
            "use avb, avb_ac, kl_nwj, kl_dv, reverse_kl or js"
        )
    estimator = _construct("divergence.options", estimator_cls, event_shape, m.latent_dim,
                           **options)  # fmt: skip
    try:
        estimator.use_prior(prior)  # the ½‖z‖² skip's rule: True where it means nothing fails here
    except ValueError as err:
        raise ConfigError(f"divergence.options: {err}") from None
    needed = getattr(estimator, "min_samples_per_x", 1)
    if cfg.train.n_samples < needed:
        raise ConfigError(
            f"train.n_samples: {cfg.train.n_samples} is too few for divergence.name={d.name!r}, "
            f"which compares samples of each q(z|x); expected >= {needed}"
        )
    prior_critic = None
    if needs_aggregate_critic(prior, estimator):
        options = _extra_options("model.prior_critic_options", m.prior_critic_options,
                                 AggregateRatioCritic, "the aggregate prior critic")  # fmt: skip
        prior_critic = _construct("model.prior_critic_options", AggregateRatioCritic,
                                  m.latent_dim, **options)  # fmt: skip
    elif m.prior_critic_options:
        raise ConfigError(
            "model.prior_critic_options: only a learnable implicit prior under a KL estimator has "
            "an aggregate critic; leave it empty"
        )
    try:
        return ImplicitVAE(
            posterior,
            prior,
            likelihood,
            estimator,
            beta=m.beta,
            prior_critic=prior_critic,
            objective=m.objective,
        )
    except IncompatibleComponentsError as err:
        raise ConfigError(str(err)) from None
