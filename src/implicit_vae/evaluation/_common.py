"""Shared pieces of the log-likelihood estimators: the result type, the error type, the
log-mean-exp with its delta-method standard error, seeding and input checks."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..rng import forked_rng

LogLikelihoodFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``log_likelihood(x (B, D_x), z (n, B, D)) -> log p(x|z) (n, B)``."""


# Progress of the estimators where output is no terminal: a line per 5 % at most every 5 s, so a
# long AIS says how far it is and a short one writes one line when it is done.
PLAIN_LINES = {"lines": 20, "min_interval": 5.0}


class EvaluationError(ValueError):
    """An estimator cannot be applied to the given model (missing density, wrong dimension, ...)."""


@dataclass
class LogLikelihoodEstimate:
    """Per-example estimates of log p(x).

    Attributes:
        log_px: the estimate for each example, shape (B,).
        stderr: its Monte Carlo standard error, shape (B,). Both AIS and importance sampling report
            the delta-method error of a log-mean-exp, ``std(w) / (sqrt(K) · mean(w))`` over the K
            chains or samples (computed stably in log space). It is itself noisy for small K and
            understates the error when the weights are heavy-tailed; it is NaN when K = 1.
    """

    log_px: torch.Tensor
    stderr: torch.Tensor

    @property
    def mean(self) -> float:
        """The mean estimate over the examples (nats per example)."""
        return self.log_px.mean().item()

    @property
    def mean_stderr(self) -> float:
        """Monte Carlo standard error of :attr:`mean`: ``sqrt(Σ stderr²) / B`` (examples are
        estimated independently). The data-sampling error ``log_px.std() / sqrt(B)`` is separate."""
        return (self.stderr.pow(2).sum().sqrt() / self.stderr.numel()).item()


def logmeanexp_with_stderr(log_w: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """log mean exp(log_w) along ``dim`` and its delta-method standard error.

    Returns:
        (estimate, stderr), both with ``dim`` removed.
    """
    k = log_w.shape[dim]
    lse1 = torch.logsumexp(log_w, dim)
    lse2 = torch.logsumexp(2.0 * log_w, dim)
    return lse1 - math.log(k), stderr_from_sums(lse1, lse2, k)


def stderr_from_sums(lse1: torch.Tensor, lse2: torch.Tensor, k: int) -> torch.Tensor:
    """Delta-method s.e. of log((1/k) Σ w) from ``lse1 = log Σ w`` and ``lse2 = log Σ w²``.

    Var(w) / mean(w)² = k Σw² / (Σw)² − 1, with the unbiased k/(k−1) correction.
    """
    if k < 2:
        return torch.full_like(lse1, float("nan"))
    rel_var = torch.expm1(lse2 - 2.0 * lse1 + math.log(k)).clamp_min(0.0) * k / (k - 1)
    return (rel_var / k).sqrt()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` and restore the global RNG state afterwards.

    Priors and posteriors draw from the global generators, so a private ``torch.Generator`` would not
    reach them; forking them (the CPU's and every CUDA device's in use, as
    :func:`implicit_vae.rng.forked_rng` does; ``device`` is where the estimate runs, which is in use
    by then) keeps the caller's random streams untouched.
    """
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.init()  # so that its generators are forked even before the first CUDA tensor
    with forked_rng(seed):
        yield


def device_of(*objects, default: torch.device) -> torch.device:
    """The device of the first module among ``objects`` that has parameters or buffers (a bound
    method counts as its module, e.g. ``model.log_likelihood``); ``default`` if none has."""
    for obj in objects:
        obj = getattr(obj, "__self__", obj)
        if isinstance(obj, torch.nn.Module):
            for tensor in (*obj.parameters(), *obj.buffers()):
                return tensor.device
    return default


def check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a tensor of shape (B, D_x) with B >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def check_positive_int(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise EvaluationError(f"{name} must be a positive integer, got {value!r}")


def check_prior_density(prior, method: str) -> None:
    if not getattr(prior, "has_density", False):
        raise EvaluationError(
            f"{method} needs the prior's log-density log p(z), but {type(prior).__name__} is "
            "implicit (sample-only). With an implicit prior report the ELBO estimate, the "
            "reconstruction error or sample-based metrics instead.")


def call_log_likelihood(log_likelihood: LogLikelihoodFn, x: torch.Tensor,
                        z: torch.Tensor) -> torch.Tensor:
    """``log_likelihood(x, z)`` with its (n, B) output shape checked."""
    out = log_likelihood(x, z)
    if not isinstance(out, torch.Tensor) or out.shape != z.shape[:-1]:
        raise EvaluationError(
            f"log_likelihood(x, z) must return shape {tuple(z.shape[:-1])} for z of shape "
            f"{tuple(z.shape)}, got {tuple(out.shape) if isinstance(out, torch.Tensor) else out!r}")
    return out
