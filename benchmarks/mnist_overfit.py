"""Training against validation loss of the MNIST benchmark's runs: how far each model overfits.

The MNIST benchmark trains on 8,100 images (the t10k-only split), so its models overfit long before
their step budget ends. This script reads the training logs that ``benchmarks/mnist.py`` copies next to
its report (``<results>/mnist_<model>_metrics.csv``) and summarises, per model:

* ``train_loss_last_1000_steps``: mean training loss (negative ELBO; for AVB models an estimate, the KL
  coming from the critic) over the last 1,000 updates, on dynamically binarised training batches;
* ``val_loss_final``, ``val_loss_min`` and ``val_loss_min_step``: the same loss on the 900 validation
  images (binarised once);
* ``generalisation_gap = val_loss_final − train_loss_last_1000_steps``, in nats per image.

    python benchmarks/mnist_overfit.py                       # benchmarks/results
    python benchmarks/mnist_overfit.py --results benchmarks/results/mnist_constant_lr "constant lr" \\
        --results benchmarks/results "cosine lr (shipped configs)"     # the README figure

Writes ``<out>/mnist_generalisation.json`` and ``<out>/mnist_generalisation.png`` (one panel per results
directory: smoothed training loss solid, validation loss dashed); ``<out>`` defaults to the first
results directory.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from implicit_vae.evaluation.figures import save_figure
from implicit_vae.training.runs import write_json

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("vae", "avb", "avb_ac", "vae_full")
LABELS = {"vae": "Gaussian VAE", "avb": "AVB", "avb_ac": "AVB-AC", "vae_full": "full-cov. VAE"}
COLOURS = {"vae": "C0", "avb": "C1", "avb_ac": "C2", "vae_full": "C3"}
TAIL_STEPS = 1000


class OverfitError(Exception):
    """Missing or unreadable logs; main() prints it in one line and exits with code 2."""


def read_curves(metrics_csv: Path) -> dict[str, np.ndarray]:
    """{'train_step', 'train_loss', 'val_step', 'val_loss'} from a Lightning metrics.csv."""
    train, val = [], []
    try:
        with metrics_csv.open(newline="") as handle:
            for row in csv.DictReader(handle):
                step = row.get("step")
                if row.get("train/loss"):
                    train.append((float(step), float(row["train/loss"])))
                if row.get("val/loss"):
                    val.append((float(step), float(row["val/loss"])))
    except (OSError, ValueError, TypeError) as err:
        raise OverfitError(f"cannot read {metrics_csv}: {err}") from err
    if not train or not val:
        raise OverfitError(f"{metrics_csv} has no train/loss or no val/loss rows; expected the "
                           "metrics.csv of a finished training run")
    t, v = np.array(sorted(train)), np.array(sorted(val))
    return {"train_step": t[:, 0], "train_loss": t[:, 1], "val_step": v[:, 0], "val_loss": v[:, 1]}


def summarise(curves: dict[str, np.ndarray], tail_steps: int = TAIL_STEPS) -> dict[str, float]:
    """The numbers of the module docstring for one run."""
    last = float(curves["train_step"][-1])
    tail = curves["train_step"] > last - tail_steps
    train_tail = float(curves["train_loss"][tail].mean())
    best = int(np.argmin(curves["val_loss"]))
    val_final = float(curves["val_loss"][-1])
    return {
        "steps": int(last),
        "train_loss_last_1000_steps": train_tail,
        "val_loss_final": val_final,
        "val_loss_min": float(curves["val_loss"][best]),
        "val_loss_min_step": int(curves["val_step"][best]),
        "generalisation_gap": val_final - train_tail,
    }


def _smooth(values: np.ndarray, window: int = 25) -> np.ndarray:
    """Running median over ``window`` logged points: a lone spike (one bad logging window of an
    adversarial run) stays a spike instead of becoming a plateau."""
    window = max(1, min(window, len(values)))
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def plot(panels: dict[str, dict[str, dict[str, np.ndarray]]], path: Path) -> Path:
    """One panel per labelled results directory; every model's training (solid) and validation
    (dashed) loss against the step, on a shared y-axis; training loss as a running median."""
    fig = Figure(figsize=(5.2 * len(panels), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (label, runs) in zip(axes, panels.items()):
        for name, curves in runs.items():
            colour = COLOURS.get(name, "C7")
            ax.plot(curves["train_step"], _smooth(curves["train_loss"]), color=colour, lw=1.4,
                    label=f"{LABELS.get(name, name)} train")
            ax.plot(curves["val_step"], curves["val_loss"], "--", color=colour, lw=1.4,
                    label=f"{LABELS.get(name, name)} validation")
        ax.set_title(label)
        ax.set_xlabel("model update")
        ax.set_ylim(top=125)
    axes[0].set_ylabel("loss: −ELBO (estimate for AVB), nats/image")
    axes[-1].legend(fontsize=8, ncol=1)
    fig.suptitle("MNIST, 8,100 training images: training vs validation loss")
    return save_figure(fig, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs=2, action="append", metavar=("DIR", "LABEL"),
                        help="a results directory of benchmarks/mnist.py and its panel title "
                        "(repeatable; default: benchmarks/results 'shipped configs')")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sources = [(Path(d), label) for d, label in (args.results or [(str(RESULTS), "shipped configs")])]
    out = args.out or sources[0][0]
    try:
        panels: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        report: dict[str, dict] = {}
        for directory, label in sources:
            found = {m: directory / f"mnist_{m}_metrics.csv" for m in MODELS}
            found = {m: p for m, p in found.items() if p.is_file()}
            if not found:
                raise OverfitError(f"{directory} holds no mnist_<model>_metrics.csv; expected the "
                                   "--out directory of a benchmarks/mnist.py run")
            panels[label] = {m: read_curves(p) for m, p in found.items()}
            report[label] = {"results": str(directory),
                             "models": {m: summarise(c) for m, c in panels[label].items()}}
    except OverfitError as err:
        print(f"benchmarks/mnist_overfit.py: error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "mnist_generalisation.json", report)
    plot(panels, out / "mnist_generalisation.png")
    for label, entry in report.items():
        for name, s in entry["models"].items():
            print(f"{label:>14s} {name:7s} train {s['train_loss_last_1000_steps']:7.2f}  "
                  f"val {s['val_loss_final']:7.2f} (min {s['val_loss_min']:.2f} at "
                  f"{s['val_loss_min_step']})  gap {s['generalisation_gap']:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
