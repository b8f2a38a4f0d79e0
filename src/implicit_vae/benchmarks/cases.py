"""How accurate is each divergence estimator? Known-answer cases, a runner, a JSON file and a figure.

Cases (q against p; every truth is exact or a Monte Carlo value with its standard error):

- ``gaussian``: q = N(μ, s²I) against p = N(0, I) in d dimensions, with
  KL(q ‖ p) = ½‖μ‖² + (d/2)(s² − 1 − log s²) hit exactly. Half of the KL comes from the scale, at
  most 2 nats per dimension (so s ≥ 0.083: q stays far wider than float32's resolution and than
  ``avb_ac``'s variance floor), the rest from the mean, spread evenly over the coordinates:
  s² = −W₀(−exp(−1 − 2·KL_s/d)) (Lambert W, the root below 1) and μ_i = √(2(KL − KL_s)/d).
  Also KL(p ‖ q) = ½[d(1/s² − 1 + log s²) + ‖μ‖²/s²].
- ``mixture``: q = an equal mixture of 4 Gaussians N(c_k, 0.5²I) (‖c_k‖ = 2.5, fixed directions)
  against p = N(0, I); all divergences by Monte Carlo. Both log-densities are passed.
- ``semi_implicit``: q = ∫ N(z; m + a|ε|, s²I) N(ε; 0, I) dε (SIVI's construction with a
  nonlinear mixing map; m = 0, a = 2, s = 0.5) against p = N(0, I). Each coordinate of z is then
  m + (a|ε_i| + s η_i), a skew normal with scale ω = √(a² + s²) and shape a/s, so log q is exact:
  log 2 + log N(z_i − m; 0, ω²) + log Φ(a (z_i − m) / (s ω)) per coordinate. The case carries the
  posterior itself, so the estimators that read the mixing noise (``sivi``, ``uivi``) run too.
- ``sampler_only``: q = a "banana" (y ~ N(0, diag σ²), then z_{2j+1} = y_{2j+1} + 0.5(y_{2j}² − σ²))
  against p = ½N(+m, 1.2²I) + ½N(−m, 1.2²I); the estimators get the two samplers only. Estimators
  that read a density are reported as needing it; the truth uses the densities they never see.

Divergences other than the KL get truths too: ``reverse_kl`` (closed form or MC), ``js`` and
``energy_distance`` (MC), ``mmd2`` (MC at the population median bandwidth, which is what the
estimator's per-batch median converges to).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from scipy.special import lambertw
from torch import nn

from ..divergences import ESTIMATORS
from ..posteriors import SemiImplicitPosterior
from ..priors import Prior, StandardNormal

Fn = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_OUT = Path("benchmarks/results")
SCALE_CAP = 2.0  # nats of KL per dimension that may come from the scale
CRITIC = {"width": 128, "blocks": 2}  # one critic size for every critic estimator (see kl_accuracy)
SAMPLE_SIZE = 10_000  # samples of q (and of p) for the final estimate
MC_BUDGET = 25_000_000  # Monte Carlo truths use min(10⁶, MC_BUDGET / d) samples
OPTIONS = {"knn": {"k": 5}}  # besides the critic size; library defaults otherwise
MAX_SAMPLES = {"mmd": 4_000, "energy": 4_000}  # unbiased U-statistics: more only costs time


def steps_for(dim: int, quick: bool = False) -> int:
    """Critic updates for a cell: 600 at d = 2, 800 at d = 8, 1,000 at d = 32, 1,200 at d = 128
    (200 if ``quick``). Estimators that converge do so well within this (``avb_ac``), and more steps
    close a single classifier's gap only slowly (``avb`` at d = 2, KL = 10, a 128 × 5-block
    critic: −21 % after 1,000 steps, −11 % after 3,000)."""
    if quick:
        return 200
    return 600 if dim <= 2 else 800 if dim <= 8 else 1000 if dim <= 32 else 1200


@dataclass
class Case:
    """One pair (q, p): samplers, true log-densities, truths {divergence_name: (value, s.e.)}."""

    kind: str
    dim: int
    sample_q: Fn
    sample_p: Fn
    log_q: Fn
    log_p: Fn
    densities_given: bool = True
    target_kl: float | None = None
    truth: dict[str, tuple[float, float]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    posterior: SemiImplicitPosterior | None = None  # q(·|x) itself, for x = zeros(1, 1)
    prior: Prior | None = None  # p as a Prior, beside ``posterior``


def _normal_logpdf(z: torch.Tensor, mean, std) -> torch.Tensor:
    u = (z - mean) / std
    return (
        -0.5 * u.pow(2) - torch.as_tensor(std, dtype=z.dtype).log() - 0.5 * math.log(2 * math.pi)
    ).sum(-1)


def _standard_normal(dim: int) -> tuple[Fn, Fn]:
    return (lambda n: torch.randn(n, dim)), (lambda z: _normal_logpdf(z, 0.0, 1.0))


def _mixture(centres: torch.Tensor, std: float) -> tuple[Fn, Fn]:
    """Equal mixture of N(c_k, std²I); returns (sampler, log-density)."""
    k, dim = centres.shape

    def sample(n: int) -> torch.Tensor:
        idx = torch.randint(k, (n,))
        return centres.to(torch.get_default_dtype())[idx] + std * torch.randn(n, dim)

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        parts = _normal_logpdf(z.unsqueeze(1), centres.to(z), std)  # (N, K)
        return parts.logsumexp(-1) - math.log(k)

    return sample, log_prob


def gaussian_case(dim: int, kl: float) -> Case:
    """q = N(μ, s²I) against p = N(0, I) with KL(q ‖ p) = ``kl`` exactly (see the module doc)."""
    kl_scale = min(0.5 * kl, SCALE_CAP * dim)
    var = float(-lambertw(-math.exp(-1.0 - 2.0 * kl_scale / dim)).real)
    s, m = math.sqrt(var), math.sqrt(2.0 * (kl - kl_scale) / dim)
    mean_sq = m * m * dim
    exact = 0.5 * (mean_sq + dim * (var - 1.0 - math.log(var)))
    reverse = 0.5 * (dim * (1.0 / var - 1.0 + math.log(var)) + mean_sq / var)
    sample_p, log_p = _standard_normal(dim)
    return Case(
        "gaussian",
        dim,
        lambda n: m + s * torch.randn(n, dim),
        sample_p,
        lambda z: _normal_logpdf(z, m, s),
        log_p,
        target_kl=kl,
        truth={"kl": (exact, 0.0), "reverse_kl": (reverse, 0.0)},
        info={
            "s": s,
            "mean_norm": math.sqrt(mean_sq),
            "kl_from_scale": kl_scale,
            "kl_from_mean": kl - kl_scale,
        },
    )


def _directions(k: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(k, dim, generator=g, dtype=torch.float64)
    return d / d.norm(dim=1, keepdim=True)


def mixture_case(dim: int) -> Case:
    """q = an equal mixture of 4 Gaussians N(c_k, 0.5²I), ‖c_k‖ = 2.5, against p = N(0, I)."""
    sample_q, log_q = _mixture(2.5 * _directions(4, dim, seed=dim), 0.5)
    sample_p, log_p = _standard_normal(dim)
    return Case(
        "mixture",
        dim,
        sample_q,
        sample_p,
        log_q,
        log_p,
        info={"components": 4, "radius": 2.5, "std": 0.5},
    )


class _AbsoluteMixing(nn.Module):
    """μ(x, ε) = m + a|ε| (x is ignored): the mixing map of :func:`semi_implicit_case`."""

    def __init__(self, shift: float, slope: float):
        super().__init__()
        self.shift, self.slope = shift, slope

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.shift + self.slope * eps.abs()


SKEW = {"shift": 0.0, "slope": 2.0, "sigma": 0.5}  # m, a, s of the semi-implicit case


def semi_implicit_case(dim: int) -> Case:
    """q = ∫ N(z; m + a|ε|, s²I) N(ε; 0, I) dε, a product of skew normals, against p = N(0, I)."""
    m, a, s = SKEW["shift"], SKEW["slope"], SKEW["sigma"]
    omega = math.sqrt(a * a + s * s)
    posterior = SemiImplicitPosterior(
        1, dim, noise_dim=dim, sigma="global", sigma_init=s, net=_AbsoluteMixing(m, a)
    ).requires_grad_(False)
    x = torch.zeros(1, 1)

    def sample_q(n: int) -> torch.Tensor:
        with torch.no_grad():
            return posterior.sample(x, n, moments=False).z[:, 0]

    def log_q(z: torch.Tensor) -> torch.Tensor:
        y = z - m
        return (
            y.shape[-1] * math.log(2.0) + _normal_logpdf(y, 0.0, omega)
            + torch.special.log_ndtr(a * y / (s * omega)).sum(-1)
        )  # fmt: skip

    sample_p, log_p = _standard_normal(dim)
    return Case(
        "semi_implicit",
        dim,
        sample_q,
        sample_p,
        log_q,
        log_p,
        info={"q": "skew normal per coordinate: m + a|ε| + s·η", **SKEW},
        posterior=posterior,
        prior=StandardNormal(dim),
    )


def sampler_only_case(dim: int) -> Case:
    """A banana-shaped q against a two-component Gaussian mixture p, given as samplers only."""
    sigma = torch.tensor([1.0, 0.5] * (dim // 2) + [1.0] * (dim % 2), dtype=torch.float64)
    even = torch.arange(0, dim - 1, 2)

    def sample_q(n: int) -> torch.Tensor:
        z = sigma.to(torch.get_default_dtype()) * torch.randn(n, dim)
        z[:, even + 1] += 0.5 * (z[:, even].pow(2) - sigma[even].to(z) ** 2)
        return z

    def log_q(z: torch.Tensor) -> torch.Tensor:  # the shear has unit Jacobian
        y = z.clone()
        y[:, even + 1] -= 0.5 * (z[:, even].pow(2) - sigma[even].to(z) ** 2)
        return _normal_logpdf(y, 0.0, sigma.to(z))

    centres = torch.zeros(2, dim, dtype=torch.float64)
    centres[:, 0] = torch.tensor([1.5, -1.5])
    sample_p, log_p = _mixture(centres, 1.2)
    return Case(
        "sampler_only",
        dim,
        sample_q,
        sample_p,
        log_q,
        log_p,
        densities_given=False,
        info={"q": "banana, curvature 0.5", "p": "mixture of N(±1.5 e1, 1.2² I)"},
    )


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(-1).sqrt()


def _kernel(a: torch.Tensor, b: torch.Tensor, width: torch.Tensor, scales) -> torch.Tensor:
    """``mmd``'s kernel: mean over s of exp(−‖a − b‖² / (2 s² σ²)), σ² = ``width``."""
    sq = (a - b).pow(2).sum(-1)
    return sum((-0.5 * sq / (width * c * c)).exp() for c in scales) / len(scales)


