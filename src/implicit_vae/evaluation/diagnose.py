"""Posterior-shape diagnostics (``implicit-vae diagnose``): how far q(z|x) is from Gaussian, where its
KL against the prior lives, and whether the run's KL estimator charges at least what is certain.

For each input x, K draws z ~ q(z|x) and q's mean μ and covariance Σ (the posterior's own where they
are exact: Gaussian, full-covariance and noise-basis posteriors; else the K draws' own moments, 1/K
normalised) give, with C the correlation matrix of Σ and w = Λ^(-1/2) Uᵀ(z − μ) the draws whitened
in Σ = U Λ Uᵀ's eigenbasis:

- ``correlation``: KL(N(μ, Σ) ‖ N(μ, diag Σ)) = −½ log det C, the total correlation of q's Gaussian
  fit: the part of the KL a diagonal Gaussian (or AVB's diagonal contrast) cannot see.
- ``marginal_gaussian``: Σ_d KL(N(μ_d, Σ_dd) ‖ N(0, 1)) (standard normal prior only), so that
  KL(N(μ, Σ) ‖ N(0, I)) = marginal_gaussian + correlation.
- ``gaussian_fit``: KL(N(μ, Σ) ‖ p) in the sense E_q[log N(z; μ, Σ) − log p(z)] = −H(N(μ, Σ)) −
  E_q[log p] (closed form for N(0, I), Monte Carlo over the K draws for another prior).
- ``non_gaussian``: Σ_d KL(law(w_d) ‖ N(0, 1)), each by a 1-D spacing estimate
  (:func:`marginal_kl_1d`); exactly 0 for a Gaussian posterior family. Because
  KL(q ‖ p) = gaussian_fit + KL(q ‖ N(μ, Σ)) (log N(μ, Σ) is quadratic, so only q's first two moments
  enter its expectation) and KL(q ‖ N(μ, Σ)) = KL(law(w) ‖ N(0, I)) = Σ_d KL(law(w_d) ‖ N(0, 1)) +
  TC(w) with TC ≥ 0, it is a lower bound on the non-Gaussian part of the KL;
- ``lower_bound`` = gaussian_fit + non_gaussian ≤ KL(q(z|x) ‖ p), up to Monte Carlo error.
- ``kurtosis``: E[(w_d − w̄_d)⁴] / Var(w_d)² per coordinate (3 for a Gaussian; excess = kurtosis − 3);
  heavy tails are what a Gaussian contrast credits as entropy and a critic must charge.

Against these, ``charge`` is the run's own KL estimator on the same draws (its estimate of
KL(q(z|x) ‖ p) per input; for a critic: what the critic charges). An estimate below ``lower_bound``
under-charges the KL. For ``avb_ac`` the critic's own part is compared too, as in AVB Sec. 4.1: its
E_q[T(x, z̃)] estimates KL(law(z̃) ‖ N(0, I)), z̃ = L⁻¹(z − μ) the critic's input, against the bound
Σ_d KL(law(z̃_d) ‖ N(0, 1)) (N(0, I) is a product, so the total correlation of z̃ only adds).

References:
    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017, Sec. 4.1.
    > O. Vasicek. A test for normality based on sample entropy, JRSS B 38, 1976.
    > N. Ebrahimi, K. Pflughoeft, E. Soofi. Two measures of sample entropy, Stat. Prob. Lett. 20, 1994.
    > S. Watanabe. Information theoretical analysis of multivariate correlation, IBM J. 4, 1960.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..divergences.adaptive_contrast import AVBAdaptiveContrast
from ..divergences.aggregate import AdversarialAutoencoder
from ..divergences.critics import pair_with_x
from ..divergences.whitening import whiten
from ..posteriors import FullCovarianceGaussianPosterior, GaussianPosterior, PosteriorSample
from ._common import seeded

_LOG_2PI = math.log(2 * math.pi)
_NUMERIC_FLOOR = 1e-12  # added to Σ's eigenvalues when whitening: numerical only, not AVB's 1e-4
GAUSSIAN_FAMILIES = (GaussianPosterior, FullCovarianceGaussianPosterior)


def marginal_kl_1d(samples: np.ndarray) -> float:
    """KL(q ‖ N(0, 1)) of a one-dimensional q from its samples (n,): −H(q) + ½ log 2π + ½ E[u²].

    The entropy is the m-spacing estimate with m = round(√n) and Ebrahimi's boundary weights
    (``scipy.stats.differential_entropy``; Vasicek 1976, Ebrahimi et al. 1994): robust to heavy
    tails, where a kernel density estimate is not. It errs slightly low (about −0.003 nat for a
    Gaussian at n = 20,000), on the safe side of a lower bound.
    """
    from scipy import stats

    x = np.asarray(samples, dtype=np.float64)
    m = max(1, round(math.sqrt(len(x))))
    entropy = stats.differential_entropy(x, window_length=m, method="ebrahimi")
    return float(-entropy + 0.5 * _LOG_2PI + 0.5 * np.mean(x * x))


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    """Pearson kurtosis E[(w − w̄)⁴] / Var(w)² along dim 0 (biased moments): w (n, ...) -> (...).
    3 for a Gaussian, 1.8 for a uniform, 6 for a Laplace distribution."""
    c = w - w.mean(0, keepdim=True)
    return c.pow(4).mean(0) / c.pow(2).mean(0).pow(2)


def correlation_kl(cov: torch.Tensor) -> torch.Tensor:
    """−½ log det C for the correlation matrix C of ``cov`` (B, D, D) -> (B,): KL(N(μ, Σ) ‖
    N(μ, diag Σ)), the total correlation of a Gaussian (Watanabe 1960); 0 iff Σ is diagonal."""
    var = cov.diagonal(dim1=-2, dim2=-1)
    return 0.5 * (var.log().sum(-1) - torch.linalg.slogdet(cov)[1])


def gaussian_fit(q: PosteriorSample) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(μ (B, D), Σ (B, D, D), exact) of q(z|x) in float64: the sample's own moments where they are
    exact (``moment_draws`` None), else those of its draws ``q.z`` (n, B, D), normalised by n."""
    if q.mean is not None and q.var is not None and q.moment_draws is None:
        return q.mean.double(), q.covariance().double(), True
    z = q.z.double()
    mean = z.mean(0)
    c = z - mean
    return mean, torch.einsum("nbi,nbj->bij", c, c) / z.shape[0], False


