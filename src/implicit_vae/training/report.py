"""The figures written into every run directory, and the image grids logged at each validation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..data import Dataset
from ..model import ImplicitVAE
from ..rng import forked_rng


def _scatter_points(data: Dataset) -> tuple[torch.Tensor, list[str]]:
    """The inputs whose posteriors are drawn: toy4's four points, else a few test examples."""
    if data.name == "toy4":
        points = torch.eye(data.data_dim)
        return points, [f"x = e{i + 1}" for i in range(data.data_dim)]
    x = data.test[:8] if data.test.shape[0] else data.val[:8]
    return x, [f"test example {i}" for i in range(x.shape[0])]


def _grey(data: Dataset):
    """The figures draw grey images: colour rows (C, H, W) are shown as their channel mean."""
    if data.image_shape is None or data.channels == 1:
        return (lambda x: x), ""
    c = data.channels
    return (lambda x: x.reshape(x.shape[0], c, -1).mean(1)), f" ({c} channels, shown as their mean)"


@torch.no_grad()
def write_plots(model: ImplicitVAE, data: Dataset, cfg: Config, run_dir: Path) -> list[Path]:
    """Reconstructions, prior samples, training curves and — for 2-D latents — the per-point posterior
    scatter (AVB Fig. 1 style); a latent map coloured by label where labels exist."""
    from ..evaluation import figures as plots

    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    model.eval()
    written = []
    with forked_rng(cfg.train.seed):
        x = (data.test if data.test.shape[0] else data.val)[:16]
        grey, suffix = _grey(data)
        written.append(
            plots.plot_reconstructions(
                grey(x), grey(model.reconstruct(x)), out / "reconstructions.png",
                image_shape=data.image_shape, title=f"Reconstructions{suffix}",
            )
        )
        written.append(
            plots.plot_samples(
                grey(model.generate(64)), out / "samples.png", image_shape=data.image_shape,
                title=f"Samples from the prior{suffix}",
            )
        )
        metrics = run_dir / "metrics.csv"
        if metrics.is_file():
            written.append(plots.plot_training_curves(metrics, out / "training_curves.png"))
        if model.latent_dim == 2:
            points, names = _scatter_points(data)
            z = model.posterior.sample(points, 500).z  # (500, P, 2)
            labels = torch.arange(points.shape[0]).expand(z.shape[0], -1)
            written.append(
                plots.plot_posterior_scatter(
                    z.reshape(-1, 2),
                    labels.reshape(-1),
                    out / "posterior_scatter.png",
                    prior_samples=model.prior.sample(2000),
                    label_names=names,
                    title=f"Posterior samples q(z|x) per input ({cfg.divergence.name})",
                )
            )
        labels = data.test_labels if data.test_labels is not None else None
        if labels is not None and data.name != "toy4":
            codes = model.posterior.sample(data.test, 1).z[0]
            written.append(plots.plot_latent_map(codes, labels, out / "latent_map.png"))
    model.train()
    return written


GRID_EXAMPLES = 8  # validation images in the reconstruction grid (a row of data over one of E[x|z])
GRID_SAMPLES = 16  # prior samples in the sample grid
_MIN_SIDE = 32  # images smaller than this are magnified (nearest neighbour), so 8x8 digits show


def image_grid(rows: torch.Tensor, event_shape: tuple[int, ...], ncol: int = 8) -> torch.Tensor:
    """Flattened images (N, C·H·W) as one (C, H', W') picture in [0, 1], ``ncol`` per row, with a
    one-pixel gap; images smaller than 32 pixels a side are magnified by a whole factor."""
    c, h, w = event_shape
    n = rows.shape[0]
    imgs = rows.detach().float().reshape(n, c, h, w).clamp(0.0, 1.0).cpu()
    scale = max(1, _MIN_SIDE // max(h, w))
    if scale > 1:
        imgs = imgs.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + 1) - 1, ncol * (w + 1) - 1)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[:, r * (h + 1) : r * (h + 1) + h, k * (w + 1) : k * (w + 1) + w] = imgs[i]
    return grid


@torch.no_grad()
def validation_images(
    model: ImplicitVAE, x_val: torch.Tensor, data: Dataset, seed: int
) -> dict[str, torch.Tensor]:
    """``images/val_reconstructions`` (8 validation images over their E[x|z]) and ``images/samples``
    (16 prior samples) as (C, H, W) grids, for image data; {} for other data. Drawn under a forked
    RNG, so training takes the same random numbers whether or not they are drawn."""
    if data.image_shape is None or x_val.shape[0] == 0:
        return {}
    shape = data.event_shape
    was_training = model.training
    model.eval()
    x = x_val[:GRID_EXAMPLES]
    with forked_rng(seed + 54_321):
        rec = model.reconstruct(x)
        samples = model.generate(GRID_SAMPLES)
    model.train(was_training)
    return {
        "images/val_reconstructions": image_grid(torch.cat([x, rec]), shape, ncol=x.shape[0]),
        "images/samples": image_grid(samples, shape),
    }


def flat_hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.lr": 0.0001, …}`` with values TensorBoard's hparams accept
    (numbers, strings, booleans; None as ``"none"``, lists as JSON text)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{name}."))
        elif value is None:
            out[name] = "none"
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=str)
    return out
