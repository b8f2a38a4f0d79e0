"""The shape of trained MNIST ``avb_ac`` posteriors: correlations, tails and the critic's accuracy.

For each run given, draws ``--samples`` z ~ q(z|x) for each of the first ``--examples`` test images of
``benchmarks/results/mnist_test_binarized.pt`` and reports (with ``posterior_shape`` of
``benchmarks/mnist_contrast.py``): the correlation part of the KL, −½ log det C; the kurtosis of the
coordinates of z whitened by q's full covariance (3 for a Gaussian; heavier tails are what the
Gaussian contrast credits as entropy and the critic has to charge); and the critic's accuracy over the
last 10 % of training.

    python benchmarks/mnist_posterior_shape.py --run seed0 RUN0 --run seed1 RUN1 --run seed2 RUN2

Writes ``<out>/mnist_posterior_shape.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

from implicit_vae.runs import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _load_contrast_module():
    path = Path(__file__).resolve().parent / "mnist_contrast.py"
    spec = importlib.util.spec_from_file_location("mnist_contrast", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


posterior_shape = _load_contrast_module().posterior_shape  # one measurement for both scripts


def shape_summary(run_dir: Path, x: torch.Tensor, samples: int, seed: int) -> dict:
    """posterior_shape's numbers for one run, plus its final critic accuracy (last 10 % of logs;
    None for a run without a critic)."""
    shape = posterior_shape(run_dir, x, samples, seed)
    accuracy = [a for _, a in shape.pop("_accuracy")]
    shape.pop("_view")
    tail = accuracy[-max(1, len(accuracy) // 10) :]
    shape["critic_accuracy_last_10pct"] = sum(tail) / len(tail) if tail else None
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=2, action="append", required=True, metavar=("LABEL", "DIR"))
    parser.add_argument("--test-tensor", type=Path, default=RESULTS / "mnist_test_binarized.pt")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    problems = [f"{d} is not a finished run (no checkpoints/last.ckpt)" for _, d in args.run
                if not (Path(d) / "checkpoints" / "last.ckpt").is_file()]
    if not args.test_tensor.is_file():
        problems.append(f"{args.test_tensor} not found; run benchmarks/mnist.py first")
    if problems:
        print(f"benchmarks/mnist_posterior_shape.py: error: {problems[0]}", file=sys.stderr)
        return 2
    x = torch.load(args.test_tensor, weights_only=True).float()[: args.examples]
    report = {
        "examples": int(x.shape[0]),
        "samples_per_example": args.samples,
        "runs": {label: shape_summary(Path(d), x, args.samples, args.seed) for label, d in args.run},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "mnist_posterior_shape.json", report)
    for label, r in report["runs"].items():
        accuracy = r["critic_accuracy_last_10pct"]
        print(f"{label}: correlation KL {r['kl_from_correlations']['mean']:.2f} nat, kurtosis "
              f"{r['kurtosis']['mean']:.2f} (max {r['kurtosis']['max']:.1f}), critic accuracy "
              + ("—" if accuracy is None else f"{accuracy:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
