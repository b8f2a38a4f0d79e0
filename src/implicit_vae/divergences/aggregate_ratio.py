"""The aggregate critic D(z) ≈ log q(z) − log p_ψ(z) that trains a learnable implicit prior.

The KL term's gradient w.r.t. the prior's parameters ψ depends on the posterior only through the
aggregate q(z) = E_x q(z|x):

    ∇_ψ E_x KL(q(z|x) ‖ p_ψ) = −E_x E_{q(z|x)}[∇_ψ log p_ψ(z)] = −E_{q(z)}[∇_ψ log p_ψ(z)]
                             = ∇_ψ KL(q(z) ‖ p_ψ),                                        (1)

since E_x KL(q(z|x) ‖ p_ψ) = I(x; z) + KL(q(z) ‖ p_ψ) and the mutual information I(x; z) does not
depend on ψ. By the density-ratio trick (:mod:`.prior_gradient`, eq. 2) with r = q(z)/p_ψ(z) held
fixed, (1) is −∇_ψ E_{z ~ p_ψ}[r(z)], and :func:`~.prior_gradient.ratio_surrogate` estimates it
self-normalised over prior samples. Its weights r/mean(r) have an effective sample size of about
m·e^{−KL} for the KL between the two distributions whose ratio is used:

- through the estimator's own x-conditional critic T(x, z) ≈ log q(z|x)/p_ψ(z) the KL is the
  per-example one, which is large in a useful VAE (MNIST models sit near 17 nats): with the *exact*
  T, B = 128, D = 8, the gradient's median cosine to the closed form is 0.39 at a per-example KL
  of 3 nats and 0.0–0.1 at 10 and 16 (``benchmarks/prior_gradient.py``); the pathwise gradient of
  the NWJ/DV bounds degrades the same way;
- through the aggregate ratio the KL is KL(q(z) ‖ p_ψ), which the prior is trained to make small:
  with a *trained* D the cosine is 0.98 for the same posteriors, at every per-example KL.

:class:`AggregateRatioCritic` is that D: a residual MLP on z trained by logistic regression between
the posterior samples pooled over the batch (label 1) and prior samples (label 0), whose optimal
logit is log q(z) − log p_ψ(z). :class:`~implicit_vae.model.ImplicitVAE` builds one when the prior
is implicit and learnable and the estimator estimates a KL (:func:`needs_aggregate_critic`): its
parameters are critic parameters, its loss is part of the model's critic loss, and the estimator
sees the prior through :class:`DetachedPrior`, so that the whole of ψ's gradient comes from D.

References:
    > M. D. Hoffman, M. J. Johnson. ELBO surgery: yet another way to carve up the variational
    > evidence lower bound, NeurIPS Workshop on Approximate Bayesian Inference 2016.
    > A. Makhzani et al. Adversarial Autoencoders, ICLR Workshop 2016.
    > M. Sugiyama, T. Suzuki, T. Kanamori. Density Ratio Estimation in Machine Learning, CUP 2012.
"""

from __future__ import annotations

import torch

from ..priors import Prior
from .base import CriticLoss, DivergenceEstimator
from .critics import LatentCritic
from .prior_gradient import frozen, ratio_surrogate
from .telescoping import logistic_loss


def needs_aggregate_critic(prior: Prior, estimator: DivergenceEstimator) -> bool:
    """True when the prior is implicit and learnable and the estimator estimates a KL: its gradient
    then comes from an :class:`AggregateRatioCritic`. A prior with a density gets the exact
    gradient from the estimator; an estimator of another divergence (``is_kl`` False) trains the
    prior by that divergence's own pathwise gradient."""
    return prior.is_learnable and not prior.has_density and estimator.is_kl


class DetachedPrior(Prior):
    """``prior`` with its samples cut from its parameters: the same samples (the same random
    numbers), no pathwise gradient to ψ, and ``is_learnable`` False, so an estimator adds no
    prior-gradient term of its own. Used by the model for the estimator when ψ learns through an
    :class:`AggregateRatioCritic`; for implicit priors only (it has no density)."""

    def __init__(self, prior: Prior):
        super().__init__(prior.latent_dim)
        self.base = prior

    @property
    def is_learnable(self) -> bool:
        return False

    def _sample(self, n: int) -> torch.Tensor:
        return self.base.sample(n).detach()


class AggregateRatioCritic(torch.nn.Module):
    """D(z) ≈ log q(z) − log p_ψ(z) for the aggregate posterior q(z) = E_x q(z|x), and the
    zero-valued term that sends its KL gradient (1) to a learnable implicit prior.

    No ½‖z‖² skip: p_ψ is no standard normal. The aggregate KL is small once the prior fits the
    aggregate, so one logistic critic suffices (no telescoping).

    The surrogate's prior samples are cheap (the generator and D, no x), so it draws at least
    ``prior_samples`` of them: with the exact D at an aggregate KL of 0.9 nats (D = 8), 128 prior
    samples give a median cosine to the closed form of 0.89, 512 give 0.96 and 2048 give 0.99;
    the self-normalised estimate's own Monte Carlo noise, not the critic, is then the limit.

    Args:
        latent_dim: D.
        width, blocks: size of the residual MLP.
        prior_samples: the least number of prior samples for the surrogate (it uses
            max(prior_samples, n·B)).
    Shapes: ``forward`` z (N, D) -> (N,).
    """

    def __init__(
        self, latent_dim: int, width: int = 128, blocks: int = 2, prior_samples: int = 1024
    ):
        super().__init__()
        if prior_samples < 1:
            raise ValueError(f"prior_samples must be >= 1, got {prior_samples}")
        self.critic = LatentCritic(latent_dim, width, blocks, gaussian_skip=False)
        self.prior_samples = prior_samples

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.critic(None, z)

    def loss(self, z_q: torch.Tensor, prior: Prior) -> CriticLoss:
        """Logistic loss of the n·B posterior samples ``z_q`` (n, B, D), pooled (label 1), against
        as many prior samples (label 0); no gradient reaches the posterior or the prior."""
        zq = z_q.detach().reshape(-1, z_q.shape[-1])
        zp = prior.sample(zq.shape[0]).detach().to(zq)
        return logistic_loss(self(zq), self(zp))

    def surrogate(self, z_q: torch.Tensor, prior: Prior) -> torch.Tensor:
        """Zero-valued per-example term, shape (B,), whose batch mean has gradient
        −∇_ψ log mean_j e^{D(h_ψ(η_j))} (D frozen) over m = max(prior_samples, n·B) fresh
        reparameterised prior samples: the self-normalised estimate of (1). ``z_q`` (n, B, D)
        gives only the shape and device. Zero (and no samples drawn) outside grad mode."""
        b = z_q.shape[1]
        if not torch.is_grad_enabled():
            return z_q.new_zeros(b)
        m = max(self.prior_samples, z_q.shape[0] * b)
        t_p = frozen(self)(prior.sample(m).to(z_q))  # (m,)
        # every example gets the same zero-valued term, whose batch mean carries the gradient
        return ratio_surrogate(t_p.unsqueeze(1)).expand(b)
