"""Run the KL-accuracy benchmark: every estimator on every case, timed, written as JSON."""

from __future__ import annotations

import inspect
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..divergences import ESTIMATORS, estimate_divergence, estimate_on_posterior
from ..divergences.analytic import AnalyticKL
from ..divergences.measure import samples_suffice
from ..files import atomic_write_text
from ..posteriors import PosteriorSample
from .cases import (
    CRITIC,
    DEFAULT_OUT,
    MAX_SAMPLES,
    OPTIONS,
    SAMPLE_SIZE,
    Case,
    gaussian_case,
    mixture_case,
    monte_carlo_truths,
    sampler_only_case,
    semi_implicit_case,
    steps_for,
)
from .report import plot_kl_accuracy

_EXTRA_CASES = {
    "mixture": mixture_case,
    "semi_implicit": semi_implicit_case,
    "sampler_only": sampler_only_case,
}
CASE_KINDS = ("gaussian", *_EXTRA_CASES)


def _status_if_skipped(case: Case, name: str) -> str | None:
    cls = ESTIMATORS[name]
    if name == "analytic" and case.kind != "gaussian":
        return "not applicable: needs GaussianPosterior vs StandardNormal"
    if name != "analytic" and not samples_suffice(cls) and case.posterior is None:
        return "needs a semi-implicit posterior: not run"
    missing = [
        what
        for what, needed in (
            ("log q", cls.needs_posterior_density),
            ("log p", cls.needs_prior_density),
        )
        if needed and not case.densities_given
    ]
    return f"needs {' and '.join(missing)}: not run" if missing else None


def _options(case: Case, name: str, critic: dict) -> dict:
    params = inspect.signature(ESTIMATORS[name].__init__).parameters
    # Critic options (width, blocks, and waymarks where given) reach the estimators that take them.
    sizes = {k: v for k, v in critic.items() if k in params} if "width" in params else {}
    return {**sizes, **OPTIONS.get(name, {})}


def run_cell(
    case: Case,
    name: str,
    steps: int,
    batch_size: int,
    seed: int,
    samples: int,
    critic: dict | None = None,
) -> dict:
    """Estimate one divergence for one case; never raises (a failure is a status).

    ``critic`` (default :data:`CRITIC`) sizes the critic of every estimator that has one."""
    cls = ESTIMATORS[name]
    samples = min(samples, MAX_SAMPLES.get(name, samples))
    truth, se = case.truth.get(cls.divergence_name, (None, None))
    options = _options(case, name, CRITIC if critic is None else critic)
    has_critic = "width" in inspect.signature(cls.__init__).parameters
    cell = {
        "case": case.kind,
        "dim": case.dim,
        "target_kl": case.target_kl,
        "estimator": name,
        "divergence": cls.divergence_name,
        "estimate": None,
        "truth": truth,
        "truth_se": se,
        "relative_error": None,
        "wall_time_s": 0.0,
        "steps": steps if has_critic else 0,
        "batch_size": batch_size if has_critic else None,
        "samples": samples,
        "options": options,
        "status": _status_if_skipped(case, name),
    }
    if cell["status"] is not None:
        return {**cell, "steps": 0}
    start = time.perf_counter()
    try:
        if name == "analytic":  # the closed form, fed the known moments: the truth itself
            mean = torch.full((1, case.dim), case.info["mean_norm"] / math.sqrt(case.dim))
            moments = PosteriorSample(
                z=case.sample_q(2).unsqueeze(1),
                mean=mean,
                var=torch.full_like(mean, case.info["s"] ** 2),
            )
            value = float(AnalyticKL(1, case.dim).estimate(torch.zeros(1, 1), moments, None))
        elif name != "analytic" and not samples_suffice(cls):  # reads the mixing noise
            value = estimate_on_posterior(
                name, case.posterior, case.prior, torch.zeros(1, 1), steps=cell["steps"],
                batch_size=batch_size, samples=samples, seed=seed, **options,
            )  # fmt: skip
        else:
            dens = {"log_q": case.log_q, "log_p": case.log_p} if case.densities_given else {}
            value = estimate_divergence(
                name,
                case.sample_q,
                case.sample_p,
                steps=cell["steps"],
                batch_size=batch_size,
                seed=seed,
                eval_samples=samples,
                p_is_standard_normal=case.kind != "sampler_only",  # gaussian, mixture: p = N(0, I)
                **dens,
                **options,
            )
        if math.isfinite(value):
            cell["estimate"], cell["status"] = value, "ok"
            cell["relative_error"] = (value - truth) / abs(truth) if truth else None
        else:
            cell["status"] = f"failed: non-finite estimate ({value})"
    except Exception as err:  # noqa: BLE001 - a benchmark records failures, it does not stop
        cell["status"] = f"failed: {type(err).__name__}: {err}"
    cell["wall_time_s"] = time.perf_counter() - start
    return cell


def write_json(data: dict, path: Path) -> Path:
    """Write ``data`` as JSON atomically (temporary file in the same directory + ``os.replace``)."""
    return atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False))


