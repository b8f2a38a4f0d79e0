"""Plot of AIS estimates against the number of annealing steps (a convergence diagnostic)."""

from __future__ import annotations

import os


def plot_ais_versus_steps(results: list[dict], path: str | os.PathLike,
                          reference: float | None = None, title: str | None = None) -> None:
    """Save a PNG of mean log p(x) ± s.e. against annealing steps (log x-axis).

    Args:
        results: the output of :func:`ais_versus_steps`.
        path: where to write the PNG.
        reference: an exact or trusted value drawn as a dashed line (quadrature, closed form).
        title: drawn above the plot (e.g. which examples the curve is on).
    """
    if not results:
        raise ValueError("results must not be empty")
    # The Agg canvas directly, not pyplot: no global backend switch, safe on headless machines.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.errorbar([r["steps"] for r in results], [r["log_px"] for r in results],
                yerr=[r["stderr"] for r in results], marker="o", capsize=3, label="AIS")
    if reference is not None:
        ax.axhline(float(reference), color="k", linestyle="--", label="reference")
    ax.set_xscale("log")
    ax.set_xlabel("annealing steps")
    ax.set_ylabel("mean log p(x) [nats]")
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
