"""Is AVB-AC's MNIST gain over the VAE larger than the test set's own sampling error?

The standard errors in ``mnist.json`` are Monte Carlo errors over AIS chains: they say how well each
model's mean over the fixed 1,000 test images is computed, not how much a fresh test set would move the
difference. This script recomputes the per-image AIS log p(x) exactly as ``benchmarks/mnist.py`` does
(same start, seed and settings, so the means reproduce ``mnist.json``) and reports the paired
difference between two models with its standard error over test images. ``benchmarks/mnist.py``
now saves the per-image files of its own evaluation, so ``per-image`` is needed only for other AIS
settings, e.g. to check that AIS has converged (``--ais-steps 4000 --max-test 200`` for both models,
then ``compare``: a gap that moves with the number of annealing steps is AIS bias, not the models).

    python benchmarks/mnist_paired.py per-image --run RUN_VAE --name vae
    python benchmarks/mnist_paired.py per-image --run RUN_AVB_AC --name avb_ac
    python benchmarks/mnist_paired.py compare --a avb_ac --b vae

(``RUN_*``: the run directories ``benchmarks/mnist.py --workdir DIR`` keeps.) Writes
``<out>/mnist_per_image_<name>.pt`` and ``<out>/mnist_paired.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from implicit_vae.evaluation import EvaluationError, ais_log_likelihood
from implicit_vae.evaluation.compare import compare_evaluations, data_fingerprint
from implicit_vae.evaluation.run import ais_initial
from implicit_vae.training.runs import load_run, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def per_image(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    _, model, _ = load_run(args.run, with_data=False)
    bits = torch.load(args.test_tensor, weights_only=True)
    bits = bits[: args.max_test] if args.max_test else bits
    x = bits.float()
    est = ais_log_likelihood(
        model.log_likelihood,
        model.prior,
        x,
        chains=args.ais_chains,
        steps=args.ais_steps,
        leapfrog_steps=args.ais_leapfrog,
        initial=ais_initial(model, x, args.seed),
        seed=args.seed,
    )
    path = args.out / f"mnist_per_image_{args.name}.pt"
    torch.save(
        {
            # the format of implicit-vae evaluate's per-example files (`implicit-vae compare` reads it)
            "log_px_ais": est.log_px,
            "log_px_ais_stderr": est.stderr,
            "data_sha256": data_fingerprint(bits),
            "run": str(args.run),
            "ais": {
                "chains": args.ais_chains,
                "steps": args.ais_steps,
                "leapfrog_steps": args.ais_leapfrog,
                "seed": args.seed,
            },
        },
        path,
    )
    print(f"{args.name}: mean AIS log p(x) {est.mean:.3f} over {x.shape[0]} images -> {path}")
    return 0


def compare(args: argparse.Namespace) -> int:
    paths = [args.out / f"mnist_per_image_{n}.pt" for n in (args.a, args.b)]
    paired = compare_evaluations(*paths)  # refuses files from different test images
    n = paired["examples"]
    report = {
        "benchmark": "mnist_paired",
        "a": args.a,
        "b": args.b,
        "images": n,
        "mean_a": paired["mean_a"],
        "mean_b": paired["mean_b"],
        "difference": paired["difference"],
        "difference_stderr_over_images": paired["difference_stderr_over_examples"],
        "images_where_a_is_higher": paired["fraction_where_a_is_higher"],
        "note": "paired over the same test images; the s.e. is the sampling error of the test set",
    }
    write_json(args.out / "mnist_paired.json", report)
    print(
        f"{args.a} - {args.b}: {report['difference']:+.3f} ± "
        f"{report['difference_stderr_over_images']:.3f} nats (s.e. over {n} test images); "
        f"{args.a} higher on {100 * report['images_where_a_is_higher']:.0f} % of them"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("per-image", help="per-image AIS of one run")
    one.add_argument("--run", type=Path, required=True)
    one.add_argument("--name", required=True)
    one.add_argument("--test-tensor", type=Path, default=RESULTS / "mnist_test_binarized.pt")
    one.add_argument("--ais-chains", type=int, default=8)
    one.add_argument("--ais-steps", type=int, default=1000)
    one.add_argument("--ais-leapfrog", type=int, default=2)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--max-test", type=int, default=None, help="the first N test images only")
    two = sub.add_parser("compare", help="paired difference of two per-image files")
    two.add_argument("--a", required=True)
    two.add_argument("--b", required=True)
    for p in (one, two):
        p.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        return per_image(args) if args.command == "per-image" else compare(args)
    except EvaluationError as err:
        print(f"benchmarks/mnist_paired.py: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
