"""Importance-sampling (IWAE-style) estimate of log p(x) with an explicit proposal q(z|x).

References:
    > Y. Burda, R. Grosse, R. Salakhutdinov. Importance weighted autoencoders, ICLR 2016.
"""

from __future__ import annotations

import math

import torch

from ..progress import Progress
from ._common import (
    PLAIN_LINES,
    EvaluationError,
    LogLikelihoodEstimate,
    LogLikelihoodFn,
    call_log_likelihood,
    check_positive_int,
    check_prior_density,
    check_x,
    device_of,
    seeded,
    stderr_from_sums,
)

# Rows (samples × examples) per decoder call: bounds memory whatever ``samples`` is.
_MAX_ROWS = 16384


def importance_sampling_log_likelihood(log_likelihood: LogLikelihoodFn, prior, posterior,
                                       x: torch.Tensor, *, samples: int = 1000,
                                       batch_size: int = 128, seed: int = 0,
                                       progress: bool = False) -> LogLikelihoodEstimate:
    """log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (Burda et al. 2016).

    Unbiased for p(x) before the log, so a stochastic lower bound on log p(x) that tightens as K
    grows; it is only as good as q's coverage of the true posterior (a q narrower than the posterior
    gives heavy-tailed weights and an optimistic standard error).

    Args:
        log_likelihood: ``(x (B, D_x), z (n, B, D)) -> log p(x|z) (n, B)``.
        prior: p(z) with a density.
        posterior: explicit q(z|x) (``has_density`` True): ``sample(x, n)`` returning ``.z``
            (n, B, D) and optionally ``.log_prob`` (n, B); otherwise ``log_prob(z, x)`` is called.
        x: data, shape (B, D_x).
        samples: K, importance samples per example; drawn in chunks so memory stays bounded.
        batch_size: examples per batch.
        seed: seed of the run; the caller's global RNG state is restored afterwards.
        progress: show progress over examples × samples (a bar on a terminal, else plain lines).

    Returns:
        log p(x) estimates (B,) and their delta-method standard errors (B,).

    Raises:
        EvaluationError: if the posterior or the prior has no density.
    """
    check_x(x)
    if not getattr(posterior, "has_density", False):
        raise EvaluationError(
            f"importance sampling needs log q(z|x), but {type(posterior).__name__} is implicit "
            "(sample-only); use ais_log_likelihood, which needs only log p(z) and log p(x|z).")
    check_prior_density(prior, "importance sampling")
    check_positive_int(samples=samples, batch_size=batch_size)
    x = x.to(device_of(log_likelihood, posterior, prior, default=x.device))  # runs on the model's
    out, errs = [], []
    bar = Progress(x.shape[0] * samples, "IS", enabled=progress, unit="sample", **PLAIN_LINES)
    with torch.no_grad(), seeded(seed, x.device), bar:
        for start in range(0, x.shape[0], batch_size):
            lse1, lse2 = _accumulate(log_likelihood, prior, posterior, x[start:start + batch_size],
                                     samples, bar)
            out.append(lse1 - math.log(samples))
            errs.append(stderr_from_sums(lse1, lse2, samples))
    return LogLikelihoodEstimate(torch.cat(out), torch.cat(errs))


def _accumulate(log_likelihood, prior, posterior, x: torch.Tensor, samples: int,
                bar: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Running log Σ w and log Σ w² over K samples, chunked; each (B,)."""
    chunk = max(1, _MAX_ROWS // x.shape[0])
    lse1 = torch.full((x.shape[0],), -float("inf"), device=x.device, dtype=x.dtype)
    lse2 = lse1.clone()
    for done in range(0, samples, chunk):
        q = posterior.sample(x, min(chunk, samples - done))
        log_q = q.log_prob if q.log_prob is not None else posterior.log_prob(q.z, x)
        log_w = call_log_likelihood(log_likelihood, x, q.z) + prior.log_prob(q.z) - log_q  # (n, B)
        lse1 = torch.logaddexp(lse1, torch.logsumexp(log_w, 0))
        lse2 = torch.logaddexp(lse2, torch.logsumexp(2.0 * log_w, 0))
        if bar is not None:
            bar.update(log_w.numel())
    return lse1, lse2
