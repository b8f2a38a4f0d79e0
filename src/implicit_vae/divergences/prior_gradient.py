"""How the KL term's gradient reaches a learnable prior p_ψ(z) when the estimator never reads log p.

The KL term's gradient w.r.t. the prior's parameters ψ is

    ∇_ψ KL(q ‖ p_ψ) = −E_q[∇_ψ log p_ψ(z)].                                            (1)

*Prior with a density* (e.g. the learnable :class:`~implicit_vae.priors.GaussianMixture`): (1) is
computed exactly from the posterior samples by :func:`density_surrogate`. Estimators that already
subtract ``prior.log_prob(z)`` (``avb_ac``, ``monte_carlo``, ``kde``, ``stein``) get it for free.

*Implicit prior* z = h_ψ(η), η ~ N(0, I) (no density): with the ratio r = q/p_ψ held fixed,

    E_q[∇_ψ log p_ψ] = ∫ q ∇_ψ p_ψ / p_ψ dz = ∫ r ∇_ψ p_ψ dz = ∇_ψ E_{p_ψ}[r(z)]|_{r fixed}
                     = E_η[r(h_ψ(η)) ∇_z log r(z) ∇_ψ h_ψ(η)]                              (2)

(the density-ratio trick, Sugiyama et al.; the last step reparameterises z = h_ψ(η)). A critic
T ≈ log q − log p_ψ supplies r = e^T, so (1) is the gradient of −E_{z ~ p_ψ}[e^{T(x, z)}] with T
frozen. :func:`ratio_surrogate` implements it **self-normalised** over the batch: e^T is divided by
its mean over all m·B prior samples, which is 1 in expectation for the true ratio
(E_p[q/p] = 1 for every x), i.e. the gradient is that of −log mean e^T = −Σ softmax(T) ∇T.
This keeps every weight below m·B however far an imperfect critic overshoots (plain e^T explodes
as e^{KL}, Song & Ermon 2020), makes the gradient blind to a constant offset in T, and is
consistent (bias O(1/(m·B)), as self-normalised importance sampling).
For the AAE the critic is the *aggregate* ratio q(z)/p(z); that is still right, since
E_x E_{q(z|x)}[∇_ψ log p_ψ] = E_{q(z)}[∇_ψ log p_ψ]: the mutual information the AAE drops does not
depend on ψ.

*Which ratio, inside a model.* The self-normalised weights have an effective sample size of about
m·B·e^{−KL} for the KL between the two distributions whose ratio is used. Through an x-conditional
critic T(x, z) ≈ log q(z|x)/p_ψ(z) that is the per-example KL, tens of nats in a useful VAE: with
the *exact* T (B = 128, D = 8) the gradient's median cosine to the closed form is about 0.4 at a
per-example KL of 3 and 0.0–0.1 at 10 and 16, and the NWJ/DV bounds' pathwise gradient degrades
the same way (``benchmarks/prior_gradient.py``). The aggregate KL(q(z) ‖ p_ψ) is small, and by
the identity above the aggregate ratio gives the same gradient. So
:class:`~implicit_vae.model.ImplicitVAE` trains a learnable implicit prior under a KL estimator
through its own aggregate critic D(z) (:mod:`.aggregate_ratio`; cosine 0.98 at every per-example
KL there) and hands the estimator a :class:`~.aggregate_ratio.DetachedPrior`, which switches the
estimator-level route below off. That route (:func:`prior_surrogate`, and the bounds' pathwise
gradient) remains for an estimator used on its own, e.g. between two samplers, where there is one
q and the per-example ratio *is* the aggregate one.

Both surrogates are added to an estimator's per-example estimate as ``s − s.detach()``: their
**value is exactly zero** (reported numbers do not change) and their gradient w.r.t. ψ is (1).
They are switched on only for a prior with trainable parameters, and only where a gradient is being
taken, so a fixed prior's runs draw the same random numbers as before.

Why not the AAE's GAN alternative (train h as a generator against D(z)): that minimises the JS or
reverse KL between p_ψ and q — mode-seeking, so the prior may cover only some of the aggregate
posterior — and is not the gradient of the ELBO. (2) is the ELBO's own gradient, and for the
variational bounds in :mod:`.fdiv`, which draw prior samples inside the estimate, it is what the
bound's pathwise gradient gives on its own (Danskin's theorem; with DV's pooled normaliser it is
exactly the self-normalised form above), with the same collapse at a large per-example KL.

References:
    > M. Sugiyama, T. Suzuki, T. Kanamori. Density Ratio Estimation in Machine Learning, CUP 2012.
    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017.
    > A. Makhzani et al. Adversarial Autoencoders, ICLR Workshop 2016.
    > J. Song, S. Ermon. Understanding the Limitations of Variational Mutual Information
    > Estimators, ICLR 2020.
    > M. D. Hoffman, M. J. Johnson. ELBO surgery: yet another way to carve up the variational
    > evidence lower bound, NeurIPS Workshop on Approximate Bayesian Inference 2016.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from ..priors import Prior

LogRatio = Callable[[torch.Tensor], torch.Tensor]


def frozen(module: nn.Module) -> Callable[..., torch.Tensor]:
    """``module`` as a function of its inputs only: its parameters are detached, so the gradient of
    the output reaches the inputs but never the module's own parameters."""
    state = {name: p.detach() for name, p in module.named_parameters()}
    state.update(dict(module.named_buffers()))
    return lambda *args: functional_call(module, state, args)


