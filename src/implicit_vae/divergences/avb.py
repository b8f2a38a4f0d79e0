"""Adversarial Variational Bayes: a critic T(x, z) learns log q(z|x) − log p(z).

References:
    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes: Unifying Variational
    > Autoencoders and Generative Adversarial Networks, ICML 2017 (arXiv:1701.04722).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..posteriors import PosteriorSample
from ..priors import Prior
from .base import CriticLoss, DivergenceEstimator
from .critics import (
    CRITIC_BLOCKS,
    CRITIC_WIDTH,
    GaussianSkipEstimator,
    check_gaussian_skip,
    critic_maker,
    pair_with_x,
)
from .prior_gradient import frozen, prior_surrogate
from .telescoping import TelescopingCritic, build_logistic_critic, check_waymarks, classifier_loss


class AVB(GaussianSkipEstimator, DivergenceEstimator):
    """KL(q(z|x) ‖ p(z)) ≈ E_q[T(x, z)], with T trained by logistic regression between (x, z ~ q(z|x))
    (label 1) and (x, z ~ p(z)) (label 0). At the optimum T* = log q(z|x) − log p(z), and because
    E_q[∇_T] vanishes there, the gradient w.r.t. the sampler flows through z alone (AVB Prop. 2).

    ``gaussian_skip`` adds ½‖z‖² (= −log N(z; 0, I) + const) to T, the known part of log q/p for a
    standard normal prior. None (auto, the default) turns it on exactly when the prior is N(0, I);
    True with another prior is a ValueError (:func:`~.critics.resolve_gaussian_skip`, the one rule).
    ``width`` and ``blocks`` default to :data:`~.critics.CRITIC_WIDTH` / :data:`~.critics.
    CRITIC_BLOCKS` (256, 3), as do the config's ``divergence.critic_width`` / ``critic_blocks``.

    ``waymarks`` = K > 1 replaces the single classifier by K classifiers T_k(x, z) between
    waymarks mixed from (z ~ p, z ~ q(z|x)) pairs, T = Σ_k T_k (telescoping density-ratio
    estimation, :mod:`.telescoping`): it crosses the "density chasm" that makes one classifier
    under-estimate a KL of tens of nats. The fixed ½‖z‖² skip then gives way to each waymark
    pair's moment-matched Gaussian log-ratio.

    A learnable prior gets its gradient −E_q[∇_ψ log p_ψ] from a zero-valued surrogate: exact where
    it has a density. An implicit one, inside :class:`~implicit_vae.model.ImplicitVAE`, learns
    through the model's aggregate critic D(z) instead (:mod:`.aggregate_ratio`); on its own the
    estimator uses the frozen T at prior samples, −∇_ψ E_{p_ψ}[e^{T}] self-normalised, which is
    accurate only at a small per-example KL (see :mod:`.prior_gradient`).

    ``x_features`` is the critic's x-branch (see :class:`~.critics.ConditionalCritic`): the
    flattened x by default, a convolutional feature network for images.
    """

    gaussian_skip_auto = True  # the contrast is the prior: the skip is −log p(z) for p = N(0, I)

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        width: int = CRITIC_WIDTH,
        blocks: int = CRITIC_BLOCKS,
        gaussian_skip: bool | None = None,
        waymarks: int = 1,
        *,
        x_features: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        self.gaussian_skip = check_gaussian_skip(gaussian_skip, check_waymarks(waymarks))
        self.critic = build_logistic_critic(
            critic_maker(self.event_shape, latent_dim, width, blocks, x_features),
            waymarks,
            bool(gaussian_skip),  # auto: off until use_prior resolves it for the prior
            latent_dim,
        )

    def _skip_critics(self) -> list[nn.Module]:
        return [] if isinstance(self.critic, TelescopingCritic) else [self.critic]

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        xs, zs = pair_with_x(x, q.z)
        value = self.critic(xs, zs).view(q.z.shape[:2]).mean(0)
        return value + prior_surrogate(prior, q.z, lambda zp: self._frozen_t(x, zp))

    def _frozen_t(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """T(x_b, z[j, b]) with the critic's parameters detached; z (m, B, D) -> (m, B)."""
        return frozen(self.critic)(*pair_with_x(x, z)).view(z.shape[:2])

    def _critic_loss(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> CriticLoss:
        xs, zq = pair_with_x(x, q.z)
        zp = prior.sample(zq.shape[0]).detach().to(zq)
        return classifier_loss(self.critic, xs, zq, zp)
