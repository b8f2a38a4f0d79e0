"""UIVI's unbiased entropy gradient for semi-implicit posteriors: the score ∇_z log q(z|x) as an
average over HMC draws of the reverse conditional q(ε|z, x), started at the ε that generated z.

References:
    > M. K. Titsias, F. J. R. Ruiz. Unbiased Implicit Variational Inference, AISTATS 2019, and the
    > official MATLAB code (franrruiz/uivi, ``src/main_demo.m``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..posteriors import PosteriorSample
from ..posteriors.semi_implicit import (
    SemiImplicitSample,
    gaussian_log_prob,
    log_mixture_density,
)
from ..priors import Prior
from .semi_implicit import DEFAULT_MIXING_SAMPLES, SemiImplicitEstimator, check_int

# franrruiz/uivi (VAE setting): 5 burn-in + 5 kept HMC iterations of 5 leapfrog steps, initial step
# 0.5/dim_z, adapted during burn-in towards 90 % acceptance at rate 0.01 and carried across steps.
DEFAULT_BURN_IN, DEFAULT_SAMPLES, DEFAULT_LEAPFROG = 5, 5, 5
DEFAULT_TARGET_ACCEPTANCE, DEFAULT_ADAPT_RATE = 0.9, 0.01


class UIVI(SemiImplicitEstimator):
    """KL(q(z|x) ‖ p(z)) for a semi-implicit q whose *gradient* is UIVI's unbiased one and whose
    *value* is SIVI's mixture estimate (UIVI itself has no estimate of log q).

    Gradient. With z = h(ε, η) = μ(x, ε) + σ ⊙ η, ∇_φ E_q[log q(z|x)] = E[∇_z log q(z|x)ᵀ ∂h/∂φ]
    (the score-function term vanishes), and ∇_z log q(z|x) = E_{q(ε'|z,x)}[∇_z log q(z|ε', x)]
    = −E[(z − μ(x, ε'))/σ²]. The reverse conditional q(ε'|z, x) ∝ N(ε'; 0, I) N(z; μ(x, ε'), σ²)
    is sampled by HMC, one chain per z, started at the ε that generated z (an exact draw of it,
    so the chain starts at stationarity); the score ĝ(z) averages ∇_z log q(z|ε_t, x) over the
    ``samples`` kept iterations after ``burn_in``. The surrogate Σ_d stopgrad(ĝ)·z then has the
    entropy gradient; −log p(z) keeps its own (pathwise, and a learnable prior's).

    Step size. One scalar for all chains, a buffer (``step_size``, saved with the model) carried
    from call to call as in the UIVI code: during burn-in it is multiplied by
    1 + ``adapt_rate``·(a − target)/target, a the mean acceptance probability of that iteration; the
    kept iterations use it fixed. The adaptation makes the step depend on the chains' burn-in
    states, a small departure from exactness that the UIVI code shares; it is in the training
    gradient only, never in a reported value. ``acceptance_rate`` (a buffer) holds the mean
    acceptance probability of the last call's kept iterations.

    Value. No density estimate comes with UIVI, so the reported per-example value is the SIVI
    mixture estimate mean_n[log q̂_K(z|x) − log p(z)] with K = ``mixing_samples`` fresh mixing draws
    plus the generating one (:class:`~.semi_implicit.SIVI`'s value, computed without a graph): it
    is biased *high* (an upper estimate of the KL, so the reported ELBO is a lower estimate),
    consistent as K grows. ``value_method`` says so in words. Without a graph (``torch.no_grad`` or
    a detached sample) no HMC runs and only the value is computed.

    Cost per step: (burn_in + samples) · leapfrog forward+backward passes of the mixing network on
    the n·B chains, plus K forward passes for the value. No critic: the critic loss is zero.

    Args:
        event_shape, latent_dim: as for :class:`DivergenceEstimator`.
        mixing_samples: K of the reported value (the SIVI mixture); the gradient does not read it.
        burn_in: HMC iterations before the kept ones (step-size adaptation only).
        samples: kept HMC iterations averaged in the score.
        leapfrog: leapfrog steps per HMC iteration.
        step_size: the initial leapfrog step; None: 0.5 / latent_dim (the UIVI VAE code).
        target_acceptance: the acceptance probability the burn-in adaptation aims at.
        adapt_rate: the adaptation's rate (0: a fixed step size, the exactly unbiased case).

    References:
        > M. K. Titsias, F. J. R. Ruiz. Unbiased Implicit Variational Inference, AISTATS 2019.
    """


    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        mixing_samples: int = DEFAULT_MIXING_SAMPLES,
        burn_in: int = DEFAULT_BURN_IN,
        samples: int = DEFAULT_SAMPLES,
        leapfrog: int = DEFAULT_LEAPFROG,
        step_size: float | None = None,
        target_acceptance: float = DEFAULT_TARGET_ACCEPTANCE,
        adapt_rate: float = DEFAULT_ADAPT_RATE,
    ):
        super().__init__(event_shape, latent_dim)
        check_int("mixing_samples", mixing_samples, 1)
        check_int("burn_in", burn_in, 0)
        check_int("samples", samples, 1)
        check_int("leapfrog", leapfrog, 1)
        if step_size is None:
            step_size = 0.5 / latent_dim
        if not (isinstance(step_size, (int, float)) and not isinstance(step_size, bool)
                and step_size > 0 and math.isfinite(step_size)):  # fmt: skip
            raise ValueError(f"step_size must be a number > 0 (or None), got {step_size!r}")
        if not (isinstance(target_acceptance, (int, float)) and 0 < target_acceptance < 1):
            raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance!r}")
        if not (isinstance(adapt_rate, (int, float)) and 0 <= adapt_rate < 1):
            raise ValueError(f"adapt_rate must be in [0, 1), got {adapt_rate!r}")
        self.mixing_samples, self.burn_in, self.samples = mixing_samples, burn_in, samples
        self.leapfrog = leapfrog
        self.target_acceptance, self.adapt_rate = float(target_acceptance), float(adapt_rate)
        self.register_buffer("step_size", torch.tensor(float(step_size)))
        self.register_buffer("acceptance_rate", torch.tensor(float("nan")))
        self.value_method = (
            f"sivi mixture, K={mixing_samples} fresh mixing draws + the generating one (biased "
            "high); gradient: uivi HMC score"
        )

    # -- public -------------------------------------------------------------------------------

    def score(self, x: torch.Tensor, q: PosteriorSample) -> torch.Tensor:
        """ĝ(z) ≈ ∇_z log q(z|x), shape (n, B, D), no graph: the mean of ∇_z log N(z; μ(x, ε_t), σ_t²)
        over the kept HMC draws ε_t of q(ε|z, x), one chain per z started at its generating ε.
        Updates the ``step_size`` and ``acceptance_rate`` buffers."""
        x = self._check(x, q)
        self._check_sample(q)
        return self._score(q)

    # -- private ------------------------------------------------------------------------------

    def _check_sample(self, q: PosteriorSample) -> None:
        if not isinstance(q, SemiImplicitSample) or q.conditional is None or q.eps is None:
            raise ValueError(
                f"{type(self).__name__} needs a sample of a SemiImplicitPosterior (with its "
                f"generating noise and conditional), got a {type(q).__name__}"
            )

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        self._check_sample(q)
        with torch.no_grad():
            loc, scale = q.components(self.mixing_samples)  # (K, B, D) each
            log_q = log_mixture_density(q.z, q.loc, q.scale, loc, scale)  # (n, B)
        value = log_q.mean(0)
        if q.z.requires_grad and torch.is_grad_enabled():
            surrogate = (self._score(q) * q.z).sum(-1).mean(0)  # ∇_{z_i} = ĝ_i / n
            value = value + (surrogate - surrogate.detach())
        return value - prior.log_prob(q.z).mean(0)

    def _score(self, q: SemiImplicitSample) -> torch.Tensor:
        z = q.z.detach()
        with torch.autocast(z.device.type, enabled=False):  # accept/reject needs full precision
            z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
            return self._hmc(z, q.eps.detach().to(z.dtype), q.conditional)

    def _target(self, z, eps, conditional):
        """log N(ε; 0, I) + log N(z; μ(x, ε), σ²) (n, B), its gradient in ε, and the score
        ∇_z log N(z; μ, σ²) (n, B, D) at ε, all without a graph."""
        with torch.enable_grad():
            e = eps.detach().requires_grad_(True)
            loc, scale = conditional(e)
            log_p = gaussian_log_prob(z, loc, scale) - 0.5 * e.pow(2).sum(-1)
            (grad,) = torch.autograd.grad(log_p.sum(), e)
        score = -((z - loc) / scale.pow(2)).detach()
        return log_p.detach(), grad, score

    def _hmc(self, z, eps, conditional) -> torch.Tensor:
        step = self.step_size.to(z.dtype)  # a 0-dim tensor: no host synchronisation
        log_p, grad, score = self._target(z, eps, conditional)
        total = torch.zeros_like(z)
        accepted = []
        for it in range(self.burn_in + self.samples):
            momentum = torch.randn_like(eps)
            e, p = eps, momentum + 0.5 * step * grad
            for leap in range(self.leapfrog):
                e = e + step * p
                new_log_p, new_grad, new_score = self._target(z, e, conditional)
                p = p + (step if leap < self.leapfrog - 1 else 0.5 * step) * new_grad
            log_ratio = (new_log_p - 0.5 * p.pow(2).sum(-1)) - (
                log_p - 0.5 * momentum.pow(2).sum(-1)
            )
            log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)  # a diverged proposal: reject
            accept = torch.rand_like(log_ratio).log() < log_ratio  # (n, B)
            eps = torch.where(accept.unsqueeze(-1), e, eps)
            log_p = torch.where(accept, new_log_p, log_p)
            grad = torch.where(accept.unsqueeze(-1), new_grad, grad)
            score = torch.where(accept.unsqueeze(-1), new_score, score)
            rate = log_ratio.clamp(max=0.0).exp().mean()
            if it < self.burn_in:
                target = self.target_acceptance
                step = step * (1.0 + self.adapt_rate * (rate - target) / target)
            else:
                accepted.append(rate)
                total = total + score
        self.step_size.copy_(step)
        self.acceptance_rate.copy_(torch.stack(accepted).mean())
        return total / self.samples
