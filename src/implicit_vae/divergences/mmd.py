"""Likelihood-free discrepancies between samples of q and p: kernel MMD² and the energy distance.

Neither is a KL divergence (``is_kl`` False): every output is named ``mmd2`` or ``energy_distance``.
Both compare summary statistics of the two sample sets (kernel mean embeddings; expected distances),
optionally of *learned* summary statistics φ(z) trained to maximise the discrepancy (MMD-GAN style).

References:
    > A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf, A. Smola. A Kernel Two-Sample Test,
    > JMLR 13, 2012.
    > G. J. Székely, M. L. Rizzo. Energy Statistics: A Class of Statistics Based on Distances,
    > J. Stat. Plan. Inference 143(8), 2013.
    > C.-L. Li, W.-C. Chang, Y. Cheng, Y. Yang, B. Póczos. MMD GAN: Towards Deeper Understanding of
    > Moment Matching Network, NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..networks import mlp
from ..posteriors import PosteriorSample
from ..priors import Prior
from .base import CriticLoss, DivergenceEstimator
from .distances import check_samples_per_x, pairwise_sq_dists


class SummaryNet(nn.Module):
    """Features [z, tanh(f(z))]: z itself (so the discrepancy stays a divergence on z) plus
    ``summary_dim`` bounded learned statistics. Shapes: z (..., D) -> (..., D + summary_dim)."""

    def __init__(self, latent_dim: int, summary_dim: int, width: int):
        super().__init__()
        self.f = mlp(latent_dim, (width, width), summary_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, torch.tanh(self.f(z))], dim=-1)


def _off_diagonal_mean(mat: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of each square matrix in ``mat`` (B, n, n): (B,)."""
    n = mat.shape[-1]
    return (mat.sum((-2, -1)) - mat.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))


