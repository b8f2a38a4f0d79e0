"""Figures for VAEs with implicit posteriors: reconstructions, samples, training curves, latents.

Every function takes torch tensors or numpy arrays, draws on a :class:`matplotlib.figure.Figure`
(no pyplot, no global backend state), writes a PNG atomically (temporary file in the target
directory, then :func:`os.replace`) and returns the :class:`~pathlib.Path` written. Parent
directories are created as needed.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..files import atomic_write

DPI = 130
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "figure.titlesize": 12,
       "legend.fontsize": 9, "axes.spines.top": False, "axes.spines.right": False,
       "axes.grid": False, "image.interpolation": "nearest"}


def _np(a: Any) -> np.ndarray:
    """Torch tensor (any device, with grad) or array-like -> float numpy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().float().numpy()
    return np.asarray(a, dtype=float)


def styled(fn):
    """Run a plotting function under the shared style (a temporary rc context, no global change)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)
    return wrapper


def new_figure(w: float, h: float) -> Figure:
    return Figure(figsize=(w, h), layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (temp file + ``os.replace``); clear ``fig``."""
    try:
        with matplotlib.rc_context(_RC):
            return atomic_write(
                path, lambda f: fig.savefig(f, format="png", dpi=DPI, facecolor="white")
            )
    finally:
        fig.clear()


