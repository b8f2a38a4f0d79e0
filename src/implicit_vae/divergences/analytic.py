"""Estimators that need both densities: the closed-form KL and its Monte Carlo counterpart."""

from __future__ import annotations

import torch

from ..posteriors import FullCovarianceGaussianPosterior, GaussianPosterior, PosteriorSample
from ..priors import Prior, StandardNormal
from .base import DivergenceEstimator


class AnalyticKL(DivergenceEstimator):
    """Closed-form KL(q(z|x) ‖ p(z)) for a Gaussian q and a standard normal p, from the moments
    carried by the sample: ½ Σ (μ² + σ² − 1 − log σ²) for a diagonal q (Kingma & Welling 2014,
    App. B), ½ (‖μ‖² + tr Σ − D − log det Σ) for a full covariance Σ.

    Exact, so the ELBO it gives is a true lower bound. Its per-sample log ratio (for the
    importance-weighted objective) is log q(z|x) − log p(z) from the two densities.
    """

    needs_posterior_density = True
    needs_posterior_moments = True
    needs_prior_density = True
    has_log_ratio = True

    @classmethod
    def requirements_error(cls, posterior, prior):
        reason = super().requirements_error(posterior, prior)
        if reason is None and not (
            isinstance(posterior, (GaussianPosterior, FullCovarianceGaussianPosterior))
            and isinstance(prior, StandardNormal)
        ):
            reason = (
                "AnalyticKL has a closed form only for GaussianPosterior or "
                "FullCovarianceGaussianPosterior against StandardNormal, "
                f"not {type(posterior).__name__} against {type(prior).__name__}"
            )
        return reason

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        mean, var = q.mean, q.var  # (B, D)
        if q.log_det_cov is None:
            normal = torch.distributions.Normal
            q_dist = torch.distributions.Independent(normal(mean, var.sqrt()), 1)
            p_dist = torch.distributions.Independent(normal(torch.zeros_like(mean), 1.0), 1)
            return torch.distributions.kl_divergence(q_dist, p_dist)
        # Full covariance: log det Σ comes exactly from the posterior's Cholesky factor, where
        # re-factoring an ill-conditioned Σ (as kl_divergence on a MultivariateNormal would) loses it.
        log_det = q.log_det_cov
        return 0.5 * (mean.pow(2).sum(-1) + var.sum(-1) - mean.shape[-1] - log_det)

    def _log_ratio(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        return q.log_prob - prior.log_prob(q.z)


class MonteCarloKL(DivergenceEstimator):
    """E_q[log q(z|x) − log p(z)] averaged over the n samples: unbiased, needs both densities."""

    needs_posterior_density = True
    needs_prior_density = True
    has_log_ratio = True

    def _log_ratio(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        return q.log_prob - prior.log_prob(q.z)
