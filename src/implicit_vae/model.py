"""ImplicitVAE: posterior + prior + likelihood + divergence estimator -> per-example loss terms.

Plain PyTorch: usable in any training loop (see the README), and wrapped for Lightning in ``train.py``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .divergences.aggregate_ratio import (
    AggregateRatioCritic,
    DetachedPrior,
    needs_aggregate_critic,
)
from .divergences.base import CriticLoss, DivergenceEstimator
from .likelihoods import Likelihood
from .posteriors import Posterior, PosteriorSample
from .priors import Prior


class IncompatibleComponentsError(ValueError):
    """The chosen estimator cannot work with the chosen posterior or prior."""


@dataclass
class LossTerms:
    """Per-example terms of the (estimated) negative ELBO.

    Attributes:
        reconstruction: E_q[log p(x|z)], shape (B,).
        kl: the estimator's KL(q(z|x) ‖ p(z)) estimate (or its named divergence), shape (B,).
        objective: the per-example objective to maximise, shape (B,): reconstruction − β·kl, or
            the importance-weighted bound under ``objective="iw"``.
        loss: −objective averaged over the batch, a scalar to minimise.
        q: the posterior sample the terms were computed from.
    """

    reconstruction: torch.Tensor
    kl: torch.Tensor
    objective: torch.Tensor
    loss: torch.Tensor
    q: PosteriorSample

    @property
    def elbo(self) -> torch.Tensor:
        """Per-example reconstruction − KL estimate; a bound only if the KL is exact."""
        return self.reconstruction - self.kl


class ImplicitVAE(nn.Module):
    """A VAE whose KL term comes from a :class:`DivergenceEstimator`.

    Args:
        posterior: q(z|x), explicit or implicit.
        prior: p(z), explicit or implicit.
        likelihood: p(x|z) with its decoder.
        estimator: estimates KL(q(z|x) ‖ p(z)) from samples.
        beta: weight of the KL term (1 gives the ELBO).
        prior_critic: the aggregate critic D(z) that trains a learnable implicit prior under a KL
            estimator (see :mod:`.divergences.aggregate_ratio`); None builds the default
            :class:`AggregateRatioCritic` where one is needed. It is a critic: its parameters are
            in :meth:`critic_parameters` and its loss in :meth:`critic_loss`.
        objective: ``"elbo"`` (reconstruction − β·KL, averaged over the n samples), or ``"iw"``:
            the importance-weighted bound log (1/n) Σ_s p(x|z_s) exp(−r(z_s)) over the n samples,
            r the estimator's per-sample log q(z|x) − log p(z) (IWAE, Burda et al. 2016; for a
            semi-implicit q with SIVI's mixture, IWHVI, Sobolev & Vetrov 2019). It needs an
            estimator with ``has_log_ratio``, β = 1 and a prior without an aggregate critic; with
            n = 1 it is the ELBO.

    A learnable implicit prior p_ψ = h_ψ(η) under a KL estimator learns through ``prior_critic``
    alone: ∇_ψ E_x KL(q(z|x) ‖ p_ψ) = ∇_ψ KL(q(z) ‖ p_ψ), and the aggregate KL is small where the
    per-example one is not, so the self-normalised ratio gradient stays accurate. The estimator
    then sees the prior's samples cut from ψ (no term or pathwise gradient of its own); its value,
    the reported KL, is unchanged.

    Raises:
        IncompatibleComponentsError: when the estimator needs a density or moments the posterior or
            prior lacks, naming the estimators that can work.
    """

    def __init__(
        self,
        posterior: Posterior,
        prior: Prior,
        likelihood: Likelihood,
        estimator: DivergenceEstimator,
        beta: float = 1.0,
        *,
        prior_critic: nn.Module | None = None,
        objective: str = "elbo",
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        dims = {posterior.latent_dim, prior.latent_dim, likelihood.latent_dim, estimator.latent_dim}
        if len(dims) != 1:
            raise IncompatibleComponentsError(f"latent dimensions disagree: {sorted(dims)}")
        shapes = {posterior.event_shape, likelihood.event_shape, estimator.event_shape}
        if len({math.prod(s) for s in shapes}) != 1:
            raise IncompatibleComponentsError(
                "event shapes disagree: posterior reads "
                f"{posterior.event_shape}, likelihood models {likelihood.event_shape}, estimator "
                f"reads {estimator.event_shape}"
            )
        reason = estimator.requirements_error(posterior, prior)
        if reason is not None:
            raise IncompatibleComponentsError(
                f"{reason}; estimators that work here: {', '.join(compatible_estimators(posterior, prior))}"
            )
        try:  # prior-dependent settings (the critics' ½‖z‖² skip) are fixed, and checked, now
            estimator.use_prior(prior)
        except ValueError as err:
            raise IncompatibleComponentsError(str(err)) from None
        self.posterior, self.prior, self.likelihood, self.estimator = (
            posterior,
            prior,
            likelihood,
            estimator,
        )
        self.beta = beta
        if prior_critic is None and needs_aggregate_critic(prior, estimator):
            prior_critic = AggregateRatioCritic(prior.latent_dim)
        self.prior_critic = prior_critic
        if objective == "iw":
            reason = _iw_error(estimator, beta, prior_critic)
            if reason is not None:
                raise IncompatibleComponentsError(reason)
        self.objective = objective

    @property
    def latent_dim(self) -> int:
        return self.posterior.latent_dim

    def forward(self, x: torch.Tensor, n_samples: int = 1) -> LossTerms:
        """Loss terms for a batch ``x`` of shape (B, *event_shape) or (B, data_dim), using
        ``n_samples`` z per example."""
        q = self.posterior.sample(x, n_samples, moments=self.estimator.needs_posterior_moments)
        if self.objective == "iw":
            log_px_z = self.likelihood.log_prob(x, q.z)  # (n, B)
            log_ratio = self.estimator.log_ratio(x, q, self.prior)  # (n, B)
            bound = torch.logsumexp(log_px_z - log_ratio, 0) - math.log(q.z.shape[0])
            return LossTerms(log_px_z.mean(0), log_ratio.mean(0), bound, -bound.mean(), q)
        reconstruction = self.likelihood.log_prob(x, q.z).mean(0)  # (B,)
        if self.prior_critic is None:
            kl = self.estimator.estimate(x, q, self.prior)  # (B,)
        else:  # ψ learns through the aggregate critic only; the added term is zero-valued
            kl = self.estimator.estimate(x, q, DetachedPrior(self.prior))
            kl = kl + self.prior_critic.surrogate(q.z, self.prior)
        objective = reconstruction - self.beta * kl
        return LossTerms(reconstruction, kl, objective, -objective.mean(), q)

    def critic_loss(self, x: torch.Tensor, n_samples: int = 1) -> CriticLoss:
        """The estimator's own loss on fresh posterior samples, which carry no gradient to the model,
        plus the aggregate critic's logistic loss where there is one (the accuracy stays the
        estimator's)."""
        with torch.no_grad():
            q = self.posterior.sample(x, n_samples, self.estimator.needs_posterior_moments)
        out = self.estimator.critic_loss(x, q, self.prior)
        if self.prior_critic is None:
            return out
        return CriticLoss(out.loss + self.prior_critic.loss(q.z, self.prior).loss, out.accuracy)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`torch.nn.Module.load_state_dict`; a checkpoint written before models had an
        aggregate prior critic (no ``prior_critic.*`` keys) loads too, keeping this model's own
        (untrained) critic, which evaluation does not read and training retrains."""
        if self.prior_critic is not None and not any(k.startswith("prior_critic.") for k in state_dict):
            metadata = getattr(state_dict, "_metadata", None)
            state_dict = OrderedDict(state_dict)
            state_dict.update(
                (f"prior_critic.{k}", v) for k, v in self.prior_critic.state_dict().items()
            )
            if metadata is not None:
                state_dict._metadata = metadata
        return super().load_state_dict(state_dict, strict, assign)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) for x (B, data_dim) and z (n, B, D); returns (n, B). Used by AIS."""
        return self.likelihood.log_prob(x, z)

    def model_parameters(self) -> list[nn.Parameter]:
        """Parameters of the posterior, decoder and (learnable) prior: what the ELBO trains."""
        critic = {id(p) for p in self.critic_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in critic]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters of the estimator's critic(s) and of the aggregate prior critic: what the
        critic loss trains."""
        critics = [self.estimator]
        if self.prior_critic is not None:
            critics.append(self.prior_critic)
        return [p for m in critics for p in m.parameters() if p.requires_grad]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z] for one z ~ q(z|x) per example; shape (B, data_dim)."""
        return self.likelihood.mean(self.posterior.sample(x, 1, moments=False).z[0])

    @torch.no_grad()
    def generate(self, n: int) -> torch.Tensor:
        """E[x|z] for ``n`` prior samples; shape (n, data_dim)."""
        return self.likelihood.mean(self.prior.sample(n))


