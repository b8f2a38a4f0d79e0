"""Numerical quadrature of log p(x) = log ∫ p(x|z) p(z) dz for a 2-D latent: the ground truth for
checking AIS and importance sampling on small models (and for 2-D toy experiments such as AVB's)."""

from __future__ import annotations

import math

import torch

from ._common import (
    EvaluationError,
    LogLikelihoodFn,
    call_log_likelihood,
    check_positive_int,
    check_prior_density,
    check_x,
    device_of,
)

# Rows (grid points × examples) per decoder call.
_MAX_ROWS = 65536


def exact_log_likelihood_2d(log_likelihood: LogLikelihoodFn, prior, x: torch.Tensor, *,
                            limit: float = 6.0, grid: int = 401,
                            batch_size: int = 64) -> torch.Tensor:
    """log p(x) by the trapezoid rule on a ``grid × grid`` lattice over [−limit, limit]², in logs.

    Accurate when p(x|z) p(z) is smooth on the lattice's scale (spacing 2·limit/(grid−1)) and has
    negligible mass outside the box (about 2e-9 for N(0, I) at limit 6). Compute in float64 (x and
    decoder in float64) for agreement beyond ~1e-5 nats.

    Args:
        log_likelihood: ``(x (B, D_x), z (n, B, 2)) -> log p(x|z) (n, B)``.
        prior: p(z) over R² with a density.
        x: data, shape (B, D_x).
        limit: half-width of the integration box.
        grid: nodes per axis (≥ 2).
        batch_size: examples per batch.

    Returns:
        log p(x), shape (B,).

    Raises:
        EvaluationError: if the latent is not 2-D or the prior has no density.
    """
    check_x(x)
    check_prior_density(prior, "quadrature")
    if prior.latent_dim != 2:
        raise EvaluationError(f"quadrature needs a 2-D latent, got latent_dim={prior.latent_dim}; "
                              "use ais_log_likelihood for higher dimensions")
    check_positive_int(grid=grid, batch_size=batch_size)
    if grid < 2 or not limit > 0:
        raise ValueError(f"need grid >= 2 and limit > 0, got grid={grid}, limit={limit}")
    x = x.to(device_of(log_likelihood, prior, default=x.device))  # runs on the model's device
    nodes = torch.linspace(-limit, limit, grid, device=x.device, dtype=x.dtype)
    log_w1 = torch.full_like(nodes, math.log(2 * limit / (grid - 1)))
    log_w1[[0, -1]] -= math.log(2.0)  # trapezoid end weights h/2
    zi, zj = torch.meshgrid(nodes, nodes, indexing="ij")
    z = torch.stack([zi.reshape(-1), zj.reshape(-1)], dim=-1)  # (G², 2)
    with torch.no_grad():
        # log of (quadrature weight × prior density) at every node, shared by all examples.
        log_wp = (log_w1[:, None] + log_w1[None, :]).reshape(-1) + prior.log_prob(z)
        return torch.cat([_integrate(log_likelihood, x[s:s + batch_size], z, log_wp)
                          for s in range(0, x.shape[0], batch_size)])


def _integrate(log_likelihood: LogLikelihoodFn, x: torch.Tensor, z: torch.Tensor,
               log_wp: torch.Tensor) -> torch.Tensor:
    """log Σ_nodes w p(z) p(x|z) for one batch, chunked over nodes; returns (B,)."""
    b = x.shape[0]
    chunk = max(1, _MAX_ROWS // b)
    acc = torch.full((b,), -float("inf"), device=x.device, dtype=x.dtype)
    for s in range(0, z.shape[0], chunk):
        zc = z[s:s + chunk]
        ll = call_log_likelihood(log_likelihood, x, zc[:, None, :].expand(-1, b, -1))  # (n, B)
        acc = torch.logaddexp(acc, torch.logsumexp(ll + log_wp[s:s + chunk, None], 0))
    return acc