def kl_parts(z: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, prior,
             gaussian_family: bool = False) -> dict[str, Any]:
    """The KL split of the module docstring for draws z (n, B, D) of q with moments μ (B, D),
    Σ (B, D, D): ``{"correlation", "marginal_gaussian", "gaussian_fit", "non_gaussian",
    "lower_bound"}``, each (B,) float64 (``marginal_gaussian`` None unless ``prior`` is N(0, I); the
    last three None for a prior without a density), and the whitened draws ``"white"`` (n, B, D).
    ``gaussian_family``: q is Gaussian by construction, so ``non_gaussian`` is exactly 0.
    """
    z_in, z = z, z.double()
    white, _ = whiten(z - mean, cov, _NUMERIC_FLOOR)
    corr = correlation_kl(cov)
    d = z.shape[-1]
    if gaussian_family:
        non_gaussian = torch.zeros_like(corr)
    else:
        per_coordinate = white.permute(1, 2, 0).cpu().numpy()  # (B, D, n)
        non_gaussian = torch.tensor([sum(marginal_kl_1d(c) for c in image) for image in
                                     per_coordinate], dtype=torch.float64, device=z.device)
    out: dict[str, Any] = {"correlation": corr, "marginal_gaussian": None, "gaussian_fit": None,
                           "non_gaussian": non_gaussian, "lower_bound": None, "white": white}
    if getattr(prior, "is_standard_normal", False):
        var = cov.diagonal(dim1=-2, dim2=-1)
        out["marginal_gaussian"] = 0.5 * (var + mean.pow(2) - 1 - var.log()).sum(-1)
        out["gaussian_fit"] = out["marginal_gaussian"] + corr
    elif getattr(prior, "has_density", False):
        entropy = 0.5 * (d * (1 + _LOG_2PI) + torch.linalg.slogdet(cov)[1])
        with torch.no_grad():
            log_p = prior.log_prob(z_in).double().mean(0)
        out["gaussian_fit"] = -entropy - log_p
    if out["gaussian_fit"] is not None:
        out["lower_bound"] = out["gaussian_fit"] + non_gaussian
    return out