def density_surrogate(prior: Prior, z_q: torch.Tensor) -> torch.Tensor:
    """Zero-valued per-example term with gradient −E_q[∇_ψ log p_ψ(z)], shape (B,).

    Args:
        prior: a prior with a density.
        z_q: posterior samples (n, B, D); detached here, since the path through z belongs to the
            estimator itself.
    """
    s = -prior.log_prob(z_q.detach()).mean(0)
    return s - s.detach()


def ratio_surrogate(t_p: torch.Tensor) -> torch.Tensor:
    """Zero-valued per-example term whose batch mean has gradient −∇ log mean_{j,b} e^{T_jb}
    = −Σ_{j,b} softmax(T)_jb ∇T_jb, the self-normalised form of (2); shape (B,).

    Args:
        t_p: frozen-critic values log q/p at reparameterised prior samples, (m, B).
    """
    log_w = t_p - t_p.flatten().logsumexp(0) + math.log(t_p.numel())
    s = -(log_w.detach().exp() * t_p).mean(0)
    return s - s.detach()


def prior_surrogate(prior: Prior, z_q: torch.Tensor, log_ratio: LogRatio) -> torch.Tensor:
    """The zero-valued term that gives a learnable prior its KL gradient, shape (B,).

    The estimator-level route: inside :class:`~implicit_vae.model.ImplicitVAE` a learnable implicit
    prior under a KL estimator comes as a :class:`~.aggregate_ratio.DetachedPrior` (not learnable),
    so this is zero there and the aggregate critic gives the gradient.

    Zero without a gradient for a prior without trainable parameters or outside grad mode (no
    prior samples are drawn then). Otherwise :func:`density_surrogate` where the prior has a
    density, else :func:`ratio_surrogate` on n·B fresh prior samples paired like ``z_q``.

    Args:
        prior: p_ψ.
        z_q: posterior samples (n, B, D).
        log_ratio: maps prior samples (n, B, D) to the **frozen** critic's estimate of
            log q(z|x_b)/p(z) (or of the aggregate's log q(z)/p(z)), shape (n, B).
    """
    if not (prior.is_learnable and torch.is_grad_enabled()):
        return z_q.new_zeros(z_q.shape[1])
    if prior.has_density:
        return density_surrogate(prior, z_q)
    n, b, d = z_q.shape
    z_p = prior.sample(n * b).to(z_q).view(n, b, d)
    return ratio_surrogate(log_ratio(z_p))
