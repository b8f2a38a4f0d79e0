"""Whitening z − μ by a covariance: the normalisation adaptive contrast and its diagnostics share."""

from __future__ import annotations

import torch


def whiten(
    centred: torch.Tensor, cov: torch.Tensor, floor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """L⁻¹(z − μ) and log det L for Σ + floor·I = LLᵀ; centred (n, B, D), cov (B, D, D) ->
    (n, B, D), (B,).

    L = U diag(λ + floor)^½ from Σ = U diag(λ) Uᵀ (any L with LLᵀ = Σ will do: N(0, I) is
    isotropic). An eigendecomposition in float64 rather than a Cholesky factor: Σ from float32 sums
    can be slightly indefinite when q is close to a line, and clamping λ keeps L well defined.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
    scale = (eigenvalues.clamp_min(0.0) + floor).sqrt()  # (B, D)
    rotated = torch.einsum("bji,nbj->nbi", eigenvectors.to(centred.dtype), centred)
    return rotated / scale.to(centred.dtype), scale.log().sum(-1).to(centred.dtype)
