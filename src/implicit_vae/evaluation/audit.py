"""The KL audit (``implicit-vae audit``): every KL estimator measured on a run's own posteriors
against the best truth the posterior allows.

For each of N inputs x the truth KL(q(·|x) ‖ p) is:

- a **bracket**, for a semi-implicit posterior q(z|x) = ∫ N(z; μ(x, ε), σ²) q(ε) dε and a prior with
  a density. With z ~ q drawn from its generating ε₀, the mixture over ε₀ and K fresh draws,
  log q̂⁺_K(z) = log (1/(K+1)) Σ_{k=0..K} N(z; μ(x, ε_k), σ²), has E log q̂⁺_K ≥ log q(z) (SIVI's
  bound), and the mixture over K fresh draws only, log q̂⁻_K, has E log q̂⁻_K ≤ log q(z) (Jensen).
  So E_q[log q̂⁻_K − log p] ≤ KL ≤ E_q[log q̂⁺_K − log p], and both ends tighten as K grows;
  ``by_mixing`` shows the width at K = 1, 10, 100, … up to ``mixing``.
- **exact**, for a Gaussian posterior against a standard normal prior (closed form; width 0).
- a **Monte Carlo** mean of log q − log p, for another explicit posterior with a prior density.
- **unavailable** otherwise (an implicit posterior, an implicit prior): the estimators are then
  reported side by side, with, where ``evaluation_<split>.json`` holds AIS, what the gap between the
  ELBO estimate and AIS says about the KL.

Each estimator measures KL(q(·|x) ‖ p) between a sampler of q(·|x) and one of the run's prior by
:func:`~implicit_vae.divergences.estimate_divergence` (its critic, if any, trained afresh for
``steps`` steps per input), or — for estimators that read the mixing noise of a semi-implicit sample
(``sivi``) — on the posterior's own samples. The run's trained estimator is reported as
``run:<name>``. Everything runs on the CPU.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from ..divergences import ESTIMATORS, estimate_divergence, estimate_on_posterior
from ..divergences.analytic import AnalyticKL
from ..divergences.measure import samples_suffice
from ..posteriors import (
    FullCovarianceGaussianPosterior,
    GaussianPosterior,
    Posterior,
    SemiImplicitPosterior,
)
from ..posteriors.semi_implicit import log_mixture_density
from ..priors import Prior, StandardNormal
from ._common import seeded

DEFAULT_CRITIC = {"width": 128, "blocks": 2}  # the KL-accuracy benchmark's critic size
CONTRASTS = ("diagonal", "full")
_BRACKET_CHUNKS = 8  # batches of outer samples, each with its own fresh mixing draws


def _check_int(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


def _mixing_ladder(k: int) -> list[int]:
    return [m for m in (1, 10, 100, 1_000, 10_000, 100_000) if m < k] + [k]


# -- the truth -------------------------------------------------------------------------------------


@torch.no_grad()
def kl_bracket(
    posterior: SemiImplicitPosterior,
    prior: Prior,
    x: torch.Tensor,
    mixing: int = 1000,
    samples: int = 512,
    seed: int = 0,
    ladder: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Lower and upper estimates of KL(q(·|x) ‖ p) per example of ``x`` (B, …) for a semi-implicit q.

    ``samples`` draws z ~ q(·|x) per example, in :data:`_BRACKET_CHUNKS` batches, each batch with
    its own K fresh mixing draws (shared by its z and by both ends); the standard errors are those
    of the batch means, so they count the shared draws honestly. Returns ``{"lower", "upper", "lower_se",
    "upper_se"}`` as (B,) tensors for K = ``mixing`` and ``"by_mixing"``: ``{K: (lower, upper)}``
    for each K of ``ladder`` (default 1, 10, 100, … below ``mixing``, then ``mixing``).
    """
    _check_int("mixing", mixing, 1)
    _check_int("samples", samples, 2)
    ladder = sorted(set(ladder or _mixing_ladder(mixing)) | {mixing})
    chunks = min(_BRACKET_CHUNKS, samples)
    sizes = [samples // chunks + (i < samples % chunks) for i in range(chunks)]
    sums = {k: [] for k in ladder}  # per chunk: (2, B) means of upper and lower
    with seeded(seed):
        for n in sizes:
            q = posterior.sample_with_mixing(x, n, moments=False)
            log_p = prior.log_prob(q.z)  # (n, B)
            for k in ladder:
                # One set of fresh draws for both ends: their difference is then far less noisy.
                _, loc, scale = posterior.mixing_components(x, k)  # (k, B, D)
                upper = log_mixture_density(q.z, q.loc, q.scale, loc, scale) - log_p
                lower = log_mixture_density(q.z, None, None, loc, scale) - log_p
                sums[k].append(torch.stack([upper.mean(0), lower.mean(0)]))
    w = torch.tensor(sizes, dtype=x.dtype, device=x.device)[:, None, None] / samples
    out: dict[str, Any] = {"by_mixing": {}}
    for k in ladder:
        parts = torch.stack(sums[k])  # (chunks, 2, B)
        mean = (w * parts).sum(0)
        out["by_mixing"][k] = (mean[1], mean[0])
        if k == mixing:
            se = parts.std(0) / math.sqrt(chunks) if chunks > 1 else torch.zeros_like(mean)
            out.update(upper=mean[0], lower=mean[1], upper_se=se[0], lower_se=se[1])
    return out


@torch.no_grad()
def _exact_or_mc_truth(
    posterior: Posterior, prior: Prior, x: torch.Tensor, samples: int, seed: int
) -> dict[str, Any]:
    if isinstance(posterior, (GaussianPosterior, FullCovarianceGaussianPosterior)) and isinstance(
        prior, StandardNormal
    ):
        with seeded(seed):
            q = posterior.sample(x, 2)
        kl = AnalyticKL(posterior.event_shape, posterior.latent_dim).estimate(x, q, prior)
        return {
            "kind": "exact",
            "description": "closed-form KL of a Gaussian posterior against N(0, I) (width 0)",
            "lower": kl, "upper": kl, "lower_se": torch.zeros_like(kl),
            "upper_se": torch.zeros_like(kl),
        }  # fmt: skip
    with seeded(seed):
        q = posterior.sample(x, samples, moments=False)
    terms = posterior.log_prob(q.z, x) - prior.log_prob(q.z)  # (n, B)
    mean, se = terms.mean(0), terms.std(0) / math.sqrt(samples)
    return {
        "kind": "monte_carlo",
        "description": f"Monte Carlo mean of log q − log p over {samples} samples per input "
        "(both densities exact; the bracket is the point, its standard error beside it)",
        "lower": mean, "upper": mean, "lower_se": se, "upper_se": se,
    }  # fmt: skip


def _truth(posterior, prior, x, mixing, samples, seed) -> dict[str, Any]:
    if not prior.has_density:
        return {
            "kind": "unavailable",
            "reason": f"the prior ({type(prior).__name__}) has no density, so no KL can be computed "
            "exactly or bracketed",
        }
    if isinstance(posterior, SemiImplicitPosterior):
        b = kl_bracket(posterior, prior, x, mixing, samples, seed)
        return {
            "kind": "bracket",
            "description": f"semi-implicit bracket: the mixture over {mixing} fresh mixing draws "
            "(lower) and the same with the generating one included (upper), "
            f"{samples} samples of q per input",
            **{k: b[k] for k in ("lower", "upper", "lower_se", "upper_se")},
            "by_mixing": b["by_mixing"],
        }
    if posterior.has_density:
        return _exact_or_mc_truth(posterior, prior, x, samples, seed)
    return {
        "kind": "unavailable",
        "reason": f"{type(posterior).__name__} is implicit: no density, and no mixing structure to "
        "bracket log q(z|x) with; the estimators are reported side by side",
    }


# -- the estimators --------------------------------------------------------------------------------


def _specs(names: Sequence[str] | None) -> list[tuple[str, str, dict]]:
    """(key, estimator name, options) per requested estimator; avb_ac expands to each contrast."""
    names = list(ESTIMATORS) if names is None else list(names)
    specs = []
    for name in names:
        base, _, contrast = name.partition("[")
        contrast = contrast.rstrip("]")
        if base not in ESTIMATORS or (contrast and (base != "avb_ac" or contrast not in CONTRASTS)):
            known = [*ESTIMATORS, *(f"avb_ac[{c}]" for c in CONTRASTS)]
            raise ConfigError(f"estimator {name!r} is not known; expected some of {', '.join(known)}")
        if base == "avb_ac":
            for c in [contrast] if contrast else CONTRASTS:
                specs.append((f"avb_ac[{c}]", base, {"contrast": c}))
        else:
            specs.append((base, base, {}))
    return specs


def _skip_reason(name: str, posterior: Posterior, prior: Prior) -> str | None:
    cls = ESTIMATORS[name]
    if not cls.is_kl:
        return f"estimates {cls.divergence_name}, not KL(q ‖ p)"
    return cls.requirements_error(posterior, prior)


def _reads_mixing(name: str) -> bool:
    """True for estimators that need the posterior's own (semi-implicit) samples."""
    return name != "analytic" and not samples_suffice(ESTIMATORS[name])


def _options(name: str, extra: dict, critic: dict) -> dict:
    params = inspect.signature(ESTIMATORS[name].__init__).parameters
    options = {k: v for k, v in critic.items() if k in params} if "width" in params else {}
    return {**options, **extra}


def _measure(key, name, extra, posterior, prior, x, settings, progress) -> dict[str, Any]:
    cls = ESTIMATORS[name]
    has_critic = "width" in inspect.signature(cls.__init__).parameters
    options = _options(name, extra, settings["critic"])
    if name == "sivi":
        options.setdefault("mixing_samples", settings["sivi_mixing"])
    cell: dict[str, Any] = {
        "estimator": name, "options": options, "status": "ok",
        "steps": settings["steps"] if has_critic else 0,
        "batch_size": settings["batch_size"] if has_critic else None,
        "samples": settings["samples"], "per_example": [], "wall_time_s": 0.0,
    }  # fmt: skip
    start = time.perf_counter()
    try:
        for i in range(x.shape[0]):
            x_i, seed = x[i : i + 1], settings["seed"] + i
            if name == "analytic":
                with torch.no_grad(), seeded(seed):
                    q = posterior.sample(x_i, 2)
                    value = float(AnalyticKL(posterior.event_shape, posterior.latent_dim).estimate(
                        x_i, q, prior))  # fmt: skip
            elif _reads_mixing(name):
                value = estimate_on_posterior(
                    name, posterior, prior, x_i, steps=cell["steps"],
                    batch_size=settings["batch_size"], samples=settings["samples"],
                    seed=seed, lr=settings["lr"], **options,
                )  # fmt: skip
            else:
                def sample_q(n, x_i=x_i):
                    with torch.no_grad():
                        return posterior.sample(x_i, n, moments=False).z[:, 0]

                def log_q(z, x_i=x_i):
                    with torch.no_grad():
                        return posterior.log_prob(z.unsqueeze(1), x_i)[:, 0]

                def sample_p(n):
                    with torch.no_grad():
                        return prior.sample(n)

                dens = {"log_q": log_q} if posterior.has_density else {}
                if prior.has_density:
                    dens["log_p"] = prior.log_prob
                value = estimate_divergence(
                    name, sample_q, sample_p, steps=cell["steps"],
                    batch_size=settings["batch_size"], seed=seed, lr=settings["lr"],
                    eval_samples=settings["samples"], p_is_standard_normal=prior.is_standard_normal,
                    **dens, **options,
                )  # fmt: skip
            if not math.isfinite(value):
                raise ValueError(f"non-finite estimate ({value}) for input {i}")
            cell["per_example"].append(value)
    except Exception as err:  # noqa: BLE001 - an audit records a failure, it does not stop
        cell["status"] = f"failed: {type(err).__name__}: {err}"
    cell["wall_time_s"] = round(time.perf_counter() - start, 3)
    if progress:
        shown = f"{sum(cell['per_example']) / len(cell['per_example']):10.3f}" if (
            cell["status"] == "ok") else f"  {cell['status'][:70]}"  # fmt: skip
        print(f"{key:>18s} {shown}  {cell['wall_time_s']:7.1f}s", flush=True)
    return cell


@torch.no_grad()
def _run_estimator(model, x, samples, seed) -> list[float]:
    with seeded(seed):
        q = model.posterior.sample(x, samples)
        return model.estimator.estimate(x, q, model.prior).tolist()


def _summarise(cell: dict, truth: dict) -> dict:
    if cell["status"] != "ok" or not cell["per_example"]:
        return {**cell, "estimate": None, "relative_error": None}
    est = torch.tensor(cell["per_example"], dtype=torch.float64)
    cell = {**cell, "estimate": float(est.mean()), "relative_error": None}
    if truth["kind"] != "unavailable":
        per = {k: torch.tensor(v, dtype=torch.float64) for k, v in truth["per_example"].items()}
        lo, hi = per["lower"], per["upper"]
        mid = float((0.5 * (lo + hi)).mean())
        cell["bracket"] = [float(lo.mean()), float(hi.mean())]
        cell["relative_error"] = (cell["estimate"] - mid) / abs(mid) if mid else None
        inside = (est >= lo - 2 * per["lower_se"]) & (est <= hi + 2 * per["upper_se"])
        cell["inside_bracket"] = float(inside.double().mean())
    return cell


def _ais_check(run_dir: Path, split: str) -> dict[str, Any] | None:
    path = run_dir / f"evaluation_{split}.json"
    try:
        ev = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    elbo = ev.get("elbo_estimate", ev.get("elbo"))
    ais = ev.get("log_px_ais")
    if not isinstance(elbo, (int, float)) or not isinstance(ais, (int, float)):
        return None
    gap, se = elbo - ais, ev.get("log_px_ais_stderr") or 0.0
    if gap > 2 * se:
        statement = (
            f"ELBO estimate {elbo:.3f} is above AIS {ais:.3f} (± {se:.3f}): the KL is under-charged "
            f"by at least {gap:.3f} nats per example (as far as AIS is tight: AIS is a lower bound "
            "on log p(x))"
        )
    else:
        statement = (
            f"ELBO estimate {elbo:.3f} is not above AIS {ais:.3f} (± {se:.3f}) by more than its "
            "noise: no under-charged KL is visible from the likelihood"
        )
    return {"file": path.name, "elbo_estimate": elbo, "log_px_ais": ais, "log_px_ais_stderr": se,
            "examples": ev.get("examples"), "difference": gap, "statement": statement}  # fmt: skip


# -- the audit -------------------------------------------------------------------------------------


def audit_posteriors(
    posterior: Posterior,
    prior: Prior,
    x: torch.Tensor,
    *,
    mixing: int = 1000,
    truth_samples: int = 512,
    estimators: Sequence[str] | None = None,
    steps: int = 200,
    batch_size: int = 128,
    samples: int = 1000,
    lr: float = 1e-3,
    critic: dict | None = None,
    sivi_mixing: int = 100,
    seed: int = 0,
    model=None,
    model_estimator: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The KL audit of ``posterior`` against ``prior`` on the inputs ``x`` (N, …), on the CPU.

    Args:
        mixing: K, the fresh mixing draws of the semi-implicit bracket.
        truth_samples: samples of q per input for the bracket (or the Monte Carlo truth).
        estimators: names of :data:`~implicit_vae.divergences.ESTIMATORS` (``avb_ac`` is run with
            each contrast; ``avb_ac[full]`` names one); None: all of them, those that are not KLs
            or cannot run here listed under ``skipped`` with the reason.
        steps, batch_size, lr, critic: critic updates per input, samples of q and p per update,
            Adam's rate and the critic's ``width`` / ``blocks`` (default :data:`DEFAULT_CRITIC`).
        samples: samples of q (and p) per input for each final estimate.
        sivi_mixing: K of the ``sivi`` estimator.
        seed: seeds the truth and, with the input's index added, every estimate.
        model: the :class:`~implicit_vae.model.ImplicitVAE` whose trained estimator is reported as
            ``run:<name>`` (optional), ``<name>`` being ``model_estimator`` (default: its class).

    Returns:
        ``{"examples", "posterior", "prior", "truth", "estimators", "skipped", "settings",
        "wall_time_s"}``; ``truth`` holds ``kind`` (bracket, exact, monte_carlo, unavailable) and,
        where available, the mean ``lower`` / ``upper`` / ``midpoint`` / ``width``, per-example
        values and (bracket) ``by_mixing``; each estimator its mean ``estimate``, ``bracket``
        (mean lower, upper), ``relative_error`` against the mean midpoint, ``inside_bracket`` (the
        fraction of inputs whose estimate lies in their bracket widened by 2 standard errors of
        the truth's Monte Carlo), ``per_example``, ``wall_time_s`` and ``status``.

    Raises:
        ConfigError: for sizes below 1 (2 for sample counts) or an unknown estimator.
    """
    for name, value, least in (("examples", x.shape[0], 1), ("mixing", mixing, 1),
                               ("truth_samples", truth_samples, 2), ("steps", steps, 0),
                               ("batch_size", batch_size, 2), ("samples", samples, 2),
                               ("sivi_mixing", sivi_mixing, 1)):  # fmt: skip
        _check_int(name, value, least)
    specs = _specs(estimators)
    start = time.perf_counter()
    settings = {"mixing": mixing, "truth_samples": truth_samples, "steps": steps,
                "batch_size": batch_size, "samples": samples, "lr": lr,
                "critic": dict(DEFAULT_CRITIC if critic is None else critic),
                "sivi_mixing": sivi_mixing, "seed": seed, "device": "cpu"}  # fmt: skip
    posterior, prior, x = posterior.cpu().eval(), prior.cpu().eval(), x.cpu()
    truth = _truth(posterior, prior, x, mixing, truth_samples, seed)
    if truth["kind"] != "unavailable":
        lo, hi = truth.pop("lower"), truth.pop("upper")
        lo_se, hi_se = truth.pop("lower_se"), truth.pop("upper_se")
        truth.update(
            lower=float(lo.mean()), upper=float(hi.mean()),
            midpoint=float((0.5 * (lo + hi)).mean()), width=float((hi - lo).mean()),
            max_width=float((hi - lo).max()),
            lower_se=float(lo_se.pow(2).mean().sqrt() / math.sqrt(lo.numel())),
            upper_se=float(hi_se.pow(2).mean().sqrt() / math.sqrt(hi.numel())),
            per_example={"lower": lo.tolist(), "upper": hi.tolist(),
                         "lower_se": lo_se.tolist(), "upper_se": hi_se.tolist()},
        )  # fmt: skip
        if "by_mixing" in truth:
            truth["by_mixing"] = [
                {"mixing": k, "lower": float(a.mean()), "upper": float(b.mean()),
                 "width": float((b - a).mean())}
                for k, (a, b) in truth["by_mixing"].items()
            ]  # fmt: skip
    if progress:
        if truth["kind"] == "unavailable":
            print(f"truth: not available: {truth['reason']}", flush=True)
        else:
            print(f"truth ({truth['kind']}): [{truth['lower']:.3f}, {truth['upper']:.3f}], width "
                  f"{truth['width']:.3f}", flush=True)  # fmt: skip
    cells: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if model is not None:
        run_name = model_estimator or type(model.estimator).__name__
        t0 = time.perf_counter()
        try:
            values = _run_estimator(model.cpu().eval(), x, samples, seed)
            status = "ok"
        except Exception as err:  # noqa: BLE001
            values, status = [], f"failed: {type(err).__name__}: {err}"
        cells[f"run:{run_name}"] = {
            "estimator": run_name, "options": {}, "status": status, "trained": "with the run",
            "steps": 0, "batch_size": None, "samples": samples, "per_example": values,
            "wall_time_s": round(time.perf_counter() - t0, 3),
        }  # fmt: skip
        if progress and values:
            print(f"{'run:' + run_name:>18s} {sum(values) / len(values):10.3f}  (the run's own, "
                  "as trained)", flush=True)  # fmt: skip
    for key, name, extra in specs:
        reason = _skip_reason(name, posterior, prior)
        if reason is not None:
            skipped[key] = reason
            continue
        cells[key] = _measure(key, name, extra, posterior, prior, x, settings, progress)
    cells = {k: _summarise(c, truth) for k, c in cells.items()}
    return {
        "examples": int(x.shape[0]),
        "posterior": type(posterior).__name__,
        "prior": type(prior).__name__,
        "truth": truth,
        "estimators": cells,
        "skipped": skipped,
        "settings": settings,
        "wall_time_s": round(time.perf_counter() - start, 3),
    }


def audit_run(
    run_dir: str | Path,
    *,
    examples: int = 32,
    split: str = "test",
    checkpoint: str = "last",
    json_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    plot: bool = True,
    **options,
) -> dict[str, Any]:
    """Audit a trained run (see :func:`audit_posteriors`, whose options ``options`` passes on) on the
    first ``examples`` inputs of its ``split``; writes ``RUN/audit.json`` (or ``json_path``) and
    ``RUN/plots/audit.png`` (or ``plot_path``; none if not ``plot``). Returns the JSON content.

    Raises:
        ConfigError: for a missing run directory, ``examples`` < 1 or another bad size.
        CheckpointError: for a missing or broken checkpoint.
    """
    from ..training.runs import load_run, write_json
    from .run import split_data

    _check_int("examples", examples, 1)
    run_dir = Path(run_dir)
    path = Path(json_path) if json_path else run_dir / "audit.json"
    if run_dir.is_dir() and not path.parent.is_dir():
        raise ConfigError(
            f"--json: directory {str(path.parent)!r} does not exist; expected a file path in an "
            "existing directory"
        )
    cfg, model, data = load_run(run_dir, checkpoint)
    x = split_data(data, split, cfg.train.seed)[:examples]
    options.setdefault("sivi_mixing", cfg.divergence.mixing_samples)
    options.setdefault("seed", cfg.train.seed)
    result = audit_posteriors(model.posterior, model.prior, x, model=model,
                              model_estimator=cfg.divergence.name, **options)
    result = {"run_dir": str(run_dir), "checkpoint": checkpoint, "split": split,
              "run_divergence": cfg.divergence.name, **result}  # fmt: skip
    if result["truth"]["kind"] == "unavailable":
        check = _ais_check(run_dir, split)
        result["ais_check"] = check if check is not None else (
            f"no evaluation_{split}.json with AIS in the run directory; run implicit-vae evaluate "
            "for a likelihood check of the KL")  # fmt: skip
    write_json(path, result)
    if plot:
        result["plot"] = str(plot_audit(result, plot_path or run_dir / "plots" / "audit.png"))
    return result


# -- the figure ------------------------------------------------------------------------------------


def plot_audit(result: dict, path: str | Path) -> Path:
    """Left: each estimator's mean estimate against the mean truth bracket (shaded) and midpoint.
    Right: per input, estimate against the bracket midpoint (bracket as horizontal bars), y = x."""
    import numpy as np

    from .figures import new_figure, save_figure, styled

    truth = result["truth"]
    cells = {k: c for k, c in result["estimators"].items() if c["status"] == "ok"}
    has_truth = truth["kind"] != "unavailable"

    @styled
    def draw() -> Path:
        fig = new_figure(11.0 if has_truth else 6.5, 4.2)
        axes = fig.subplots(1, 2 if has_truth else 1, squeeze=False)[0]
        ax = axes[0]
        names = list(cells)
        ys = np.arange(len(names))
        if has_truth:
            ax.axvspan(truth["lower"], truth["upper"], color="0.85", label=f"truth ({truth['kind']})")
            ax.axvline(truth["midpoint"], color="0.4", lw=1)
        for i, name in enumerate(names):
            vals = np.array(cells[name]["per_example"])
            ax.plot(vals, np.full_like(vals, i) + 0.15, "|", color=f"C{i % 10}", alpha=0.5)
            ax.plot([vals.mean()], [i], "o", color=f"C{i % 10}")
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_xlabel("KL(q(z|x) ‖ p(z)), nats (dot: mean over inputs; ticks: each input)")
        run = Path(result["run_dir"]).name if "run_dir" in result else "KL audit"
        ax.set_title(f"{run}: {result['examples']} inputs, {result['posterior']}")
        if has_truth:
            ax.legend(loc="best")
            ax2 = axes[1]
            lo = np.array(truth["per_example"]["lower"])
            hi = np.array(truth["per_example"]["upper"])
            mid = 0.5 * (lo + hi)
            for i, name in enumerate(names):
                vals = np.array(cells[name]["per_example"])
                half = np.abs(hi - lo) / 2  # Monte Carlo noise can swap a very tight bracket
                ax2.errorbar(mid, vals, xerr=half, fmt="o", ms=3,
                             color=f"C{i % 10}", label=name, lw=0.8)  # fmt: skip
            span = [min(lo.min(), *(min(c["per_example"]) for c in cells.values())),
                    max(hi.max(), *(max(c["per_example"]) for c in cells.values()))]  # fmt: skip
            ax2.plot(span, span, color="0.4", lw=1)
            ax2.set_xlabel("truth: bracket midpoint per input (bar: the bracket)")
            ax2.set_ylabel("estimate")
            ax2.legend(fontsize=7, loc="best")
        return save_figure(fig, path)

    return draw()