def _mc_terms(case: Case, chunk: int, width: torch.Tensor, scales) -> dict[str, torch.Tensor]:
    """Per-sample unbiased terms of every divergence, from fresh draws of q and p."""
    zq, zq2, zp, zp2 = (
        f(chunk) for f in (case.sample_q, case.sample_q, case.sample_p, case.sample_p)
    )
    lq_q, lp_q, lq_p, lp_p = case.log_q(zq), case.log_p(zq), case.log_q(zp), case.log_p(zp)
    js = lq_q - torch.logaddexp(lq_q, lp_q) + lp_p - torch.logaddexp(lq_p, lp_p)
    return {
        "kl": lq_q - lp_q,
        "reverse_kl": lp_p - lq_p,
        "js": 0.5 * js + math.log(2.0),
        "energy_distance": _dist(zq, zp) + _dist(zq2, zp2) - _dist(zq, zq2) - _dist(zp, zp2),
        "mmd2": sum(
            sign * _kernel(a, b, width, scales)
            for sign, a, b in ((1, zq, zq2), (1, zp, zp2), (-1, zq, zp2), (-1, zq2, zp))
        ),
    }


@torch.no_grad()
def monte_carlo_truths(
    case: Case, n: int | None = None, seed: int = 12345, chunk: int = 100_000
) -> Case:
    """Fill ``case.truth`` with Monte Carlo values (mean, s.e.) of the divergences it lacks.

    ``n`` samples in float64 (default min(10⁶, MC_BUDGET / d)). Each divergence is the mean of an
    unbiased per-sample term (U-statistic pairs for the energy distance and MMD², whose bandwidth
    is the median ‖z_q − z_p‖² of ``chunk`` pairs, as ``mmd`` sets it), so its s.e. is a mean's.
    """
    n = n or min(1_000_000, MC_BUDGET // case.dim)
    chunk = min(chunk, n)
    scales = inspect.signature(ESTIMATORS["mmd"].__init__).parameters["scales"].default
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float64)
        try:
            width = (case.sample_q(chunk) - case.sample_p(chunk)).pow(2).sum(-1).median()
            parts = [_mc_terms(case, chunk, width, scales) for _ in range(math.ceil(n / chunk))]
        finally:
            torch.set_default_dtype(default)
    for key in parts[0]:
        if key not in case.truth:
            values = torch.cat([p[key] for p in parts])
            case.truth[key] = (float(values.mean()), float(values.std() / len(values) ** 0.5))
    return case
