"""f-divergence variational bounds with a critic: KL (NWJ, Donsker–Varadhan), reverse KL, JS/GAN.

Each estimator maximises a lower bound  D(q ‖ p) ≥ E_q[g(T)] − E_p[h(T)]  over a critic T; the
critic's loss is the negated bound and the reported value is the bound at the current critic,
which is an *estimate* only as good as the critic. The model's gradient reaches z through the q
side alone (envelope theorem: at the optimal critic, moving T leaves the bound unchanged to first
order).

References:
    > X. Nguyen, M. J. Wainwright, M. I. Jordan. Estimating Divergence Functionals and the
    > Likelihood Ratio by Convex Risk Minimization, IEEE Trans. Inf. Theory 56(11), 2010.
    > S. Nowozin, B. Cseke, R. Tomioka. f-GAN: Training Generative Neural Samplers using Variational
    > Divergence Minimization, NeurIPS 2016.
    > B. Poole, S. Ozair, A. van den Oord, A. Alemi, G. Tucker. On Variational Bounds of Mutual
    > Information, ICML 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..posteriors import PosteriorSample
from ..priors import Prior
from .base import CriticLoss, DivergenceEstimator
from .critics import (
    CRITIC_BLOCKS,
    CRITIC_WIDTH,
    ConditionalCritic,
    GaussianSkipEstimator,
    LatentCritic,
    check_gaussian_skip,
    pair_with_x,
)
from .prior_gradient import density_surrogate


class VariationalBound(GaussianSkipEstimator, DivergenceEstimator):
    """Shared machinery: a critic T(x, z) (``conditional=True``) or T(z), values at the n posterior
    samples and at m prior samples per example, the bound, and the critic loss −bound.

    Subclasses implement ``_bound(t_q (n, B), t_p (m, B)) -> (B,)`` and ``_log_ratio`` (the critic's
    implied log q/p, used only for the reported accuracy).

    With ``conditional=False`` T sees z alone, so it compares the *aggregated* posterior E_x q(z|x)
    with p(z) (as the AAE does); the per-example values then estimate the aggregate's divergence.

    Args:
        event_shape: the shape of one x.
        latent_dim: dimension D of z.
        conditional: critic T(x, z) (True) or T(z) (False).
        width, blocks: size of the residual critic.
        gaussian_skip: add ½‖z‖² to T (= −log N(z; 0, I) + const). None (auto, the default) is
            off here: on a 2-D Gaussian pair it worsened the reverse-KL estimate and JS at q = p,
            and under NWJ/DV it is harmful (see :class:`NWJ`). True needs a standard normal prior
            (:func:`~.critics.resolve_gaussian_skip`, the one rule).
        prior_samples: m prior samples per example; None uses m = n.
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        conditional: bool = True,
        width: int = CRITIC_WIDTH,
        blocks: int = CRITIC_BLOCKS,
        gaussian_skip: bool | None = None,
        prior_samples: int | None = None,
        *,
        x_features: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        if prior_samples is not None and prior_samples < 1:
            raise ValueError(f"prior_samples must be >= 1, got {prior_samples}")
        self.conditional, self.prior_samples = conditional, prior_samples
        self.gaussian_skip = check_gaussian_skip(gaussian_skip)
        skip = bool(gaussian_skip)  # auto: off until use_prior resolves it for the prior
        self.critic = (
            ConditionalCritic(self.event_shape, latent_dim, width, blocks, skip, x_features)
            if conditional
            else LatentCritic(latent_dim, width, blocks, skip)
        )

    def _skip_critics(self) -> list[nn.Module]:
        return [self.critic]

    def _critic_values(
        self, x: torch.Tensor, z: torch.Tensor, prior: Prior, detach_prior: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, b, d = z.shape
        m = self.prior_samples or n
        zp = prior.sample(m * b).to(z).view(m, b, d)
        if detach_prior:
            zp = zp.detach()
        t_q = self.critic(*pair_with_x(x, z)).view(n, b)
        t_p = self.critic(*pair_with_x(x, zp)).view(m, b)
        return t_q, t_p

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        # A learnable prior learns pathwise through its samples in the bound (Danskin: the
        # divergence's own gradient); a KL bound with a learnable density uses the exact
        # −E_q[∇_ψ log p_ψ] instead, which also reaches a mixture's weights (see .prior_gradient).
        # Inside ImplicitVAE a KL bound gets an implicit learnable prior as a DetachedPrior: the
        # pathwise gradient, whose weights e^T collapse at a large per-example KL, is cut, and ψ
        # learns through the model's aggregate critic (see .aggregate_ratio).
        exact = self.is_kl and prior.has_density and prior.is_learnable
        value = self._bound(*self._critic_values(x, q.z, prior, detach_prior=exact))
        return value + density_surrogate(prior, q.z) if exact else value

    def _critic_loss(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> CriticLoss:
        t_q, t_p = self._critic_values(x, q.z, prior, detach_prior=True)
        with torch.no_grad():
            r_q, r_p = self._log_ratio(t_q, t_p)
            accuracy = 0.5 * ((r_q > 0).float().mean() + (r_p < 0).float().mean())
        return CriticLoss(self._training_loss(t_q, t_p), accuracy.detach())

    def _training_loss(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        """The critic's loss: the negated bound, unless a subclass trains on another objective."""
        return -self._bound(t_q, t_p).mean()

    def _bound(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _log_ratio(self, t_q: torch.Tensor, t_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t_q, t_p


class NWJ(VariationalBound):
    """KL(q ‖ p) ≥ E_q[T] − E_p[e^{T−1}] (Nguyen–Wainwright–Jordan; the f-GAN bound for
    f = u log u), tight at T* = 1 + log q/p. Unbiased per example (linear in both expectations), but
    the e^{T} term makes its variance grow like e^{KL} (Song & Ermon 2020).

    Keep ``gaussian_skip`` off: with ½‖z‖² in T and an untrained network, E_p[e^{T−1}] is infinite
    under a standard normal prior.

    References:
        > X. Nguyen, M. J. Wainwright, M. I. Jordan. Estimating Divergence Functionals and the
        > Likelihood Ratio by Convex Risk Minimization, IEEE Trans. Inf. Theory 56(11), 2010.
        > J. Song, S. Ermon. Understanding the Limitations of Variational Mutual Information
        > Estimators, ICLR 2020.
    """

    def _bound(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        return t_q.mean(0) - (t_p - 1.0).exp().mean(0)

    def _log_ratio(self, t_q, t_p):
        return t_q - 1.0, t_p - 1.0


CRITIC_OBJECTIVES = ("js", "nwj", "dv")


class DonskerVaradhan(VariationalBound):
    """KL(q ‖ p) ≥ E_q[T] − log E_p[e^T] (Donsker–Varadhan), tight at T* = log q/p + any constant.

    The reported value is always this DV bound at the current critic. The log makes a per-example
    normaliser from m prior samples biased, so the normaliser is pooled over the batch's m·B prior
    pairs (x_b, z_p): E_x KL(q(z|x) ‖ p(z)) = KL(q(x, z) ‖ p(x)p(z)) ≥ E_{q(x,z)}[T] −
    log E_{p(x)p(z)}[e^{T(x,z)}]. Per-example values share that normaliser; their batch mean is the
    DV bound. (:func:`~implicit_vae.divergences.estimate_divergence` evaluates it once on its
    ``eval_samples`` held-out pairs, so the normaliser is a log-mean-exp over all of them.)

    The critic is *trained* on ``critic_objective``, any loss whose optimum is a DV optimum:
      - ``"js"`` (default): logistic regression of q against p, optimum T = log q/p (the GAN/JS
        critic; Poole et al. 2019 Sec. 2.4 train with JS and read out another bound). Its
        gradients are bounded (sigmoids), so nothing runs away.
      - ``"nwj"``: the NWJ bound, optimum T = 1 + log q/p; DV(T) ≥ NWJ(T) for every T
        (log u ≤ u/e), so the readout is at least the NWJ estimate of the same critic.
      - ``"dv"``: the minibatch DV bound itself (MINE without its moving average). It has no
        ceiling: when KL ≫ log(batch size) almost no prior sample of a batch lands where q lives,
        the log-mean-exp over the batch never sees the critic there, and T grows without bound on
        q's support (measured at D = 2 and 8, KL = 10 and 50: estimates of −9·10⁶ to +8·10⁹).
    On Gaussian pairs (D = 2, 8; KL = 10, 50; 600–800 steps, 10⁴ evaluation samples) "js" gave
    −45, +7, −47, −44 % and "nwj" −30, −32, −93, −53 %; at KL = 1 both are within 1 %.
    The large-KL shortfall is not the objective's: even the *true* log-ratio as critic gives DV
    estimates off by +14 ± 33 % (D = 2) and +8 ± 15 % (D = 8) at KL = 10 and by ~+4000 % at
    KL = 50 from 10⁴ prior samples, because the normaliser's variance grows like e^{KL}/m
    (Song & Ermon 2020; McAllester & Stratos 2020).
    Keep ``gaussian_skip`` off, for the same reason as in :class:`NWJ`.

    Args:
        critic_objective: "js", "nwj" or "dv" (see above); the other arguments are those of
            :class:`VariationalBound`.

    References:
        > M. D. Donsker, S. R. S. Varadhan. Asymptotic Evaluation of Certain Markov Process
        > Expectations for Large Time IV, Comm. Pure Appl. Math. 36(2), 1983.
        > M. I. Belghazi et al. Mutual Information Neural Estimation (MINE), ICML 2018.
        > B. Poole, S. Ozair, A. van den Oord, A. Alemi, G. Tucker. On Variational Bounds of
        > Mutual Information, ICML 2019.
        > J. Song, S. Ermon. Understanding the Limitations of Variational Mutual Information
        > Estimators, ICLR 2020.
        > D. McAllester, K. Stratos. Formal Limitations on the Measurement of Mutual Information,
        > AISTATS 2020.
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        conditional: bool = True,
        width: int = CRITIC_WIDTH,
        blocks: int = CRITIC_BLOCKS,
        gaussian_skip: bool | None = None,
        prior_samples: int | None = None,
        critic_objective: str = "js",
        *,
        x_features: nn.Module | None = None,
    ):
        # the full signature, not *args: the benchmark and configs read the options off it
        super().__init__(
            event_shape,
            latent_dim,
            conditional,
            width,
            blocks,
            gaussian_skip,
            prior_samples,
            x_features=x_features,
        )
        if critic_objective not in CRITIC_OBJECTIVES:
            raise ValueError(
                f"critic_objective must be one of {CRITIC_OBJECTIVES}, got {critic_objective!r}"
            )
        self.critic_objective = critic_objective

    @staticmethod
    def _log_normaliser(t_p: torch.Tensor) -> torch.Tensor:
        return t_p.flatten().logsumexp(0) - math.log(t_p.numel())

    def _bound(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        return t_q.mean(0) - self._log_normaliser(t_p)

    def _log_ratio(self, t_q, t_p):
        c = self._log_normaliser(t_p)
        return t_q - c, t_p - c

    def _training_loss(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        if self.critic_objective == "js":
            return -(F.logsigmoid(t_q).mean() + F.logsigmoid(-t_p).mean())
        if self.critic_objective == "nwj":
            return -(t_q.mean(0) - (t_p - 1.0).exp().mean(0)).mean()
        return super()._training_loss(t_q, t_p)


class ReverseKL(VariationalBound):
    """The *reverse* KL, KL(p ‖ q), by the f-GAN bound for f(u) = −log u with q in the role of the
    "real" distribution: with v = the critic's output and T = −e^{−v},
    KL(p ‖ q) ≥ E_q[T] − E_p[f*(T)] = 1 − E_q[e^{−v}] − E_p[v], tight at v* = log q/p.

    This is **not** the ELBO's KL(q ‖ p): ``is_kl`` is False and outputs are named ``reverse_kl``.
    Minimising it makes q mass-covering (it punishes q for missing mass of p) rather than
    mode-seeking.

    ``gaussian_skip`` hurts here: v* = log q/p is most negative far out in p's tails, where only
    prior samples inform the critic, and ½‖z‖² bends v the wrong way there when q is narrower than p
    (measured on a 2-D Gaussian pair: up to 55 % error with it, under 20 % without).

    References:
        > S. Nowozin, B. Cseke, R. Tomioka. f-GAN: Training Generative Neural Samplers using
        > Variational Divergence Minimization, NeurIPS 2016, Table 2 ("Reverse KL").
    """

    is_kl = False
    divergence_name = "reverse_kl"

    def _bound(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        return 1.0 - (-t_q).exp().mean(0) - t_p.mean(0)


class JensenShannon(VariationalBound):
    """The Jensen–Shannon divergence through the GAN objective: the critic is a logistic classifier
    (q label 1, p label 0) and
    JS(q ‖ p) ≥ ½(E_q[log σ(T)] + E_p[log(1 − σ(T))]) + log 2, tight at T* = log q/p.
    (The GAN value function equals 2·JS − log 4 at the optimal discriminator.) Values lie in
    [0, log 2]; ``is_kl`` is False and outputs are named ``js``. The gradient to q is that of the
    original (saturating) minimax generator loss.

    References:
        > I. Goodfellow et al. Generative Adversarial Nets, NeurIPS 2014, Theorem 1.
        > S. Nowozin, B. Cseke, R. Tomioka. f-GAN, NeurIPS 2016.
    """

    is_kl = False
    divergence_name = "js"

    def _bound(self, t_q: torch.Tensor, t_p: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.logsigmoid(t_q).mean(0) + F.logsigmoid(-t_p).mean(0)) + math.log(2.0)