OBJECTIVES = ("elbo", "iw")


def _iw_error(estimator: DivergenceEstimator, beta: float, prior_critic) -> str | None:
    """Why the importance-weighted objective cannot be used with these parts, or None."""
    if not estimator.has_log_ratio:
        return (
            f"the importance-weighted objective needs a per-sample log q(z|x) - log p(z), which "
            f"{type(estimator).__name__} does not give; estimators that do: "
            f"{', '.join(log_ratio_estimators())}"
        )
    if beta != 1:
        return f"the importance-weighted objective is a bound on log p(x) only with beta 1, got {beta}"
    if prior_critic is not None:
        return "the importance-weighted objective cannot train a prior through an aggregate critic"
    return None


def log_ratio_estimators() -> list[str]:
    """Names in ESTIMATORS with a per-sample log q/p: those the importance-weighted objective takes."""
    from .divergences import ESTIMATORS

    return [name for name, cls in ESTIMATORS.items() if cls.has_log_ratio]


def compatible_estimators(posterior: Posterior, prior: Prior) -> list[str]:
    """Names in ESTIMATORS whose requirements this posterior and prior meet."""
    from .divergences import ESTIMATORS

    return [
        name for name, cls in ESTIMATORS.items() if cls.requirements_error(posterior, prior) is None
    ]
