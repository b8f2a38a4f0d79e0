"""Distances between samples: pairwise squared distances, k-th neighbours, the Kozachenko-Leonenko
entropy; shared by the k-NN, kernel and MMD estimators."""

from __future__ import annotations

import math

import torch


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``a`` (B, n, D) and ``b`` (B, m, D).

    Returns (B, n, m).

    Uses ‖a‖² + ‖b‖² − 2a·b (memory B·n·m rather than B·n·m·D) after centring both on a's mean,
    which keeps the cancellation error small; clamped at 0, so the gradient is finite everywhere.
    """
    centre = a.mean(1, keepdim=True).detach()
    a, b = a - centre, b - centre
    sq = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(1)
    sq = sq - 2.0 * a @ b.transpose(1, 2)
    return sq.clamp_min(0.0)


def kth_nn_log_dist(a: torch.Tensor, b: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    """log of the distance from each row of ``a`` (B, n, D) to its k-th nearest row of ``b``
    (B, m, D). With ``exclude_self`` (``b`` is ``a``) a point is not its own neighbour.

    Returns (B, n); differentiable through the selected distances.

    The neighbours are *selected* on :func:`pairwise_sq_dists`, but the k-th distance is then
    recomputed exactly as ‖a_i − b_j‖: the expanded form's float32 cancellation error (~1e-7·‖a‖²)
    exceeds the smallest nearest-neighbour distances of 10⁴ samples in 2-D, which it rounds to 0
    (log 0 → a clamped −44, a spurious tie that biased k = 1 estimates).
    """
    sq = pairwise_sq_dists(a, b)
    if exclude_self:
        eye = torch.eye(sq.shape[-1], dtype=torch.bool, device=sq.device)
        sq = sq.masked_fill(eye, math.inf)
    index = sq.detach().topk(k, dim=-1, largest=False).indices[..., -1]  # (B, n)
    neighbour = b.gather(1, index.unsqueeze(-1).expand(-1, -1, b.shape[-1]))  # (B, n, D)
    exact_sq = (a - neighbour).pow(2).sum(-1)
    return 0.5 * exact_sq.clamp_min(torch.finfo(exact_sq.dtype).tiny).log()


def kozachenko_leonenko_entropy(z: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Kozachenko–Leonenko entropy estimate of each column of samples ``z`` (n, B, D): shape (B,).

    Ĥ = ψ(n) − ψ(k) + log V_D + (D/n) Σ_i log ρ_k(i), with ρ_k(i) the distance from z_i to its k-th
    nearest neighbour among the other n − 1 samples and V_D the volume of the unit D-ball.
    Needs n ≥ k + 1.
    """
    n, _, d = z.shape
    zb = z.transpose(0, 1)  # (B, n, D)
    log_rho = kth_nn_log_dist(zb, zb, k, exclude_self=True)  # (B, n)
    log_unit_ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)
    digamma = torch.special.digamma(z.new_tensor([float(n), float(k)]))
    return digamma[0] - digamma[1] + log_unit_ball + d * log_rho.mean(-1)


def check_samples_per_x(name: str, n: int, needed: int, why: str) -> None:
    """Raise a ValueError telling the user to draw more samples of q(z|x) per example."""
    if n < needed:
        raise ValueError(
            f"{name} needs at least {needed} samples of q(z|x) per example ({why}), got n = {n}; "
            f"set train.n_samples >= {needed}"
        )