@torch.no_grad()
def critic_part(estimator: AVBAdaptiveContrast, x: torch.Tensor,
                q: PosteriorSample) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``avb_ac``: (E_q[T(x, z̃)] as an estimate of KL(law(z̃) ‖ N(0, I)), its lower bound
    Σ_d KL(law(z̃_d) ‖ N(0, 1))), each (B,), z̃ = L⁻¹(z − μ) normalised as the estimator does it
    (diagonal or full contrast, its variance floor). A contrast widened by s feeds T with z̃/s;
    KL(law(z̃) ‖ N(0, I)) is then E[T(z̃/s)] + E[½‖z̃‖²(1 − 1/s²)] − D log s (the closed-form rest)."""
    centred = q.z - q.mean
    if estimator.contrast == "full":
        z_tilde, _ = whiten(centred, q.covariance(), estimator.variance_floor)
    else:
        z_tilde = centred / (q.var + estimator.variance_floor).sqrt()
    s, d = estimator.contrast_scale, z_tilde.shape[-1]
    t = estimator.critic(*pair_with_x(x, z_tilde / s)).view(z_tilde.shape[:2])  # (n, B)
    shift = 0.5 * z_tilde.pow(2).sum(-1) * (1 - s**-2) - d * math.log(s)
    critic_kl = (t + shift).mean(0).double()
    per_coordinate = z_tilde.permute(1, 2, 0).double().cpu().numpy()
    marginal = torch.tensor([sum(marginal_kl_1d(c) for c in image) for image in per_coordinate],
                            dtype=torch.float64)
    return critic_kl.cpu(), marginal


def _summary(values: torch.Tensor, digits: int = 4) -> dict[str, Any]:
    v = values.double().cpu()
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "per_example": [round(float(a), digits) for a in v]}


@torch.no_grad()
def diagnose_posterior(model, x: torch.Tensor, samples: int = 4000, seed: int = 0,
                       estimator_name: str | None = None) -> dict[str, Any]:
    """The diagnostics of the module docstring for ``model`` (an
    :class:`~implicit_vae.model.ImplicitVAE`) on the inputs ``x`` (N, …), ``samples`` draws each,
    input i under seed ``seed + i``; on the model's device.

    Returns:
        ``{"examples", "samples", "posterior", "prior", "moments", "gaussian_family",
        "kl_parts", "kurtosis", "excess_kurtosis", "share_beyond_4", "correlation_eigenvalues",
        "posterior_std_mean", "charge"}``: each KL part as ``{"mean", "min", "max",
        "per_example"}`` (or None where the prior does not allow it); ``kurtosis`` ``{"mean",
        "max"}`` over inputs and coordinates with ``per_example`` means; ``charge`` None, or the
        estimator's ``estimate`` and, for ``avb_ac``, ``critic`` (``critic_kl``, ``marginal_kl``).

    Raises:
        ConfigError: for fewer than 2 samples, or fewer than 10·D where q's moments come from them.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ConfigError(f"samples must be an integer >= 2, got {samples!r}")
    posterior, prior, estimator = model.posterior, model.prior, model.estimator
    d = posterior.latent_dim
    family = isinstance(posterior, GAUSSIAN_FAMILIES)
    keys = ("correlation", "marginal_gaussian", "gaussian_fit", "non_gaussian", "lower_bound")
    parts: dict[str, list] = {k: [] for k in keys}
    kurt, beyond, charge, critic_kl, marginal_kl, stds = [], [], [], [], [], []
    eigenvalues, moments_exact, view = None, True, (-math.inf, None)
    charge_error = _charge_error(estimator)
    for i in range(x.shape[0]):
        x_i = x[i : i + 1]
        with seeded(seed + i, x.device):
            q = posterior.sample(x_i, samples)
            mean, cov, exact = gaussian_fit(q)
            if not exact and samples < 10 * d:
                raise ConfigError(f"samples must be >= 10·D = {10 * d} here: q's covariance comes "
                                  f"from its draws, got {samples}")
            moments_exact &= exact
            p = kl_parts(q.z, mean, cov, prior, gaussian_family=family)
            if charge_error is None:
                charge.append(float(estimator.estimate(x_i, q, prior)[0]))
                if isinstance(estimator, AVBAdaptiveContrast):
                    t, m = critic_part(estimator, x_i, q)
                    critic_kl.append(float(t[0]))
                    marginal_kl.append(float(m[0]))
        for k in keys:
            parts[k].append(None if p[k] is None else float(p[k][0]))
        white = p["white"][:, 0]  # (n, D)
        kurt.append(kurtosis(white).cpu())
        if float(kurt[-1].max()) > view[0]:  # the draws of the heaviest-tailed input, for the figure
            view = (float(kurt[-1].max()), white[:4000].float().cpu().numpy())
        beyond.append(float((white.abs().amax(-1) > 4).double().mean()))
        stds.append(float(cov[0].diagonal().sqrt().mean()))
        if eigenvalues is None:
            var = cov[0].diagonal()
            c = cov[0] / (var[:, None] * var[None, :]).sqrt()
            eigenvalues = [round(v, 4) for v in torch.linalg.eigvalsh(c).tolist()]
    kurt_t = torch.stack(kurt)  # (N, D)
    result: dict[str, Any] = {
        "examples": int(x.shape[0]), "samples": samples,
        "posterior": type(posterior).__name__, "prior": type(prior).__name__,
        "moments": "exact" if moments_exact else f"from the {samples} draws",
        "gaussian_family": family,
        "kl_parts": {k: None if v[0] is None else _summary(torch.tensor(v)) for k, v in parts.items()},
        "kurtosis": {"mean": float(kurt_t.mean()), "max": float(kurt_t.max()),
                     "per_example": [round(float(v), 4) for v in kurt_t.mean(1)]},
        "excess_kurtosis": {"mean": float(kurt_t.mean()) - 3, "max": float(kurt_t.max()) - 3},
        "share_beyond_4": float(np.mean(beyond)),
        "correlation_eigenvalues": eigenvalues,
        "posterior_std_mean": float(np.mean(stds)),
        "_white": view[1],  # (≤ 4000, D): not for JSON; diagnose_run pops it
    }
    result["charge"] = _charge(charge_error, charge, critic_kl, marginal_kl, parts, estimator,
                               estimator_name)
    return result


