"""The figures written into every run directory."""

from __future__ import annotations

from pathlib import Path

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
