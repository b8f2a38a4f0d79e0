"""Adversarial autoencoder: a critic D(z) tells the aggregated posterior q(z) from the prior p(z).

References:
    > A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey. Adversarial Autoencoders,
    > ICLR Workshop 2016 (arXiv:1511.05644).
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
    LatentCritic,
    check_gaussian_skip,
)
from .prior_gradient import frozen, prior_surrogate
from .telescoping import TelescopingCritic, build_logistic_critic, check_waymarks, classifier_loss


class AdversarialAutoencoder(GaussianSkipEstimator, DivergenceEstimator):
    """AAE: a logistic critic D(z) is trained to tell samples of the *aggregated* posterior
    q(z) = E_x q(z|x) (all n·B samples of the batch, x ignored; label 1) from prior samples
    (label 0).
    At the optimum its logit is log q(z) − log p(z), so the per-example value E_{q(z|x)}[D(z)] has
    batch mean ≈ KL(q(z) ‖ p(z)), and its gradient pushes each z where the aggregate is in excess.

    This matches the aggregate, **not** each q(z|x): since E_x KL(q(z|x) ‖ p(z)) = I(x; z) +
    KL(q(z) ‖ p(z)), the value under-estimates the ELBO's KL term by the mutual information I(x; z)
    (``is_kl`` is True because what it estimates is a KL — of the aggregate). With a single q
    (no x dependence, as in :func:`~implicit_vae.divergences.estimate_divergence`) the two coincide.
    Makhzani et al. train the generator with the non-saturating loss −log σ(D(z)); the logit used
    here has the same fixed point and is also a KL estimate.

    A learnable prior is trained by the ELBO's gradient −E_q[∇_ψ log p_ψ] through a zero-valued
    surrogate (exact where it has a density, else via the frozen D at prior samples; the aggregate
    ratio is the right one here, see :mod:`.prior_gradient`), not as a GAN generator against D.
    Inside :class:`~implicit_vae.model.ImplicitVAE` an implicit prior learns through the model's
    own aggregate critic (:mod:`.aggregate_ratio`, the same ratio, trained without the ½‖z‖² skip
    and read at more prior samples), and this estimator's route is switched off.

    Args:
        event_shape: the shape of one x (unused: D sees z only).
        latent_dim: dimension D of z.
        width, blocks: size of the residual critic (default :data:`~.critics.CRITIC_WIDTH`,
            :data:`~.critics.CRITIC_BLOCKS`: 256, 3).
        gaussian_skip: add ½‖z‖² to D (= −log N(z; 0, I) + const). None (auto, the default): on
            exactly when the prior is N(0, I); True with another prior is a ValueError; False:
            off (:func:`~.critics.resolve_gaussian_skip`, the one rule).
        waymarks: K > 1 trains K critics D_k(z) between waymarks mixed from (z ~ p, z ~ q(z))
            pairs and uses D = Σ_k D_k (telescoping density-ratio estimation, see
            :mod:`.telescoping`), which closes the single critic's gap at large KL; the fixed
            ½‖z‖² skip gives way to each waymark pair's moment-matched Gaussian log-ratio.

    References:
        > A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey. Adversarial Autoencoders,
        > ICLR Workshop 2016 (arXiv:1511.05644).
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
    ):
        super().__init__(event_shape, latent_dim)
        self.gaussian_skip = check_gaussian_skip(gaussian_skip, check_waymarks(waymarks))
        self.critic = build_logistic_critic(
            lambda skip: LatentCritic(latent_dim, width, blocks, skip),
            waymarks,
            bool(gaussian_skip),  # auto: off until use_prior resolves it for the prior
            latent_dim,
        )

    def _skip_critics(self) -> list[nn.Module]:
        return [] if isinstance(self.critic, TelescopingCritic) else [self.critic]

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        n, b, d = q.z.shape
        value = self.critic(None, q.z.reshape(n * b, d)).view(n, b).mean(0)
        return value + prior_surrogate(
            prior, q.z, lambda zp: frozen(self.critic)(None, zp.reshape(n * b, d)).view(n, b)
        )

    def _critic_loss(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> CriticLoss:
        zq = q.z.reshape(-1, q.z.shape[-1])
        zp = prior.sample(zq.shape[0]).detach().to(zq)
        return classifier_loss(self.critic, None, zq, zp)