class SampleDiscrepancy(DivergenceEstimator):
    """Shared machinery: per example, the n samples of q(z|x) against m prior samples (one draw
    shared by the batch), through optional learned summary statistics.

    Subclasses implement ``_discrepancy(fq (B, n, F), fp (1, m, F)) -> (B,)``, unbiased U-statistics
    (they need n ≥ 2 and m ≥ 2; near 0, possibly slightly negative, when q = p).

    Args:
        event_shape: the shape of one x (unused).
        latent_dim: dimension D of z.
        prior_samples: m; None uses m = max(n, 2).
        aggregate: compare all n·B samples of the batch (the aggregated posterior, as in
            WAE/InfoVAE) instead of each q(z|x); works with one sample per x and gives every
            example the same value.
        summary_dim: number of learned summary statistics (0, the default, uses z alone and no
            critic); when > 0 the statistics are trained by ``critic_loss`` to maximise the
            discrepancy.
        summary_width: hidden width of the summary network.
    """

    is_kl = False

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        prior_samples: int | None = None,
        aggregate: bool = False,
        summary_dim: int = 0,
        summary_width: int = 64,
    ):
        super().__init__(event_shape, latent_dim)
        if prior_samples is not None and prior_samples < 2:
            raise ValueError(f"prior_samples must be >= 2, got {prior_samples}")
        if summary_dim < 0:
            raise ValueError(f"summary_dim must be >= 0, got {summary_dim}")
        self.prior_samples, self.aggregate = prior_samples, aggregate
        self.min_samples_per_x = 1 if aggregate else 2
        self.summary = SummaryNet(latent_dim, summary_dim, summary_width) if summary_dim else None

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.summary is None else self.summary(z)

    def _value(self, q: PosteriorSample, prior: Prior, detach_prior: bool) -> torch.Tensor:
        n, b, d = q.z.shape
        zq = q.z.reshape(1, n * b, d) if self.aggregate else q.z.transpose(0, 1)  # (B', n', D)
        check_samples_per_x(
            type(self).__name__,
            zq.shape[1],
            2,
            "an unbiased within-sample term; or use aggregate=True",
        )
        zp = prior.sample(self.prior_samples or max(zq.shape[1], 2)).to(zq).unsqueeze(0)
        if detach_prior:
            zp = zp.detach()
        value = self._discrepancy(self._features(zq), self._features(zp))
        return value.expand(b) if self.aggregate else value

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        return self._value(q, prior, detach_prior=False)

    def _critic_loss(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> CriticLoss:
        if self.summary is None:
            return super()._critic_loss(x, q, prior)
        return CriticLoss(-self._value(q, prior, detach_prior=True).mean(), float("nan"))

    def _discrepancy(self, fq: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MaximumMeanDiscrepancy(SampleDiscrepancy):
    """Unbiased squared MMD between q(z|x) and p(z) with a mixture of Gaussian kernels
    k(a, b) = mean_s exp(−‖a − b‖² / (2 (s·σ)²)) (Gretton et al. 2012, eq. 3), s over ``scales``.
    σ is ``bandwidth`` or, by default, the median q–p distance of each example (held constant).
    MMD² = 0 iff q = p for this characteristic kernel; values lie below 2. Named ``mmd2``.

    Args (besides :class:`SampleDiscrepancy`'s):
        bandwidth: "median" or a positive float σ.
        scales: multipliers of σ; several make the kernel sensitive at several length scales.

    References:
        > A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf, A. Smola. A Kernel Two-Sample
        > Test, JMLR 13, 2012.
        > C.-L. Li et al. MMD GAN: Towards Deeper Understanding of Moment Matching Network,
        > NeurIPS 2017 (learned summary statistics).
    """

    divergence_name = "mmd2"

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        bandwidth: str | float = "median",
        scales: Sequence[float] = (0.5, 1.0, 2.0),
        **kwargs,
    ):
        super().__init__(event_shape, latent_dim, **kwargs)
        if not (bandwidth == "median" or (isinstance(bandwidth, (int, float)) and bandwidth > 0)):
            raise ValueError(f"bandwidth must be 'median' or a positive float, got {bandwidth!r}")
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive and non-empty, got {scales}")
        self.bandwidth, self.scales = bandwidth, tuple(float(s) for s in scales)

    def _kernel(self, sq: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return sum((-0.5 * sq / (var * s * s)).exp() for s in self.scales) / len(self.scales)

    def _discrepancy(self, fq: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
        sq_qp = pairwise_sq_dists(fq, fp.expand(fq.shape[0], -1, -1))
        if self.bandwidth == "median":
            var = sq_qp.detach().flatten(1).median(-1).values.clamp_min(1e-12).view(-1, 1, 1)
        else:
            var = sq_qp.new_tensor(float(self.bandwidth) ** 2)
        k_qq = self._kernel(pairwise_sq_dists(fq, fq), var)
        k_pp = self._kernel(pairwise_sq_dists(fp, fp), var)
        k_qp = self._kernel(sq_qp, var).mean((-2, -1))
        return _off_diagonal_mean(k_qq) + _off_diagonal_mean(k_pp) - 2 * k_qp


class EnergyDistance(SampleDiscrepancy):
    """Energy distance 2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ between X ~ q(z|x) and Y ~ p(z), by
    U-statistics (Székely & Rizzo 2013). It is 0 iff q = p (it equals an MMD² with the distance-
    induced kernel) and, unlike MMD, needs no bandwidth. Named ``energy_distance``.

    References:
        > G. J. Székely, M. L. Rizzo. Energy Statistics: A Class of Statistics Based on Distances,
        > J. Stat. Plan. Inference 143(8), 2013.
    """

    divergence_name = "energy_distance"

    @staticmethod
    def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # The floor keeps sqrt's gradient finite on the (excluded) diagonal.
        return pairwise_sq_dists(a, b).clamp_min(1e-12).sqrt()

    def _discrepancy(self, fq: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
        d_qp = self._dist(fq, fp.expand(fq.shape[0], -1, -1)).mean((-2, -1))
        d_qq = _off_diagonal_mean(self._dist(fq, fq))
        return 2 * d_qp - d_qq - _off_diagonal_mean(self._dist(fp, fp))
