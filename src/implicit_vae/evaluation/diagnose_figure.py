"""The figure of ``implicit-vae diagnose``: where each input's KL lives, how heavy q's tails are."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .figures import new_figure, save_figure, styled

_PARTS = (("marginal_gaussian", "Gaussian fit: marginals", "C0"),
          ("correlation", "Gaussian fit: correlations", "C1"),
          ("non_gaussian", "non-Gaussian (marginal bound)", "C2"))


@styled
def plot_diagnosis(result: dict, white: np.ndarray, path) -> Path:
    """Three panels from :func:`~implicit_vae.evaluation.diagnose.diagnose_run`'s ``result``:
    (a) per input, the KL parts stacked (their sum is the lower bound on KL(q ‖ p)) and the run's
    estimate as dots; (b) per input, the whitened kurtosis (mean and max over coordinates) against a
    Gaussian's 3; (c) the whitened draws ``white`` (n, D) of the heaviest-tailed input, as a
    log-density histogram of all coordinates, against N(0, 1)."""
    fig = new_figure(13.0, 4.0)
    ax_kl, ax_k, ax_h = fig.subplots(1, 3)
    parts, n = result["kl_parts"], result["examples"]
    idx = np.arange(n)
    bottom = np.zeros(n)
    shown = [p for p in _PARTS if parts.get(p[0]) is not None]
    if parts.get("marginal_gaussian") is None and parts.get("gaussian_fit") is not None:
        shown = [("gaussian_fit", "Gaussian fit", "C0"), _PARTS[2]]
    for key, label, colour in shown:
        values = np.array(parts[key]["per_example"])
        ax_kl.bar(idx, values, bottom=bottom, color=colour, label=label, width=0.8)
        bottom = bottom + values
    charge = result.get("charge") or {}
    if "estimate" in charge:
        ax_kl.plot(idx, charge["estimate"]["per_example"], "ko", ms=4,
                   label=f"estimate ({charge['estimator']})")
    ax_kl.set(xlabel="input", ylabel="nats", title="KL(q(z|x) ‖ p(z)) by part")
    ax_kl.legend(fontsize=7, loc="best")
    kurt = np.array(result["kurtosis"]["per_example"])
    ax_k.plot(idx, kurt, "o-", color="C3", ms=3, label="mean over coordinates")
    ax_k.axhline(3.0, color="0.4", ls=":", lw=1, label="Gaussian (3)")
    ax_k.set(xlabel="input", ylabel="kurtosis of whitened z", title="tails")
    ax_k.legend(fontsize=7, loc="best")
    flat = white.reshape(-1)
    edge = max(5.0, float(np.quantile(np.abs(flat), 0.999)))
    bins = np.linspace(-edge, edge, 81)
    density, _ = np.histogram(flat, bins=bins, density=True)
    centres = 0.5 * (bins[1:] + bins[:-1])
    keep = density > 0
    ax_h.semilogy(centres[keep], density[keep], ".", color="C3", label="whitened draws")
    ax_h.semilogy(centres, np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi), color="0.3",
                  lw=1, label="N(0, 1)")
    ax_h.set(xlabel="w_d (all coordinates)", ylabel="density", title="heaviest-tailed input")
    ax_h.legend(fontsize=7, loc="best")
    fig.suptitle(f"{Path(result.get('run_dir', '')).name}: {result['posterior']}, "
                 f"{n} inputs × {result['samples']} draws")
    return save_figure(fig, path)
