"""The divergence-estimator interface: how KL(q(z|x) ‖ p(z)) is estimated when a density is missing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..networks.shapes import as_event_batch, event_shape_of
from ..posteriors import Posterior, PosteriorSample
from ..priors import Prior


class CriticLoss(NamedTuple):
    """The estimator's own training loss and the critic's classification accuracy (nan if none).

    The accuracy is a 0-dim tensor where a critic computes it, so that reading it costs no host
    synchronisation of its own: the training loop reads it together with the loss."""

    loss: torch.Tensor
    accuracy: torch.Tensor | float


class DivergenceEstimator(nn.Module):
    """Estimates KL(q(z|x) ‖ p(z)) per example — or, where ``is_kl`` is False, the divergence named by
    ``divergence_name`` — from reparameterised samples of q.

    Subclass requirements:
      - ``_estimate(x, q, prior) -> (B,)``: the per-example estimate, differentiable w.r.t. ``q.z`` so
        that its gradient reaches the posterior's sampler. For a critic-based estimator it is an
        *estimate* (not a bound) that is only as good as the critic.
      - ``_critic_loss(x, q, prior) -> CriticLoss``: the loss that trains the estimator's own parameters,
        given samples cut from the posterior's graph; estimators without parameters keep the default
        (zero loss).
      - class attributes ``needs_posterior_density``, ``needs_posterior_moments``,
        ``needs_prior_density`` declare what the estimator reads; :class:`~implicit_vae.model.ImplicitVAE`
        checks them when a model is built.
      - ``is_kl`` is False for estimators of another divergence (MMD, energy distance), whose
        ``divergence_name`` is then reported in every output.
      - ``has_log_ratio`` is True where the estimate is the mean over the n samples of a per-sample
        r(z) ≈ log q(z|x) − log p(z), ``_log_ratio(x, q, prior) -> (n, B)``, with
        E[exp(−r(z)) | z] = p(z)/q(z|x): exact densities, or SIVI's mixture. The
        importance-weighted objective (``ImplicitVAE(objective="iw")``) needs it.
    Shapes: ``x`` (B, *event_shape) (flat rows (B, data_dim) are accepted too); ``q.z`` (n, B, D).
    """

    needs_posterior_density: bool = False
    needs_posterior_moments: bool = False
    needs_prior_density: bool = False
    has_log_ratio: bool = False
    is_kl: bool = True
    divergence_name: str = "kl"

    def __init__(self, event_shape: int | Sequence[int], latent_dim: int):
        super().__init__()
        self.event_shape = event_shape_of(event_shape)
        self.data_dim, self.latent_dim = math.prod(self.event_shape), latent_dim

    @property
    def has_critic(self) -> bool:
        """True when the estimator has parameters of its own to train."""
        return any(p.requires_grad for p in self.parameters())

    def estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        """Per-example divergence estimate, shape (B,)."""
        x = self._check(x, q)
        self.use_prior(prior)
        return self._estimate(x, q, prior)

    def log_ratio(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        """Per-sample log q(z|x) − log p(z) (or its estimate), shape (n, B), for estimators with
        ``has_log_ratio``; their :meth:`estimate` is its mean over the n samples."""
        if not self.has_log_ratio:
            raise NotImplementedError(
                f"{type(self).__name__} gives no per-sample log q(z|x) - log p(z)"
            )
        x = self._check(x, q)
        self.use_prior(prior)
        return self._log_ratio(x, q, prior)

    def critic_loss(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> CriticLoss:
        """The estimator's training loss on samples cut from the posterior (``q`` is detached here)."""
        x = self._check(x, q)
        self.use_prior(prior)
        return self._critic_loss(x, q.detach(), prior)

    def use_prior(self, prior: Prior) -> None:
        """Fit the settings that depend on the prior (the critics' ½‖z‖² skip) to ``prior``; a
        ValueError where a setting cannot work with it. Called by :class:`~implicit_vae.model.
        ImplicitVAE` when it is built and by :meth:`estimate` / :meth:`critic_loss` on every call;
        estimators without such settings do nothing."""

    @classmethod
    def requirements_error(cls, posterior: Posterior, prior: Prior) -> str | None:
        """A sentence saying why this estimator cannot work with ``posterior`` and ``prior``, or None.

        A class method, so compatibility is known before any critic is built."""
        name = cls.__name__
        if cls.needs_posterior_density and not posterior.has_density:
            return f"{name} needs log q(z|x), but {type(posterior).__name__} has no density"
        if cls.needs_posterior_moments and not posterior.has_moments:
            return (
                f"{name} needs the moments of q(z|x), which {type(posterior).__name__} cannot give"
            )
        if cls.needs_prior_density and not prior.has_density:
            return f"{name} needs log p(z), but {type(prior).__name__} has no density"
        return None

    def _check(self, x: torch.Tensor, q: PosteriorSample) -> torch.Tensor:
        """``x`` as (B, *event_shape), after checking it and ``q.z`` (n, B, D)."""
        x = as_event_batch(x, self.event_shape)
        if q.z.dim() != 3 or q.z.shape[1:] != (x.shape[0], self.latent_dim):
            raise ValueError(
                f"z must have shape (n, {x.shape[0]}, {self.latent_dim}), got {tuple(q.z.shape)}"
            )
        return x

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        if self.has_log_ratio:
            return self._log_ratio(x, q, prior).mean(0)
        raise NotImplementedError

    def _log_ratio(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        raise NotImplementedError

    def _critic_loss(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> CriticLoss:
        return CriticLoss(q.z.new_zeros(()), float("nan"))