def format_cell(cell: dict) -> str:
    """One readable line of the table printed while the benchmark runs."""

    def num(v, fmt="{:9.3f}"):
        return f"{'-':>9}" if v is None else fmt.format(v)

    kl = "" if cell["target_kl"] is None else f"{cell['target_kl']:g}"
    status = "" if cell["status"] == "ok" else f"  [{cell['status'][:60]}]"
    return (
        f"{cell['case']:>12} {cell['dim']:>4} {kl:>3} {cell['estimator']:>11} "
        f"{num(cell['estimate'])} {num(cell['truth'])} "
        f"{num(cell['relative_error'], '{:+9.1%}')} {cell['wall_time_s']:7.1f}s "
        f"{cell['steps']:>5}{status}"
    )


HEADER = (
    f"{'case':>12} {'d':>4} {'KL':>3} {'estimator':>11} {'estimate':>9} {'truth':>9} "
    f"{'rel.err':>9} {'time':>8} {'steps':>5}"
)


def kl_accuracy(
    estimators: Sequence[str] | None = None,
    dims: Sequence[int] = (2, 8, 32, 128),
    kls: Sequence[float] = (1, 10, 50),
    steps: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    quick: bool = False,
    out_dir: str | os.PathLike = DEFAULT_OUT,
    progress: bool = True,
    extra_cases: bool = True,
    samples: int | None = None,
    mc_samples: int | None = None,
    critic: dict | None = None,
    cases: Sequence[str] | None = None,
) -> dict:
    """Run the benchmark; write ``kl_accuracy.json`` (after every case) and ``kl_accuracy.png``.

    Args:
        estimators: names from :data:`~implicit_vae.divergences.ESTIMATORS`; None runs them all.
        dims, kls: the Gaussian grid (``quick`` replaces them with d ∈ {2, 8}, KL ∈ {1, 10}).
        steps: critic updates per cell; None uses :func:`steps_for` (more for larger d).
        batch_size: samples of q and of p per critic update.
        seed: seed of every estimate (critic initialisation and sampling).
        quick: a smoke run: the small grid, 200 steps, 2,000 samples, 10⁵ MC samples, extra cases
            at d = 2 only.
        out_dir: directory of the JSON file and the figure.
        progress: print the table as it is filled in.
        extra_cases: add the non-Gaussian cases (``mixture``, ``semi_implicit``, ``sampler_only``;
            d = 2, 8).
        cases: run only these kinds (of :data:`CASE_KINDS`); None: all.
        samples: samples of q (and p) for each final estimate; default 10,000 (2,000 if quick).
        mc_samples: Monte Carlo samples per truth; default min(10⁶, 2.5·10⁷ / d) (10⁵ if quick).
        critic: ``width`` and ``blocks`` of every critic; default :data:`CRITIC`, one size for all
            so that critic estimators differ only in their objective (and 3–5× cheaper on CPU
            than the library default 256 × 5 blocks). A ``waymarks`` entry reaches the
            logistic-critic estimators (``avb``, ``avb_ac``, ``aae``) only.

    Returns:
        The JSON content: ``meta`` and ``cells``, one dict per (case, estimator) with ``estimate``,
        ``truth`` (and ``truth_se``), ``relative_error``, ``wall_time_s``, ``steps`` and
        ``status`` ("ok", "failed: …", "needs log p: not run", "not applicable: …").

    Raises:
        ValueError: for an unknown estimator name or case kind.
    """
    kinds = list(CASE_KINDS if cases is None else cases)
    if set(kinds) - set(CASE_KINDS):
        bad = sorted(set(kinds) - set(CASE_KINDS))
        raise ValueError(f"unknown cases {bad}; expected some of {', '.join(CASE_KINDS)}")
    names = list(estimators or ESTIMATORS)
    unknown = sorted(set(names) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; expected some of {sorted(ESTIMATORS)}")
    if quick:
        dims, kls = [d for d in dims if d <= 8] or [2], [k for k in kls if k <= 10] or [1]
    samples = samples or (2_000 if quick else SAMPLE_SIZE)
    critic = dict(CRITIC if critic is None else critic)
    mc = mc_samples or (100_000 if quick else None)
    grid = [(gaussian_case, (d, k)) for d in dims for k in kls] if "gaussian" in kinds else []
    if extra_cases:
        grid += [
            (f, (d,))
            for kind, f in _EXTRA_CASES.items()
            if kind in kinds
            for d in ((2,) if quick else (2, 8))
        ]
    out_dir = Path(out_dir)
    result = {
        "meta": {
            "benchmark": "kl_accuracy",
            "complete": False,
            "quick": quick,
            "estimators": names,
            "cases": kinds,
            "dims": list(dims),
            "kls": list(kls),
            "batch_size": batch_size,
            "seed": seed,
            "samples": samples,
            "critic": critic,
            "options": OPTIONS,
            "steps": steps or "steps_for(d)",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "cells": [],
    }
    start = time.perf_counter()
    if progress:
        print(HEADER, flush=True)
    for build, args in grid:
        case = monte_carlo_truths(build(*args), n=mc)
        n_steps = steps if steps is not None else steps_for(case.dim, quick)
        for name in names:
            cell = run_cell(case, name, n_steps, batch_size, seed, samples, critic)
            result["cells"].append(cell)
            if progress:
                print(format_cell(cell), flush=True)
        result["meta"]["wall_time_s"] = time.perf_counter() - start
        write_json(result, out_dir / "kl_accuracy.json")
    result["meta"]["complete"] = True
    write_json(result, out_dir / "kl_accuracy.json")
    plot_kl_accuracy(result, out_dir / "kl_accuracy.png")
    return result
