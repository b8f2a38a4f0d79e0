"""Paired comparison of two models' per-example log-likelihoods on the same data.

The Monte Carlo standard error an estimator reports (over AIS chains or importance samples) says
how well a model's mean over a *fixed* test set is computed. Whether model A beats model B on the
task is a different question: a fresh test set would move both means, but together, because the
same images are easy or hard for both. Its uncertainty is the standard error over examples of the
per-example difference (a paired comparison), usually far larger than the Monte Carlo one.
"""

from __future__ import annotations

import math

import torch

from ._common import EvaluationError


def paired_difference(log_px_a: torch.Tensor, log_px_b: torch.Tensor) -> dict[str, float]:
    """Mean of ``log_px_a - log_px_b`` over examples, with its standard error over examples.

    Args:
        log_px_a, log_px_b: per-example log p(x) of two models on the same examples, shape (B,),
            B >= 2, in the same order.

    Returns:
        ``{"difference", "difference_stderr_over_examples", "fraction_where_a_is_higher",
        "examples"}``; the s.e. is ``std(a - b) / sqrt(B)`` (the test set's sampling error).
    """
    if log_px_a.shape != log_px_b.shape or log_px_a.dim() != 1:
        raise EvaluationError(
            f"paired_difference needs two per-example vectors of the same length, got shapes "
            f"{tuple(log_px_a.shape)} and {tuple(log_px_b.shape)}"
        )
    n = log_px_a.numel()
    if n < 2:
        raise EvaluationError(f"paired_difference needs at least 2 examples, got {n}")
    diff = (log_px_a - log_px_b).double()
    if not torch.isfinite(diff).all():
        raise EvaluationError("paired_difference got non-finite per-example log p(x)")
    return {
        "difference": diff.mean().item(),
        "difference_stderr_over_examples": diff.std().item() / math.sqrt(n),
        "fraction_where_a_is_higher": (diff > 0).double().mean().item(),
        "examples": n,
    }
