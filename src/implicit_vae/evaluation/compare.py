"""Paired comparison of two models' per-example log-likelihoods on the same data.

The Monte Carlo standard error an estimator reports (over AIS chains or importance samples) says
how well a model's mean over a *fixed* test set is computed. Whether model A beats model B on the
task is a different question: a fresh test set would move both means, but together, because the
same images are easy or hard for both. Its uncertainty is the standard error over examples of the
per-example difference (a paired comparison), usually far larger than the Monte Carlo one.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from ._common import EvaluationError

PER_EXAMPLE_KEYS = ("log_px_ais", "log_px_is", "log_px_iw_semi_implicit")


def data_fingerprint(x: torch.Tensor) -> str:
    """SHA-256 of the evaluated data (B, D): two per-example files are paired only if they match."""
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def load_per_example(path: str | Path, estimate: str) -> tuple[torch.Tensor, str]:
    """The per-example ``estimate`` (B,) and data fingerprint from a file written by
    ``implicit-vae evaluate`` (``<json stem>_per_example.pt``); one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(
            f"{str(path)!r} does not exist; expected the *_per_example.pt file that "
            "implicit-vae evaluate writes beside its JSON"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable or unsafe file gets the same one line
        raise EvaluationError(
            f"{str(path)!r} is not a per-example file written by implicit-vae evaluate "
            f"({type(err).__name__})"
        ) from None
    if not isinstance(saved, dict) or "data_sha256" not in saved:
        raise EvaluationError(
            f"{str(path)!r} is not a per-example file written by implicit-vae evaluate"
        )
    if not isinstance(saved.get(estimate), torch.Tensor):
        have = ", ".join(k for k in PER_EXAMPLE_KEYS if k in saved) or "none"
        raise EvaluationError(
            f"{str(path)!r} holds no {estimate} (it has: {have}); IS needs an explicit posterior"
        )
    return saved[estimate], saved["data_sha256"]


def compare_evaluations(
    path_a: str | Path, path_b: str | Path, estimate: str = "log_px_ais"
) -> dict[str, float]:
    """:func:`paired_difference` of two ``implicit-vae evaluate`` per-example files, which must
    come from the same examples (same split, same --max-examples, same binarisation)."""
    if estimate not in PER_EXAMPLE_KEYS:
        raise EvaluationError(
            f"estimate must be one of {', '.join(PER_EXAMPLE_KEYS)}, got {estimate!r}"
        )
    a, sha_a = load_per_example(path_a, estimate)
    b, sha_b = load_per_example(path_b, estimate)
    if sha_a != sha_b:
        raise EvaluationError(
            f"{str(path_a)!r} and {str(path_b)!r} were evaluated on different data; expected the "
            "same split and --max-examples (and the same seed for binarised data)"
        )
    return paired_difference(a, b)


def paired_difference(log_px_a: torch.Tensor, log_px_b: torch.Tensor) -> dict[str, float]:
    """Mean of ``log_px_a - log_px_b`` over examples, with its standard error over examples.

    Args:
        log_px_a, log_px_b: per-example log p(x) of two models on the same examples, shape (B,),
            B >= 2, in the same order.

    Returns:
        ``{"mean_a", "mean_b", "difference", "difference_stderr_over_examples",
        "fraction_where_a_is_higher", "examples"}``; the s.e. is ``std(a - b) / sqrt(B)`` (the
        test set's sampling error).
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
        "mean_a": log_px_a.double().mean().item(),
        "mean_b": log_px_b.double().mean().item(),
        "difference": diff.mean().item(),
        "difference_stderr_over_examples": diff.std().item() / math.sqrt(n),
        "fraction_where_a_is_higher": (diff > 0).double().mean().item(),
        "examples": n,
    }
