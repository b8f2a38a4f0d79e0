"""Smoke tests for implicit_vae.plots: every figure is a readable PNG; bad input fails loudly."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from implicit_vae.evaluation import figures as plots
from pngs import decoded_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)


def _check_png(path: Path) -> np.ndarray:
    path = Path(path)
    img = decoded_png(path, min_side=51)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    return img


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)
    return path


def _lightning_csv(path: Path, n: int = 60) -> Path:
    """Sparse rows as Lightning's CSVLogger writes them: train rows and val rows interleaved."""
    header = ["epoch", "step", "train/loss", "train/reconstruction", "train/kl",
              "train/critic_loss", "train/critic_accuracy", "val/loss", "val/reconstruction",
              "val/kl"]
    rows = []
    for s in range(n):
        rows.append({"epoch": s // 20, "step": s, "train/loss": 10 - s / 10,
                     "train/reconstruction": -9 + s / 10, "train/kl": 1 + RNG.random(),
                     "train/critic_loss": 0.7 - s / 200, "train/critic_accuracy": 0.5 + s / 200})
        if s % 20 == 19:
            rows.append({"epoch": s // 20, "step": s, "val/loss": 9 - s / 10,
                         "val/reconstruction": -8 + s / 10, "val/kl": 1.5})
    return _write_csv(path, header, rows)


def test_reconstructions_images_and_vectors(tmp_path):
    x = torch.rand(20, 1, 8, 8, requires_grad=True)  # grad-carrying tensors are fine
    img = _check_png(plots.plot_reconstructions(x, x * 0.9, tmp_path / "a.png", (8, 8), n=12))
    _check_png(plots.plot_reconstructions(x.reshape(20, 64).numpy(force=True)[:3], x[:3],
                                          tmp_path / "b.png", image_shape=(8, 8)))
    one_hot = np.eye(4)[RNG.integers(0, 4, 10)]
    out = plots.plot_reconstructions(one_hot, RNG.random((10, 4)), str(tmp_path / "c.png"))
    assert isinstance(out, Path) and out == tmp_path / "c.png"
    _check_png(out)
    assert img.shape[0] > 100  # two row pairs for 12 images


def test_samples_images_and_vectors(tmp_path):
    _check_png(plots.plot_samples(torch.rand(100, 64), tmp_path / "a.png", image_shape=(8, 8)))
    _check_png(plots.plot_samples(np.random.rand(5, 8, 8), tmp_path / "b.png", (8, 8)))
    _check_png(plots.plot_samples(torch.rand(30, 4), tmp_path / "c.png", title="Toy samples"))


def test_training_curves_sparse_csv(tmp_path):
    full = _check_png(plots.plot_training_curves(_lightning_csv(tmp_path / "m.csv"),
                                                 tmp_path / "full.png"))
    # Only the loss panel has data; empty cells and suffixed Lightning names are handled.
    rows = [{"step": s, "train/loss_step": 5 - s / 10 if s % 3 else "", "other": "x"}
            for s in range(40)]
    sparse = _write_csv(tmp_path / "s.csv", ["step", "train/loss_step", "other"], rows)
    one = _check_png(plots.plot_training_curves(sparse, tmp_path / "one.png"))
    assert one.shape[1] < full.shape[1] / 2  # panels without data are omitted
    empty = _write_csv(tmp_path / "e.csv", ["epoch", "step", "val/kl"], [{"step": 1}])
    _check_png(plots.plot_training_curves(empty, tmp_path / "empty.png"))  # placeholder figure
    nostep = _write_csv(tmp_path / "n.csv", ["epoch", "train/loss"], [{"epoch": 0}])
    with pytest.raises(ValueError, match="step"):
        plots.plot_training_curves(nostep, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_posterior_scatter(tmp_path):
    centers = torch.tensor([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]])
    labels = torch.arange(4).repeat_interleave(50)
    z = centers[labels] + 0.5 * torch.randn(200, 2)
    _check_png(plots.plot_posterior_scatter(z, labels, tmp_path / "a.png",
                                            prior_samples=torch.randn(300, 2),
                                            label_names=["1000", "0100", "0010", "0001"]))
    # (S, B, 2) samples with one label per data point; more than 10 labels -> no legend.
    _check_png(plots.plot_posterior_scatter(np.random.randn(5, 15, 2), np.arange(15),
                                            tmp_path / "b.png"))
    with pytest.raises(ValueError, match="2-D latent"):
        plots.plot_posterior_scatter(torch.randn(10, 3), torch.zeros(10), tmp_path / "c.png")
    with pytest.raises(ValueError):
        plots.plot_posterior_scatter(torch.randn(10, 2), torch.zeros(7), tmp_path / "d.png")


def test_latent_map(tmp_path):
    labels = RNG.integers(0, 10, 150)
    _check_png(plots.plot_latent_map(RNG.normal(size=(150, 2)), labels, tmp_path / "a.png"))
    _check_png(plots.plot_latent_map(torch.randn(150, 6), torch.tensor(labels),
                                     tmp_path / "b.png"))  # PCA to 2-D
    _check_png(plots.plot_latent_map(RNG.normal(size=(60, 2)), np.arange(60), tmp_path / "c.png"))
    with pytest.raises(ValueError):
        plots.plot_latent_map(torch.randn(10, 1), torch.zeros(10), tmp_path / "d.png")


def test_density_grid(tmp_path):
    xs = np.linspace(-3, 3, 40)
    gx, gy = np.meshgrid(xs, xs, indexing="xy")
    ld = -0.5 * (gx**2 + 4 * gy**2) - 100 * (gx < -2)
    ld[0, 0] = -np.inf
    _check_png(plots.plot_density_grid(torch.tensor(ld), (-3, 3, -3, 3), tmp_path / "a.png",
                                       "Exact log p(z|x)"))
    _check_png(plots.plot_density_grid(ld, (-3, 3, -3, 3), tmp_path / "b.png", "full range",
                                       dynamic_range=None))
    with pytest.raises(ValueError):
        plots.plot_density_grid(np.zeros(5), (0, 1, 0, 1), tmp_path / "c.png", "bad")


def test_save_figure_is_atomic(tmp_path):
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    out = plots.save_figure(fig, tmp_path / "sub" / "dir" / "f.png")  # parents are created
    _check_png(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.png"]
    before = out.read_bytes()

    class Boom(RuntimeError):
        pass

    def failing_savefig(f, **kwargs):
        f.write(PNG_MAGIC + b"half-written")
        raise Boom

    fig2 = Figure()
    fig2.savefig = failing_savefig
    with pytest.raises(Boom):
        plots.save_figure(fig2, out)
    assert out.read_bytes() == before  # the old PNG survives a crash mid-write
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.png"]


def test_style_does_not_leak(tmp_path):
    before = dict(matplotlib.rcParams)
    plots.plot_samples(torch.rand(4, 4), tmp_path / "a.png")
    assert dict(matplotlib.rcParams) == before
