"""Build an :class:`ImplicitVAE` from a validated :class:`Config`, choosing components by name."""

from __future__ import annotations

import inspect

from .config import Config, ConfigError
from .divergences import ESTIMATORS
from .likelihoods import LIKELIHOODS
from .model import ImplicitVAE, IncompatibleComponentsError
from .posteriors import POSTERIORS
from .priors import PRIORS, StandardNormal


def _options(cls: type, candidates: dict) -> dict:
    """The subset of ``candidates`` that ``cls.__init__`` accepts."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in candidates.items() if k in accepted}


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
    prior = PRIORS[m.prior](m.latent_dim)
    likelihood = LIKELIHOODS[m.likelihood](
        m.latent_dim, data_dim, hidden=hidden[::-1], act=m.activation
    )
    estimator_cls = ESTIMATORS[d.name]
    reason = estimator_cls.requirements_error(posterior, prior)
    if reason is not None:
        from .model import compatible_estimators

        raise ConfigError(
            f"divergence.name: {d.name!r} cannot be used here: {reason}; choose one of "
            f"{', '.join(compatible_estimators(posterior, prior))}"
        )
    # The ½‖z‖² skip encodes −log N(z; 0, I): right for AVB only when p(z) is that normal.
    skip = d.gaussian_skip and (d.name != "avb" or isinstance(prior, StandardNormal))
    estimator = estimator_cls(
        data_dim,
        m.latent_dim,
        **_options(
            estimator_cls,
            {"width": d.critic_width, "blocks": d.critic_blocks, "gaussian_skip": skip},
        ),
    )
    try:
        return ImplicitVAE(posterior, prior, likelihood, estimator, beta=m.beta)
    except IncompatibleComponentsError as err:
        raise ConfigError(str(err)) from None
