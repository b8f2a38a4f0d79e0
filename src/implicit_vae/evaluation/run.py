"""Evaluate a trained run: every number labelled with what it is (``implicit-vae evaluate``).

- ``elbo_estimate``: reconstruction − the estimator's KL; with a critic this is an estimate, not a bound.
- ``elbo``: the same with the closed-form KL (Gaussian posterior, analytic estimator): a true bound.
- ``log_px_ais``: AIS (needs only p(z) and p(x|z)), a stochastic lower bound; ± its standard error.
- ``log_px_is``: importance sampling with q, for explicit posteriors only.
- ``log_px_iw_semi_implicit``: importance sampling with SIVI's mixture estimate of q (generating
  noise included), for semi-implicit posteriors: a stochastic lower bound; ± its standard error.
- ``log_px_exact``: 2-D quadrature, for 2-D latents only; ``log_px_exact_refinement_change`` is
  the largest per-example change from the half grid to the full one (its error check).
- ``reconstruction_error``: −E_q[log p(x|z)] in nats (lower is better), the sign training logs.
- ``ais_versus_steps``: AIS at fewer annealing steps (a convergence check) on the first
  ``examples`` of the evaluated examples (``subset`` says whether that is all of them); its last
  point is the headline AIS on those same examples.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..data import binarize
from ..model import ImplicitVAE
from ..posteriors import SemiImplicitPosterior
from ._common import EvaluationError, device_of, seeded
from .ais import ais_log_likelihood, ais_versus_steps
from .ais_curve import plot_ais_versus_steps
from .importance import importance_sampling_log_likelihood
from .quadrature import quadrature_log_likelihood_2d
from .semi_implicit import log_px_iw_semi_implicit

SPLITS = ("train", "val", "test")


@torch.no_grad()
def elbo_terms(
    model: ImplicitVAE, x: torch.Tensor, n_samples: int = 1, batch_size: int = 500, seed: int = 0
) -> dict[str, float]:
    """Mean reconstruction E_q log p(x|z), divergence estimate and their difference over ``x``
    (computed on the model's device)."""
    x = x.to(device_of(model, default=x.device))
    sums = []
    with seeded(seed, x.device):
        for chunk in x.split(batch_size):
            terms = model(chunk, n_samples)
            sums.append(torch.stack([terms.reconstruction.sum(), terms.kl.sum()]))
    chunks = torch.stack(sums).tolist()  # one host read
    rec, div = sum(c[0] for c in chunks), sum(c[1] for c in chunks)
    n = x.shape[0]
    return {"reconstruction": rec / n, "divergence": div / n, "elbo": (rec - div) / n}


def ais_initial(
    model: ImplicitVAE, x: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The Gaussian with q(z|x)'s moments (AVB's AIS start for adaptive-contrast models), or None."""
    if not model.posterior.has_moments:
        return None
    x = x.to(device_of(model, default=x.device))
    with torch.no_grad(), seeded(seed, x.device):  # the same start, whatever ran before
        sample = model.posterior.sample(x, 2)
    # A slightly wider start than q keeps AIS robust where q is narrower than the true posterior.
    return sample.mean, (sample.var + 1e-4).sqrt() * 1.5


def evaluate_model(
    model: ImplicitVAE,
    x: torch.Tensor,
    *,
    divergence: str,
    ais_chains: int = 8,
    ais_steps: int = 1000,
    ais_leapfrog_steps: int = 10,
    ais_batch_size: int = 128,
    is_samples: int = 1000,
    iw_mixing_samples: int = 100,
    seed: int = 0,
    ais_curve_path: Path | None = None,
    ais_curve_examples: int | None = 500,
    exact: bool = True,
    progress: bool = True,
    per_example: bool = False,
) -> dict[str, Any]:
    """Every likelihood number the model allows on data ``x`` (B, D), each labelled, computed on
    the device the model is on (``x`` is moved there; per-example tensors come back on it).

    Raises nothing for impossible estimates: each unavailable number is reported with the reason.
    With ``per_example`` the result also holds ``"per_example"``: ``{"log_px_ais": (B,),
    "log_px_ais_stderr": (B,), "log_px_is": (B,)}`` tensors (those available), so that two models
    evaluated on the same ``x`` can be compared image by image (a paired difference whose standard
    error over examples is the test set's own sampling error); it is not JSON, pop it before writing.
    A semi-implicit posterior also gets ``log_px_iw_semi_implicit`` (in ``per_example`` too), with
    ``is_samples`` importance samples and ``iw_mixing_samples`` fresh mixing draws per sample
    (independent across samples, so the standard error is honest; see
    :func:`~implicit_vae.evaluation.log_px_iw_semi_implicit`).

    With ``ais_curve_path`` the AIS-versus-steps curve is computed (at 10, 30, 100 and 300 steps
    below ``ais_steps``) on the first ``ais_curve_examples`` examples (None: all; it costs about
    half the headline AIS on the examples it uses), and its point at ``ais_steps`` is the headline
    AIS of those same examples; ``out["ais_versus_steps"]`` says on how many examples of how many.
    ``exact=False`` skips the 2-D quadrature (listed under ``skipped``). ``progress`` shows each
    long part's progress (a bar on a terminal, plain lines otherwise).
    """
    model.eval()
    x = x.to(device_of(model, default=x.device))
    out: dict[str, Any] = {"examples": int(x.shape[0])}
    terms = elbo_terms(model, x, seed=seed)
    est = model.estimator
    exact_kl = divergence == "analytic"
    name = "kl" if est.is_kl else est.divergence_name
    out["elbo" if exact_kl else "elbo_estimate"] = terms["elbo"]
    out["reconstruction_error"] = -terms["reconstruction"]
    out[f"{name}_{'exact' if exact_kl else 'estimate'}"] = terms["divergence"]
    unavailable: dict[str, str] = {}
    examples: dict[str, torch.Tensor] = {}
    if model.prior.has_density:
        start = time.perf_counter()
        initial = ais_initial(model, x, seed)
        ais = ais_log_likelihood(
            model.log_likelihood,
            model.prior,
            x,
            chains=ais_chains,
            steps=ais_steps,
            leapfrog_steps=ais_leapfrog_steps,
            batch_size=ais_batch_size,
            initial=initial,
            seed=seed,
            progress=progress,
        )
        out["log_px_ais"], out["log_px_ais_stderr"] = ais.mean, ais.mean_stderr
        examples["log_px_ais"], examples["log_px_ais_stderr"] = ais.log_px, ais.stderr
        out["ais"] = {
            "chains": ais_chains,
            "steps": ais_steps,
            "leapfrog_steps": ais_leapfrog_steps,
            "initial": "posterior moments" if initial is not None else "prior",
            "wall_time_s": round(time.perf_counter() - start, 2),
        }
        if ais_curve_path is not None:
            out["ais_versus_steps"] = _ais_curve(
                model, x, ais, ais_curve_path, ais_curve_examples, seed=seed, progress=progress,
                chains=ais_chains, steps=ais_steps, leapfrog_steps=ais_leapfrog_steps,
                batch_size=ais_batch_size,
            )  # fmt: skip
    else:
        unavailable["log_px_ais"] = (
            "the prior is implicit (no log p(z)); report elbo_estimate, "
            "reconstruction_error and sample-based metrics instead"
        )
    if model.posterior.has_density and model.prior.has_density:
        is_est = importance_sampling_log_likelihood(
            model.log_likelihood, model.prior, model.posterior, x, samples=is_samples, seed=seed,
            progress=progress,
        )  # fmt: skip
        out["log_px_is"], out["log_px_is_stderr"] = is_est.mean, is_est.mean_stderr
        examples["log_px_is"] = is_est.log_px
        out["is_samples"] = is_samples
    else:
        unavailable["log_px_is"] = "importance sampling needs log q(z|x) and log p(z); use AIS"
    if isinstance(model.posterior, SemiImplicitPosterior) and model.prior.has_density:
        start = time.perf_counter()
        iw = log_px_iw_semi_implicit(
            model.log_likelihood, model.prior, model.posterior, x, samples=is_samples,
            mixing_samples=iw_mixing_samples, seed=seed, progress=progress,
        )  # fmt: skip
        out["log_px_iw_semi_implicit"] = iw.mean
        out["log_px_iw_semi_implicit_stderr"] = iw.mean_stderr
        examples["log_px_iw_semi_implicit"] = iw.log_px
        out["iw_semi_implicit"] = {
            "samples": is_samples,
            "mixing_samples": iw_mixing_samples,
            "mixing": "independent per sample, generating noise included",
            "wall_time_s": round(time.perf_counter() - start, 2),
        }
    else:
        unavailable["log_px_iw_semi_implicit"] = (
            "the semi-implicit IW bound needs a semi-implicit posterior (model.posterior="
            "semi_implicit) and a prior with a density; use AIS"
        )
    skipped: dict[str, str] = {}
    if not (model.latent_dim == 2 and model.prior.has_density):
        unavailable["log_px_exact"] = "quadrature needs a 2-D latent and a prior with a density"
    elif not exact:
        skipped["log_px_exact"] = "exact=False (evaluate --no-exact)"
    else:
        quad = quadrature_log_likelihood_2d(
            model.log_likelihood, model.prior, x, progress=progress
        )
        out["log_px_exact"] = quad.mean
        out["log_px_exact_refinement_change"] = float(quad.refinement_change.max())
    out["unavailable"] = unavailable
    out["skipped"] = skipped
    if per_example:
        out["per_example"] = examples
    return out


CURVE_STEPS = (10, 30, 100, 300)


def _ais_curve(model: ImplicitVAE, x: torch.Tensor, headline, path: Path,
               examples: int | None, *, seed: int, progress: bool, steps: int,
               **ais_kwargs: Any) -> dict[str, Any]:
    """AIS at :data:`CURVE_STEPS` below ``steps`` on the first ``examples`` of ``x``, with the
    headline estimate (``headline``, per example) of those examples as the point at ``steps``;
    writes the plot to ``path``."""
    n = x.shape[0] if examples is None else min(int(examples), x.shape[0])
    subset = x[:n]
    grid = [s for s in CURVE_STEPS if s < steps]
    points = []
    if grid:
        points = ais_versus_steps(
            model.log_likelihood, model.prior, subset, grid, initial=ais_initial(model, subset, seed),
            seed=seed, progress=progress, **ais_kwargs,
        )  # fmt: skip
    err = headline.stderr[:n]
    points.append({
        "steps": steps,
        "log_px": headline.log_px[:n].mean().item(),
        "stderr": (err.pow(2).sum().sqrt() / n).item(),
    })  # fmt: skip
    plot_ais_versus_steps(points, path, title=curve_label(n, x.shape[0]))
    return {"examples": n, "of_examples": int(x.shape[0]), "subset": n < x.shape[0],
            "points": points, "plot": str(path)}  # fmt: skip


def curve_label(n: int, total: int) -> str:
    """``on all 360 examples`` or ``on the first 500 of 10000 examples (a subset)``."""
    if n >= total:
        return f"AIS vs annealing steps, on all {total} examples"
    return f"AIS vs annealing steps, on the first {n} of {total} examples (a subset)"


def split_data(data, split: str, seed: int) -> torch.Tensor:
    """The evaluation tensor of a split; dynamically binarised training data are binarised once."""
    if split not in SPLITS:
        raise EvaluationError(f"split {split!r} is not known; expected one of {', '.join(SPLITS)}")
    x = getattr(data, split)
    if x.shape[0] == 0:
        raise EvaluationError(f"the {split} split of this run is empty")
    if split == "train" and data.dynamic_binarize:
        x = binarize(x, torch.Generator().manual_seed(seed))
    return x
