"""Measure a divergence between two samplers with any estimator of :data:`ESTIMATORS`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..posteriors import Posterior, PosteriorSample
from ..priors import Prior
from ..rng import forked_rng

Sampler = Callable[[int], torch.Tensor]
LogDensity = Callable[[torch.Tensor], torch.Tensor]


class _SampledPrior(Prior):
    """p given by a sampler ``n -> (n, D)`` and, optionally, a log-density ``(N, D) -> (N,)``."""

    def __init__(
        self,
        latent_dim: int,
        sample: Sampler,
        log_prob: LogDensity | None,
        standard_normal: bool = False,
    ):
        super().__init__(latent_dim)
        self._sampler, self._log_density = sample, log_prob
        self.has_density = log_prob is not None
        self.is_standard_normal = standard_normal

    def _sample(self, n: int) -> torch.Tensor:
        return _draw(self._sampler, n, self.latent_dim, "sample_p")

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return _call_density(self._log_density, z, "log_p")


class _SampledPosterior(Posterior):
    """q given by a sampler (and optionally a log-density), as one q(z|x) for the constant x = 0.

    Only its flags are read (by ``requirements_error``); moments are always available empirically.
    """

    has_moments = True

    def __init__(self, latent_dim: int, has_density: bool):
        super().__init__(1, latent_dim)
        self.has_density = has_density


def samples_suffice(cls: type) -> bool:
    """True when estimator class ``cls`` can measure a q given as a sampler with a density, as
    :func:`estimate_divergence` gives it; False for those that read a particular posterior class
    (the mixing noise of a semi-implicit one: ``sivi``, ``uivi``; a Gaussian's moments:
    ``analytic``), which need :func:`estimate_on_posterior`."""
    from ..priors import StandardNormal

    return cls.requirements_error(_SampledPosterior(1, True), StandardNormal(1)) is None


def _draw(sampler: Sampler, n: int, dim: int | None, what: str) -> torch.Tensor:
    z = torch.as_tensor(sampler(n)).to(torch.get_default_dtype())
    if z.dim() != 2 or z.shape[0] != n or (dim is not None and z.shape[1] != dim):
        expected = f"({n}, {'D' if dim is None else dim})"
        raise ValueError(
            f"{what}({n}) must return a tensor of shape {expected}, got {tuple(z.shape)}"
        )
    return z


def _call_density(log_density: LogDensity, z: torch.Tensor, what: str) -> torch.Tensor:
    flat = z.reshape(-1, z.shape[-1])
    out = torch.as_tensor(log_density(flat)).to(z)
    if out.shape != flat.shape[:1]:
        raise ValueError(
            f"{what} must map ({flat.shape[0]}, D) to ({flat.shape[0]},), got {tuple(out.shape)}"
        )
    return out.view(z.shape[:-1])


def _missing_hint(cls, log_q: LogDensity | None, log_p: LogDensity | None) -> str:
    hints = []
    if cls.needs_posterior_density and log_q is None:
        hints.append("pass log_q (z (N, D) -> log q(z) (N,))")
    if cls.needs_prior_density and log_p is None:
        hints.append("pass log_p (z (N, D) -> log p(z) (N,))")
    return " and ".join(hints) or "this estimator cannot measure two samplers"


def estimate_divergence(
    name: str,
    sample_q: Sampler,
    sample_p: Sampler,
    *,
    log_q: LogDensity | None = None,
    log_p: LogDensity | None = None,
    steps: int = 1000,
    batch_size: int = 256,
    seed: int = 0,
    lr: float = 1e-3,
    eval_samples: int | None = None,
    p_is_standard_normal: bool = False,
    **options,
) -> float:
    """Estimate KL(q ‖ p) — or the divergence the estimator names — between two samplers.

    q is treated as one q(z|x) with a constant x = 0 of one dimension (so conditional critics work):
    each batch of ``batch_size`` draws is passed as the n samples of that single x, shape
    (n, 1, D). The estimator's critic, if any, is trained with Adam for ``steps`` steps on fresh
    batches; the estimate is then taken on ``eval_samples`` held-out draws of q (and as many of p).
    Estimators that read q's moments (``avb_ac``) get the empirical mean and covariance of one
    large draw (max(10,000, ``batch_size``)), fixed for the whole run, so ``contrast="full"``
    whitens by the full covariance.

    Everything runs under a forked, seeded torch RNG, so the global RNG state is left untouched and
    the result depends only on ``seed`` (provided the samplers draw from torch's global generator).

    Args:
        name: a key of :data:`~implicit_vae.divergences.ESTIMATORS`.
        sample_q, sample_p: callables ``n -> (n, D)`` tensors.
        log_q, log_p: optional log-densities ``(N, D) -> (N,)``, required by estimators that
            need them (e.g. ``monte_carlo`` needs both, ``avb_ac`` and ``kde`` need ``log_p``).
        steps: critic updates (ignored by estimators without a critic).
        batch_size: samples of q (and of p) per critic update.
        seed: seeds the critic's initialisation and all sampling.
        lr: Adam learning rate of the critic.
        eval_samples: samples of q for the final estimate; default 10 × ``batch_size``.
        p_is_standard_normal: ``sample_p`` draws from N(0, I). Only the critics' ½‖z‖² skip reads
            it: under its default (auto) the skip of ``avb`` and ``aae`` is on exactly then (see
            :func:`~implicit_vae.divergences.critics.resolve_gaussian_skip`).
        **options: passed to the estimator's constructor (e.g. ``width=64``, ``k=3``).

    Returns:
        The estimate, a float; ``ESTIMATORS[name].divergence_name`` says what it estimates.

    Raises:
        ValueError: for an unknown name, bad sizes, or a density the estimator needs but was not
            given.
    """
    from . import ESTIMATORS

    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}")
    if steps < 0 or batch_size < 2 or (eval_samples is not None and eval_samples < 2):
        raise ValueError(
            f"need steps >= 0, batch_size >= 2, eval_samples >= 2; got {steps}, "
            f"{batch_size}, {eval_samples}"
        )
    cls = ESTIMATORS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = _draw(sample_q, 2, None, "sample_q")
        dim = probe.shape[1]
        prior = _SampledPrior(dim, sample_p, log_p, p_is_standard_normal)
        reason = cls.requirements_error(_SampledPosterior(dim, log_q is not None), prior)
        if reason is not None:
            raise ValueError(f"{reason}: {_missing_hint(cls, log_q, log_p)}")
        estimator = cls(1, dim, **options)
        moments = _draw(sample_q, max(10_000, batch_size), dim, "sample_q")
        mean = moments.mean(0, keepdim=True)  # (1, D)
        cov = torch.cov(moments.T).reshape(1, dim, dim)  # (1, D, D)
        var = cov.diagonal(dim1=1, dim2=2)
        moment_draws = moments.shape[0]

        def posterior_sample(n: int) -> PosteriorSample:
            z = _draw(sample_q, n, dim, "sample_q").unsqueeze(1)  # (n, 1, D)
            log_prob = None if log_q is None else _call_density(log_q, z, "log_q")
            return PosteriorSample(
                z=z, mean=mean, var=var, log_prob=log_prob, cov=cov, moment_draws=moment_draws
            )

        x = torch.zeros(1, 1)
        params = [p for p in estimator.parameters() if p.requires_grad]
        if params:
            optimizer = torch.optim.Adam(params, lr=lr)
            # Decaying the step size to 0 removes most of the final iterate's minibatch jitter.
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / max(steps, 1)))
            )
            for _ in range(steps):
                with torch.no_grad():
                    q = posterior_sample(batch_size)
                optimizer.zero_grad(set_to_none=True)
                estimator.critic_loss(x, q, prior).loss.backward()
                optimizer.step()
                schedule.step()
        with torch.no_grad():
            value = estimator.estimate(x, posterior_sample(eval_samples or 10 * batch_size), prior)
    return float(value.mean())


def estimate_on_posterior(
    name: str,
    posterior: Posterior,
    prior: Prior,
    x: torch.Tensor,
    *,
    steps: int = 1000,
    batch_size: int = 256,
    samples: int = 1000,
    seed: int = 0,
    lr: float = 1e-3,
    **options,
) -> float:
    """Estimate KL(q(·|x) ‖ p) for ONE input ``x`` (1, …) on the posterior's own samples.

    This is the path for estimators that read more than a sampler gives — the mixing noise and
    conditional density of a :class:`~implicit_vae.posteriors.SemiImplicitPosterior` (``sivi``,
    ``uivi``) — and it works for any estimator whose requirements the pair meets. The critic, if
    any, is trained with Adam for ``steps`` steps on fresh batches of ``batch_size`` draws (the
    posterior and prior are not updated); the estimate is the mean over ``samples`` fresh draws.
    Runs under a forked RNG seeded with ``seed``.

    Raises:
        ValueError: for an unknown name, bad sizes, an ``x`` with more than one input, or a
            posterior / prior the estimator cannot work with.
    """
    from . import ESTIMATORS

    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}")
    if steps < 0 or batch_size < 2 or samples < 2:
        raise ValueError(
            f"need steps >= 0, batch_size >= 2, samples >= 2; got {steps}, {batch_size}, {samples}"
        )
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one input, shape (1, …), got {tuple(x.shape)}")
    cls = ESTIMATORS[name]
    reason = cls.requirements_error(posterior, prior)
    if reason is not None:
        raise ValueError(reason)
    with forked_rng(seed):  # CPU and CUDA streams alike: the caller's continue untouched
        estimator = cls(posterior.event_shape, posterior.latent_dim, **options).to(x.device)
        params = [p for p in estimator.parameters() if p.requires_grad]
        if params:
            optimizer = torch.optim.Adam(params, lr=lr)
            for _ in range(steps):
                with torch.no_grad():
                    q = posterior.sample(x, batch_size)
                optimizer.zero_grad(set_to_none=True)
                estimator.critic_loss(x, q, prior).loss.backward()
                optimizer.step()
        with torch.no_grad():
            return float(estimator.estimate(x, posterior.sample(x, samples), prior).mean())