def _charge_error(estimator) -> str | None:
    if not getattr(estimator, "is_kl", False):
        return f"{type(estimator).__name__} estimates {estimator.divergence_name}, not a KL"
    return None


# An estimate counts as under-charging only when it is this many nats below the bound: an exact KL
# equals the bound up to rounding, and being "below" by 1e-7 nat is no finding.
UNDER_CHARGE_TOLERANCE = 1e-2


def _charge(error, charge, critic_kl, marginal_kl, parts, estimator, name) -> dict[str, Any]:
    out: dict[str, Any] = {"estimator": name or type(estimator).__name__,
                           "has_critic": bool(getattr(estimator, "critic", None) is not None)}
    if error is not None:
        return {**out, "unavailable": error}
    est = torch.tensor(charge, dtype=torch.float64)
    out["estimate"] = _summary(est)
    if parts["lower_bound"][0] is not None:
        lower = torch.tensor(parts["lower_bound"], dtype=torch.float64)
        out["estimate_minus_lower_bound"] = float((est - lower).mean())
        out["under_charged_fraction"] = float((est < lower - UNDER_CHARGE_TOLERANCE).double().mean())
    if isinstance(estimator, AdversarialAutoencoder):
        out["note"] = ("the AAE critic estimates the aggregate KL(q(z) ‖ p(z)), which is below "
                       "E_x KL(q(z|x) ‖ p(z)); an estimate under the per-input bound is expected")
    if critic_kl:
        t, m = torch.tensor(critic_kl), torch.tensor(marginal_kl)
        out["critic"] = {
            "contrast": estimator.contrast, "contrast_scale": estimator.contrast_scale,
            "critic_kl": _summary(t), "marginal_kl": _summary(m),
            "under_charged_fraction": float((t < m - UNDER_CHARGE_TOLERANCE).double().mean()),
        }
    return out


def critic_accuracy_tail(metrics_csv) -> float | None:
    """Mean ``train/critic_accuracy`` over the last 10 % of its logged rows (0.5: the critic cannot
    tell its two samples apart), or None without such rows or without the file."""
    from .figures import _get, _read_metrics

    try:
        rows = _get(_read_metrics(metrics_csv), "train/critic_accuracy")
    except (OSError, ValueError, IndexError):
        return None
    if rows is None or len(rows[1]) == 0:
        return None
    values = rows[1]
    return float(np.mean(values[-max(1, len(values) // 10) :]))


def diagnose_run(run_dir, *, examples: int = 20, samples: int = 4000, split: str = "val",
                 checkpoint: str = "last", out_dir=None, device="cpu", seed: int | None = None,
                 plot: bool = True) -> dict[str, Any]:
    """:func:`diagnose_posterior` of a trained run on the first ``examples`` inputs of its
    ``split``; writes ``diagnose.json`` and (``plot``) ``diagnose.png`` into ``out_dir`` (default:
    the run directory) and returns the JSON content. ``seed`` defaults to the run's ``train.seed``.

    Raises:
        ConfigError: for a missing run directory or a bad size; CheckpointError for a broken
        checkpoint; EvaluationError for an unknown or empty split.
    """
    from pathlib import Path

    from ..training.runs import load_run, write_json
    from .run import split_data

    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ConfigError(f"examples must be a positive integer, got {examples!r}")
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    cfg, model, data = load_run(run_dir, checkpoint)
    seed = cfg.train.seed if seed is None else seed
    x = split_data(data, split, cfg.train.seed)[:examples].to(device)
    model.to(device)
    result = diagnose_posterior(model, x, samples, seed, estimator_name=cfg.divergence.name)
    result = {"run_dir": str(run_dir), "checkpoint": checkpoint, "split": split, "seed": seed,
              "divergence": cfg.divergence.name, **result,
              "critic_accuracy_last_10pct": critic_accuracy_tail(run_dir / "metrics.csv")}
    white = result.pop("_white")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "diagnose.json", result)
    if plot:
        from .diagnose_figure import plot_diagnosis

        result["plot"] = str(plot_diagnosis(result, white, out / "diagnose.png"))
    return result