def _montage(imgs: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """(N, H, W) images -> one (rows*(H+pad)-pad, ncols*(W+pad)-pad) array, NaN in the gaps."""
    n, h, w = imgs.shape
    out = np.full((math.ceil(n / ncols) * (h + pad) - pad, ncols * (w + pad) - pad), np.nan)
    for i, im in enumerate(imgs):
        r, c = divmod(i, ncols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = im
    return out


def _show_gray(ax, img: np.ndarray) -> None:
    ax.imshow(img, cmap=matplotlib.colormaps["gray"].with_extremes(bad="white"), vmin=0, vmax=1)
    ax.set(xticks=[], yticks=[])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _heatmap(fig: Figure, ax, data: np.ndarray, lo: float, hi: float, ylabel: str, cbar=True):
    im = ax.imshow(data, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
    ax.set(xlabel="data dimension", ylabel=ylabel)
    for axis, size in ((ax.xaxis, data.shape[1]), (ax.yaxis, data.shape[0])):
        axis.set_major_locator(MaxNLocator(nbins=min(size, 16), integer=True))
    if cbar:
        fig.colorbar(im, ax=ax, shrink=0.9, label="value")


@styled
def plot_reconstructions(x, x_rec, path, image_shape: Sequence[int] | None = None, n: int = 16,
                         title: str = "Reconstructions") -> Path:
    """The first ``n`` data points next to their reconstructions.

    Args:
        x: data, shape (N, H*W) or (N, ..., H, W) for images, (N, D) for vectors.
        x_rec: reconstructions (e.g. E[x|z]), same shape as ``x``.
        path: PNG to write.
        image_shape: (H, W) draws greyscale images in [0, 1]: a row of up to 8 originals above
            the row of their reconstructions, wrapping into several row pairs. None draws two
            heatmaps side by side (data | reconstruction; rows = examples) sharing a colour bar.
        n: number of examples shown.
        title: figure title.
    """
    x, x_rec = _np(x), _np(x_rec)
    n = max(1, min(n, len(x), len(x_rec)))
    x, x_rec = x[:n].reshape(n, -1), x_rec[:n].reshape(n, -1)
    if image_shape is None:
        lo, hi = min(x.min(), x_rec.min()), max(x.max(), x_rec.max())
        fig = new_figure(min(12.0, 4 + 0.5 * x.shape[1]), min(9.0, 2 + 0.25 * n))
        ax1, ax2 = fig.subplots(1, 2, sharey=True)
        _heatmap(fig, ax1, x, lo, hi, "example", cbar=False)
        _heatmap(fig, ax2, x_rec, lo, hi, "")
        ax1.set_title("data")
        ax2.set_title("reconstruction")
    else:
        h, w = image_shape
        cols = min(n, 8)
        pairs = math.ceil(n / cols)
        scale = 0.9 / max(h, w)
        fig = new_figure(1.0 + cols * w * scale, pairs * (2 * h * scale + 0.25) + 0.5)
        for p, ax in enumerate(np.atleast_1d(fig.subplots(pairs, 1))):
            sl = slice(p * cols, (p + 1) * cols)
            rows = [_montage(v[sl].reshape(-1, h, w), cols) for v in (x, x_rec)]
            _show_gray(ax, np.vstack([rows[0], np.full((1, rows[0].shape[1]), np.nan), rows[1]]))
            ax.set_yticks([(h - 1) / 2, h + 1 + (h - 1) / 2], ["data", "recon."])
    fig.suptitle(title)
    return save_figure(fig, path)


@styled
def plot_samples(samples, path, image_shape: Sequence[int] | None = None,
                 title: str = "Samples from the prior") -> Path:
    """The first (up to) 64 samples: an 8-column image grid, or a heatmap for vectors.

    Args:
        samples: shape (N, H*W) or (N, ..., H, W) for images, (N, D) for vectors.
        path: PNG to write.
        image_shape: (H, W) for greyscale images in [0, 1]; None for a heatmap (rows = samples).
        title: figure title.
    """
    s = _np(samples)
    s = s.reshape(len(s), -1)[:64]
    n = len(s)
    if image_shape is None:
        fig = new_figure(min(10.0, 3 + 0.45 * s.shape[1]), min(9.0, 1.5 + 0.2 * n))
        _heatmap(fig, fig.subplots(), s, s.min(), s.max(), "sample")
    else:
        h, w = image_shape
        cols = min(n, 8)
        scale = 0.8 / max(h, w)
        fig = new_figure(0.6 + cols * w * scale, 0.6 + math.ceil(n / cols) * h * scale)
        _show_gray(fig.subplots(), _montage(s.reshape(n, h, w), cols))
    fig.suptitle(title)
    return save_figure(fig, path)


def _cell(c: str | None) -> float:
    try:
        return float(c)
    except (TypeError, ValueError):
        return math.nan


def _read_metrics(metrics_csv) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sparse CSV -> {column: (steps, values)}; empty, non-numeric, non-finite cells dropped."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0] if rows else []
    if "step" not in head:
        raise ValueError(f"{metrics_csv} has no 'step' column")
    k = len(head)
    a = np.array([[_cell(c) for c in (r + [""] * k)[:k]] for r in rows[1:]]).reshape(-1, k)
    step, out = a[:, head.index("step")], {}
    for j, name in enumerate(head):
        m = np.isfinite(a[:, j]) & np.isfinite(step)
        if name != "step" and m.any():
            order = np.argsort(step[m], kind="stable")
            out[name] = (step[m][order], a[m, j][order])
    for split in ("train", "val"):  # metrics.csv of runs before reconstruction_error: its sign
        old, new = f"{split}/reconstruction", f"{split}/reconstruction_error"
        if old in out and new not in out:
            steps, values = out.pop(old)
            out[new] = (steps, -values)
    return out


def _ema(v: np.ndarray) -> np.ndarray:
    """Debiased exponential moving average with span ~ len/25 (between 1 and 50)."""
    alpha = 2.0 / (min(50.0, max(1.0, len(v) / 25)) + 1)
    out, acc, norm = np.empty_like(v), 0.0, 0.0
    for i, x in enumerate(v):
        acc, norm = (1 - alpha) * acc + alpha * x, (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def _get(d: dict, key: str):
    return d.get(key) or d.get(f"{key}_step") or d.get(f"{key}_epoch")


def _curve(ax, d: dict, key: str, color: str, label: str) -> list[Line2D]:
    """Draw one metric (train: raw faint + EMA; val: dashed with markers); return legend handles."""
    if (got := _get(d, key)) is None:
        return []
    st, v = got
    if key.startswith("val/") or len(v) < 10:
        ls, mk = ("--", "o") if key.startswith("val/") else ("-", ".")
        return ax.plot(st, v, ls, marker=mk, ms=3, color=color, label=label)
    ax.plot(st, v, color=color, alpha=0.25, lw=0.8)
    return ax.plot(st, _ema(v), color=color, lw=1.6, label=label)


# (panel title, left-axis metric, right (twin) axis metric); metric = (name, colour, axis label).
_PANELS = (("Loss (negative ELBO estimate)", ("loss", "C0", "loss"), None),
           ("Reconstruction and KL", ("reconstruction_error", "C0", "reconstruction error −log p(x|z)"),
            ("kl", "C3", "KL estimate")),
           ("Critic", ("critic_loss", "C2", "critic loss"),
            ("critic_accuracy", "C4", "critic accuracy")))


@styled
def plot_training_curves(metrics_csv, path) -> Path:
    """Loss, reconstruction/KL and critic panels from a (sparse) Lightning ``metrics.csv``.

    Args:
        metrics_csv: CSV with a ``step`` column and any of ``train/loss``, ``val/loss``,
            ``train/reconstruction_error``, ``val/reconstruction_error`` (−E_q log p(x|z); the
            ``*/reconstruction`` = E_q log p(x|z) of older runs is read with its sign flipped),
            ``train/kl``, ``val/kl``,
            ``train/critic_loss``, ``train/critic_accuracy`` (``_step``/``_epoch`` suffixed
            variants are accepted). Empty cells are skipped; panels without data are omitted
            (no data at all gives a "no metrics logged yet" placeholder figure).
        path: PNG to write.

    Raises:
        ValueError: if the CSV has no ``step`` column.
    """
    d = _read_metrics(metrics_csv)
    panels = [p for p in _PANELS if any(_get(d, f"{s}/{m[0]}") is not None
                                        for m in p[1:] if m for s in ("train", "val"))]
    fig = new_figure(5.0 * max(1, len(panels)), 4.4)
    if not panels:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no metrics logged yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    axes = np.atleast_1d(fig.subplots(1, len(panels))) if panels else []
    for ax, (ptitle, left, right) in zip(axes, panels, strict=True):
        ax.set(title=ptitle, xlabel="training step")
        ax.grid(alpha=0.3)
        hs: list = []
        for a, (name, col, lab) in ((ax, left), (ax.twinx(), right)) if right else ((ax, left),):
            for split in ("train", "val"):
                hs += _curve(a, d, f"{split}/{name}", col, f"{lab} ({split})")
            a.set_ylabel(lab, color=col if right else "black")
            if right:
                a.tick_params(axis="y", colors=col)
                a.spines["right"].set_visible(True)
            if name == "critic_accuracy":
                hs.append(a.axhline(0.5, color="grey", ls=":", lw=1.2, label="chance (0.5)"))
                a.set_ylim(-0.02, 1.02)
        ax.legend(handles=hs, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2,
                  frameon=False)
    fig.suptitle("Training curves")
    return save_figure(fig, path)


def _scatter_by_label(ax, z: np.ndarray, labels: np.ndarray, names, s: float, alpha: float):
    """One colour per label (tab10, or tab20 cycled); a legend right of the axes if <= 10."""
    uniq = np.unique(labels)
    cmap = matplotlib.colormaps["tab10" if len(uniq) <= 10 else "tab20"]
    for i, lab in enumerate(uniq):
        m, col = labels == lab, cmap(i % cmap.N)
        key = lab.item() if hasattr(lab, "item") else lab
        text = str(names[key]) if names is not None else str(key)
        ax.scatter(z[m, 0], z[m, 1], s=s, alpha=alpha, color=col, lw=0, label=text)
    if len(uniq) <= 10:
        leg = ax.legend(title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        markerscale=max(1.0, 30 / s) ** 0.5, frameon=False)
        for h in leg.legend_handles:
            h.set_alpha(1.0)


@styled
def plot_posterior_scatter(z, labels, path, title: str = "Posterior samples q(z|x)",
                           prior_samples=None,
                           label_names: Sequence[str] | Mapping[Any, str] | None = None) -> Path:
    """AVB-paper-style scatter of posterior samples of a 2-D latent, one colour per data point.

    Args:
        z: samples, shape (N, 2); or (S, B, 2) with ``labels`` of shape (B,) (broadcast over S).
        labels: shape (N,), integer id of the data point (or class) each sample came from.
        path: PNG to write.
        title: figure title.
        prior_samples: optional (M, 2) samples of p(z), drawn faint grey underneath.
        label_names: optional names indexed by label (sequence or mapping) for the legend.

    Raises:
        ValueError: if the latent is not 2-D or shapes do not match.
    """
    z, labels = _np(z), np.asarray(_np(labels)).astype(int).reshape(-1)
    if z.shape[-1] != 2:
        raise ValueError(f"plot_posterior_scatter needs a 2-D latent, got shape {z.shape}")
    if z.ndim == 3 and z.shape[1] == len(labels):
        labels = np.broadcast_to(labels, z.shape[:2]).reshape(-1)
    z = z.reshape(-1, 2)
    if len(z) != len(labels):
        raise ValueError(f"{len(z)} samples but {len(labels)} labels")
    fig = new_figure(6.2, 5.0)
    ax = fig.subplots()
    if prior_samples is not None:
        p = _np(prior_samples).reshape(-1, 2)
        ax.scatter(p[:, 0], p[:, 1], s=3, color="0.6", alpha=0.25, lw=0, label="_prior")
    _scatter_by_label(ax, z, labels, label_names, s=5, alpha=0.45)
    ax.set(title=title + ("  (grey: prior samples)" if prior_samples is not None else ""),
           xlabel="$z_1$", ylabel="$z_2$", aspect="equal")
    ax.grid(alpha=0.25)
    return save_figure(fig, path)


@styled
def plot_latent_map(z, labels, path, title: str = "Latent codes coloured by label") -> Path:
    """One code per example (e.g. posterior mean), coloured by class label.

    Args:
        z: codes, shape (N, D) with D >= 2; D > 2 is projected to 2-D by PCA (said in the title).
        labels: shape (N,), integer class labels (legend if <= 10 classes, else colour bar).
        path: PNG to write.
        title: figure title.

    Raises:
        ValueError: if D < 2 or shapes do not match.
    """
    z, labels = _np(z), _np(labels).reshape(-1)
    if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(labels):
        raise ValueError(f"need z (N, D>=2) and labels (N,), got {z.shape} and {labels.shape}")
    xl, yl = "$z_1$", "$z_2$"
    if z.shape[1] > 2:
        from sklearn.decomposition import PCA

        title, xl, yl = f"{title} (PCA of {z.shape[1]}-D latent to 2-D)", "PC 1", "PC 2"
        z = PCA(n_components=2).fit_transform(z)
    fig = new_figure(6.2, 5.0)
    ax = fig.subplots()
    s = float(np.clip(8000 / len(z), 4, 30))
    if len(np.unique(labels)) <= 10:
        _scatter_by_label(ax, z, labels.astype(int), None, s=s, alpha=0.6)
    else:
        sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="viridis", s=s, alpha=0.6, lw=0)
        fig.colorbar(sc, ax=ax, label="label")
    ax.set(title=title, xlabel=xl, ylabel=yl, aspect="equal")
    ax.grid(alpha=0.25)
    return save_figure(fig, path)


@styled
def plot_density_grid(log_density, extent: Sequence[float], path, title: str,
                      cbar_label: str = "log density", dynamic_range: float | None = 25.0) -> Path:
    """Heat map of values on a regular 2-D grid (e.g. the exact toy posterior log-density).

    Args:
        log_density: shape (H, W); entry [i, j] is the value at (x_j, y_i): rows run along y
            from ``ymin`` (bottom) up to ``ymax``, as from ``meshgrid(xs, ys, indexing="xy")``.
        extent: (xmin, xmax, ymin, ymax) of the grid.
        path: PNG to write.
        title: figure title.
        cbar_label: colour bar label.
        dynamic_range: the colour scale spans at most [max - dynamic_range, max], so far tails of
            a log-density do not wash out the mode; None shows the full range. Non-finite cells
            (``-inf``) are drawn light grey.
    """
    g = np.ma.masked_invalid(_np(log_density))
    if g.ndim != 2:
        raise ValueError(f"log_density must be a 2-D grid, got shape {g.shape}")
    lo = None if dynamic_range is None or g.count() == 0 else max(g.min(), g.max() - dynamic_range)
    fig = new_figure(5.6, 4.6)
    ax = fig.subplots()
    for spine in ax.spines.values():
        spine.set_visible(True)
    im = ax.imshow(g, origin="lower", extent=tuple(extent), aspect="equal", vmin=lo,
                   cmap=matplotlib.colormaps["magma"].with_extremes(bad="0.85"),
                   interpolation="bilinear")
    clipped = lo is not None and lo > g.min()
    fig.colorbar(im, ax=ax, shrink=0.9, label=cbar_label, extend="min" if clipped else "neither")
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$")
    return save_figure(fig, path)
