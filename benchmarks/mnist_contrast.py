"""Why adaptive contrast needs the full covariance on MNIST: the shape of z̃ and the critic's health.

Takes two finished ``avb_ac`` runs of ``mnist_avb_ac.yaml`` that differ only in
``divergence.contrast`` (``diagonal``, the AVB paper's, and ``full``) and, for the first
``--examples`` test images of ``benchmarks/results/mnist_test_binarized.pt`` (written by
``benchmarks/mnist.py``), draws ``--samples`` z ~ q(z|x) per image and measures:

- ``kl_from_correlations``: −½ log det C, C the correlation matrix of z given x. It is
  KL(N(0, C) ‖ N(0, I)), the part of KL(q̃ ‖ N(0, I)) that the *diagonal* contrast leaves to the
  critic, because it divides z − μ by the standard deviations only;
- ``kurtosis``: of each coordinate of the whitened z (3 for a Gaussian);
- ``correlation_eigenvalues``: of C for the first image (all 1 for uncorrelated coordinates);
- the critic's accuracy during training (``metrics.csv``; 0.5 = it cannot tell z̃ from N(0, I)).

Writes ``mnist_contrast.json`` and ``mnist_contrast.png`` to ``--out``. The runs come from

    implicit-vae train mnist_avb_ac --set divergence.contrast=diagonal --set train.run_dir=runs/ac_diag
    implicit-vae train mnist_avb_ac --set train.run_dir=runs/ac_full
    python benchmarks/mnist_contrast.py --diagonal runs/ac_diag --full runs/ac_full
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from implicit_vae.divergences.adaptive_contrast import AVBAdaptiveContrast
from implicit_vae.divergences.whitening import whiten
from implicit_vae.evaluation.figures import new_figure, save_figure, styled
from implicit_vae.training.runs import load_run, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def posterior_shape(run_dir: Path, x: torch.Tensor, samples: int, seed: int) -> dict:
    """Correlation KL, kurtosis and a 2-D view of z̃ for the run's posterior at each row of x."""
    cfg, model, _ = load_run(run_dir, with_data=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        q = model.posterior.sample(x, samples)
    centred = (q.z - q.mean).permute(1, 0, 2)  # (B, n, D)
    corr = torch.stack([torch.corrcoef(c.T) for c in centred])  # (B, D, D)
    floor = AVBAdaptiveContrast.variance_floor  # whitened as avb_ac's full contrast does it
    white = whiten(q.z - q.mean, q.covariance(), floor)[0].permute(1, 2, 0)  # (B, D, n)
    diagonal_view = centred / q.var.sqrt().unsqueeze(1)  # (B, n, D): the diagonal contrast's z̃
    kurtosis = (white - white.mean(-1, keepdim=True)).pow(4).mean(-1) / white.var(-1).pow(2)
    kl_corr = -0.5 * torch.logdet(corr.double())
    return {
        "run_dir": str(run_dir),
        "contrast": cfg.divergence.contrast,
        "steps": cfg.train.max_steps,
        "kl_from_correlations": {
            "mean": float(kl_corr.mean()),
            "min": float(kl_corr.min()),
            "max": float(kl_corr.max()),
        },
        "kurtosis": {"mean": float(kurtosis.mean()), "max": float(kurtosis.max())},
        "correlation_eigenvalues": [round(v, 4) for v in torch.linalg.eigvalsh(corr[0]).tolist()],
        "posterior_std_mean": float(q.var.sqrt().mean()),
        "_view": diagonal_view[0, :2000, :2].numpy(),
        "_accuracy": critic_accuracy(run_dir / "metrics.csv"),
    }


def critic_accuracy(metrics_csv: Path) -> list[tuple[int, float]]:
    """(step, train/critic_accuracy) rows of a run's metrics.csv."""
    import csv

    with metrics_csv.open() as f:
        return [
            (int(r["step"]), float(r["train/critic_accuracy"]))
            for r in csv.DictReader(f)
            if r.get("train/critic_accuracy")
        ]


@styled
def plot(results: dict[str, dict], path: Path) -> Path:
    fig = new_figure(11, 3.6)
    axes = fig.subplots(1, 3)
    colours = {"diagonal": "tab:red", "full": "tab:blue"}
    for name, r in results.items():
        steps, acc = np.array(r["_accuracy"]).T
        window = min(10, len(acc))  # a running mean over 10 logged steps
        smooth = np.convolve(acc, np.ones(window) / window, mode="valid")
        axes[0].plot(steps[window - 1 :], smooth, color=colours[name], label=f"{name} contrast")
    axes[0].axhline(0.5, color="0.5", ls=":", lw=1, label="chance")
    axes[0].set(xlabel="training step", ylabel="critic accuracy", ylim=(0.45, 1.01))
    axes[0].set_title("critic: z̃ against N(0, I)")
    axes[0].legend(frameon=False)
    theta = np.linspace(0, 2 * np.pi, 200)
    for ax, (name, r) in zip(axes[1:], results.items()):
        view = r["_view"]
        ax.scatter(view[:, 0], view[:, 1], s=2, alpha=0.3, color=colours[name], rasterized=True)
        for radius in (1, 2, 3):
            ax.plot(radius * np.cos(theta), radius * np.sin(theta), color="0.4", lw=0.6, ls="--")
        ax.set(xlim=(-5, 5), ylim=(-5, 5), aspect="equal", xlabel="z̃₁", ylabel="z̃₂")
        ax.set_title(
            f"{name}: (z − μ)/σ for one test image\n"
            f"KL from correlations {r['kl_from_correlations']['mean']:.1f} nats (mean)",
            fontsize=9,
        )
    fig.suptitle("MNIST avb_ac after training: diagonal vs full-covariance adaptive contrast")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diagonal", type=Path, required=True, help="run with contrast=diagonal")
    parser.add_argument("--full", type=Path, required=True, help="run with contrast=full")
    parser.add_argument("--test-tensor", type=Path, default=RESULTS / "mnist_test_binarized.pt")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for path in (args.diagonal, args.full, args.test_tensor):
        if not path.exists():
            print(f"benchmarks/mnist_contrast.py: error: {path} does not exist", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    x = torch.load(args.test_tensor, weights_only=True)[: args.examples].float()
    results = {
        name: posterior_shape(run, x, args.samples, args.seed)
        for name, run in (("diagonal", args.diagonal), ("full", args.full))
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "mnist_contrast.png")
    report = {
        "benchmark": "mnist_contrast",
        "command": " ".join(["python", "benchmarks/mnist_contrast.py", *(argv or sys.argv[1:])]),
        "examples": int(x.shape[0]),
        "samples_per_example": args.samples,
        "runs": {
            name: {k: v for k, v in r.items() if not k.startswith("_")}
            | {"final_critic_accuracy": float(np.mean([a for _, a in r["_accuracy"][-10:]]))}
            for name, r in results.items()
        },
    }
    write_json(args.out / "mnist_contrast.json", report)
    for name, r in report["runs"].items():
        print(
            f"{name:8s} KL from correlations {r['kl_from_correlations']['mean']:6.2f} nats, "
            f"kurtosis {r['kurtosis']['mean']:5.2f}, critic accuracy {r['final_critic_accuracy']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
