"""The KL-accuracy benchmark's figure and markdown table."""

from __future__ import annotations

import os
from pathlib import Path

from ..divergences import ESTIMATORS

CLIP = 1000.0  # %: relative errors beyond ±CLIP are drawn at the edge as triangles


def _draw(ax, cells: list[dict], names: list[str], xs: dict, jitter) -> None:
    """One line per estimator through its relative errors (%) at the cells ``xs`` maps
    (case, dim, target_kl) -> x; values beyond ±CLIP as triangles at the edge, failures as x
    below it."""
    import numpy as np

    for i, name in enumerate(names):
        got = sorted(
            (
                (xs[key], c)
                for c in cells
                if c["estimator"] == name and (key := (c["case"], c["dim"], c["target_kl"])) in xs
            ),
            key=lambda t: t[0],
        )
        if not got:
            continue
        colour, marker = f"C{i % 10}", "osD^vP*Xph"[i % 10]
        px = np.array([jitter(x, i, len(names)) for x, _ in got])
        ys = np.array(
            [np.nan if c["relative_error"] is None else 100 * c["relative_error"] for _, c in got]
        )
        ax.plot(px, np.clip(ys, -CLIP, CLIP), marker=marker, color=colour, ms=4, lw=1.2, label=name)
        for x, y, (_, c) in zip(px, ys, got):
            if abs(y) > CLIP:
                ax.plot(x, np.sign(y) * CLIP, "^" if y > 0 else "v", color=colour, ms=8)
            elif c["status"].startswith("failed"):  # below the −1000 % line
                ax.plot(x, -1.3 * CLIP, "x", color=colour, ms=8, mew=2)
                ax.annotate(
                    "failed",
                    (x, -1.3 * CLIP),
                    xytext=(4, -2),
                    textcoords="offset points",
                    color=colour,
                    fontsize=7,
                )


def plot_kl_accuracy(result: dict, path: str | os.PathLike) -> Path:
    """Signed relative error (%) against dimension: one line per estimator, one panel per true KL
    (top row: KL estimators; bottom: the other divergences), a last panel for the non-Gaussian
    and sampler-only cases; a ±5 % band; a symlog y axis clipped at ±1000 %."""
    from ..evaluation.figures import new_figure, save_figure, styled

    cells = [c for c in result["cells"] if c["status"] == "ok" or c["status"].startswith("fail")]
    kls = sorted({c["target_kl"] for c in cells if c["case"] == "gaussian"})
    extra = sorted({(c["case"], c["dim"]) for c in cells if c["case"] != "gaussian"})
    names = [n for n in result["meta"]["estimators"] if any(c["estimator"] == n for c in cells)]
    rows = [
        r
        for r in (
            [n for n in names if ESTIMATORS[n].is_kl],
            [n for n in names if not ESTIMATORS[n].is_kl],
        )
        if r
    ]

    @styled
    def draw() -> Path:
        ncols = len(kls) + bool(extra)
        fig = new_figure(3.4 * ncols + 1.6, 3.4 * len(rows) + 0.5)
        axes = fig.subplots(len(rows), ncols, squeeze=False)
        for r, row in enumerate(rows):
            for k, kl in enumerate(kls):
                dims = sorted({c["dim"] for c in cells if c["target_kl"] == kl})
                _draw(
                    axes[r, k],
                    cells,
                    row,
                    {("gaussian", d, kl): d for d in dims},
                    lambda x, i, n: x * 2 ** (0.5 * (i - n / 2) / n),
                )
                axes[r, k].set(
                    xscale="log",
                    xlabel="dimension d",
                    title=f"Gaussian q, KL = {kl:g} nat{'s' * (kl != 1)}",
                )
                axes[r, k].set_xticks(dims, [str(d) for d in dims])
                axes[r, k].minorticks_off()
            if extra:
                ax = axes[r, -1]
                _draw(
                    ax,
                    cells,
                    row,
                    {(c, d, None): j for j, (c, d) in enumerate(extra)},
                    lambda x, i, n: x + 0.5 * (i - n / 2) / n,
                )
                for line in ax.get_lines():
                    line.set_linestyle("none")
                ax.set_xticks(
                    range(len(extra)), [f"{c.split('_')[0]}\nd={d}" for c, d in extra], fontsize=8
                )
                ax.set(
                    title="mixture, semi-implicit q (log p given); samplers only",
                    xlim=(-0.6, len(extra) - 0.4),
                )
                if r == 0 and any(c == "sampler_only" for c, _ in extra):
                    ax.text(
                        0.98,
                        0.02,
                        "samplers only: estimators that\nneed log p are not run",
                        transform=ax.transAxes,
                        ha="right",
                        va="bottom",
                        fontsize=7,
                        color="0.35",
                    )
            ticks = [-1000, -100, -10, 0, 10, 100, 1000]
            for ax in axes[r]:
                ax.set_yscale("symlog", linthresh=10)
                ax.set_ylim(-1.5 * CLIP, 1.5 * CLIP)
                ax.set_yticks(ticks, [f"{t:+d}%" if t else "0" for t in ticks])
                ax.axhspan(-5, 5, color="tab:green", alpha=0.2, lw=0)
                ax.axhline(0, color="0.3", lw=0.8)
                ax.grid(alpha=0.3)
            kind = "KL(q ‖ p) estimators" if ESTIMATORS[row[0]].is_kl else "other divergences"
            axes[r, 0].set_ylabel(f"{kind}\nrelative error (%)")
            handles = {h.get_label(): h for ax in axes[r][::-1] for h in ax.get_lines()}
            axes[r, -1].legend(
                [handles[n] for n in row if n in handles],
                [n for n in row if n in handles],
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                frameon=False,
            )
        fig.suptitle(
            "Estimator accuracy against known answers (green: ±5 %; triangles: beyond "
            "±1000 %; x: failed)"
        )
        return save_figure(fig, path)

    return draw()


def _table_entry(cell: dict | None) -> str:
    if cell is None:
        return ""
    if cell["relative_error"] is not None:
        pct = 100 * cell["relative_error"]
        return f"{pct:+.1f}%" if abs(pct) < 1e4 else f"{pct:+.0e}%"
    status = cell["status"]
    if status.startswith("failed"):
        return "fail"
    return status.split(":")[0] if status.startswith("needs") else "n/a"


def markdown_table(result: dict) -> str:
    """Relative errors as a markdown table: estimators × (KL, d) columns, then the extra cases.

    An entry is the signed relative error, "fail", "needs log p" (or "needs log q and log p") or
    "n/a" (not applicable, or no truth)."""
    by_key = {
        (c["estimator"], c["case"], c["target_kl"] or 0, c["dim"]): c for c in result["cells"]
    }
    cols = sorted({(case != "gaussian", case, kl, d) for _, case, kl, d in by_key})
    head = [
        f"{case.replace('_', '-')} d={d}" if extra else f"KL={kl:g} d={d}"
        for extra, case, kl, d in cols
    ]
    lines = ["| estimator | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in result["meta"]["estimators"]:
        row = [_table_entry(by_key.get((name, *col[1:]))) for col in cols]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)
