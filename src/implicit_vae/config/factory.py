"""Build an :class:`ImplicitVAE` from a validated :class:`Config`, choosing components by name."""

from __future__ import annotations

import inspect

from ..divergences import ESTIMATORS
from ..likelihoods import LIKELIHOODS
from ..model import ImplicitVAE, IncompatibleComponentsError
from ..posteriors import POSTERIORS
from ..priors import PRIORS, Prior, SamplePrior, StandardNormal
from .schema import Config, ConfigError, ModelConfig


def _options(cls: type, candidates: dict) -> dict:
    """The subset of ``candidates`` that ``cls.__init__`` accepts."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in candidates.items() if k in accepted}


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
    options = {
        "components": m.prior_components,
        "learnable": m.prior_learnable,
        "noise_dim": m.prior_noise_dim,
        "hidden": tuple(m.prior_hidden),
        "act": m.activation,
    }
    return cls(m.latent_dim, **_options(cls, options))


def build_model(cfg: Config, data_dim: int) -> ImplicitVAE:
    """Assemble posterior, prior, likelihood and estimator for data of ``data_dim`` dimensions.

    Raises:
        ConfigError: when the chosen estimator cannot work with the chosen posterior and prior; the
            message lists the estimators that can.
    """
    m, d = cfg.model, cfg.divergence
    hidden = tuple(m.hidden)
    posterior_cls = POSTERIORS[m.posterior]
    posterior = posterior_cls(
        data_dim,
        m.latent_dim,
        **_options(
            posterior_cls,
            {
                "hidden": hidden,
                "act": m.activation,
                "noise_dim": m.noise_dim,
                "n_basis": m.n_basis,
                "inject_hidden": m.inject_noise,
            },
        ),
    )
    prior = _build_prior(m)
    likelihood = LIKELIHOODS[m.likelihood](
        m.latent_dim, data_dim, hidden=hidden[::-1], act=m.activation
    )
    estimator_cls = ESTIMATORS[d.name]
    reason = estimator_cls.requirements_error(posterior, prior)
    if reason is not None:
        from ..model import compatible_estimators

        raise ConfigError(
            f"divergence.name: {d.name!r} cannot be used here: {reason}; choose one of "
            f"{', '.join(compatible_estimators(posterior, prior))}"
        )
    # The ½‖z‖² skip encodes −log N(z; 0, I), the known part of the optimal T when q is compared with
    # a standard normal prior (AVB, AAE). Under adaptive contrast the normalised q is already close
    # to N(0, I), so the optimal T is near 0 and the skip would only give the critic a term to undo.
    skip = d.gaussian_skip and d.name in ("avb", "aae") and isinstance(prior, StandardNormal)
    options = _options(
        estimator_cls,
        {
            "width": d.critic_width,
            "blocks": d.critic_blocks,
            "gaussian_skip": skip,
            "waymarks": d.waymarks,
            "contrast": d.contrast,
            "contrast_scale": d.contrast_scale,
        },
    )
    if d.contrast != "diagonal" and "contrast" not in options:
        raise ConfigError(
            f"divergence.contrast: {d.contrast!r} applies to avb_ac only, but divergence.name is "
            f"{d.name!r}; leave it at 'diagonal'"
        )
    if d.contrast_scale != 1.0 and "contrast_scale" not in options:
        raise ConfigError(
            f"divergence.contrast_scale: {d.contrast_scale} applies to avb_ac only, but "
            f"divergence.name is {d.name!r}; leave it at 1.0"
        )
    if d.waymarks > 1 and "waymarks" not in options:
        takers = [n for n, c in ESTIMATORS.items() if "waymarks" in _options(c, {"waymarks": 1})]
        raise ConfigError(
            f"divergence.waymarks: {d.waymarks} needs a logistic-critic estimator "
            f"({', '.join(takers)}), but divergence.name is {d.name!r}; use waymarks=1"
        )
    estimator = estimator_cls(data_dim, m.latent_dim, **options)
    needed = getattr(estimator, "min_samples_per_x", 1)
    if cfg.train.n_samples < needed:
        raise ConfigError(
            f"train.n_samples: {cfg.train.n_samples} is too few for divergence.name={d.name!r}, "
            f"which compares samples of each q(z|x); expected >= {needed}"
        )
    try:
        return ImplicitVAE(posterior, prior, likelihood, estimator, beta=m.beta)
    except IncompatibleComponentsError as err:
        raise ConfigError(str(err)) from None
