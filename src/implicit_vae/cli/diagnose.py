"""``implicit-vae diagnose``: the shape of a run's posteriors (correlation and non-Gaussian parts of
the KL, whitened kurtosis) and whether its KL estimator charges the certain part
(see :mod:`implicit_vae.evaluation.diagnose`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError
from ..cpu import flush_denormals
from .common import at_least_two, positive


def add_parser(sub) -> None:
    """The ``diagnose`` sub-command and its options."""
    p = sub.add_parser(
        "diagnose", help="posterior shape (correlations, tails) and the KL estimator's charge"
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--examples", type=positive, default=20, metavar="N",
                   help="inputs of the split to diagnose (default 20)")
    p.add_argument("--samples", type=at_least_two, default=4000, metavar="K",
                   help="draws of q(z|x) per input (default 4000)")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("--out", metavar="DIR",
                   help="where diagnose.json and diagnose.png go (default: RUN_DIR)")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (default), auto, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=None, help="default: the run's train.seed")
    p.add_argument("--no-plot", action="store_true", help="skip diagnose.png")


def _check(args: argparse.Namespace) -> None:
    """The cheap checks, before torch is imported."""
    run = Path(args.run_dir)
    if not run.is_dir():
        raise ConfigError(f"run directory {args.run_dir!r} does not exist; expected the "
                          "directory of an implicit-vae train run")
    ckpt = run / "checkpoints" / f"{args.checkpoint}.ckpt"
    if not ckpt.is_file():
        raise ConfigError(f"{str(run)!r} has no checkpoints/{ckpt.name}; expected the directory "
                          "of an implicit-vae train run")
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out: {args.out!r} is a file; expected a directory")
        if not out.parent.is_dir():
            raise ConfigError(f"--out: directory {str(out.parent)!r} does not exist")


def _num(part: dict | None) -> str:
    return f"{'-':>9}" if part is None else f"{part['mean']:9.3f}"


def run(args: argparse.Namespace) -> None:
    _check(args)
    flush_denormals()
    from ..evaluation.diagnose import diagnose_run
    from .evaluate import evaluation_device

    result = diagnose_run(args.run_dir, examples=args.examples, samples=args.samples,
                          split=args.split, checkpoint=args.checkpoint, out_dir=args.out,
                          device=evaluation_device(args.device), seed=args.seed,
                          plot=not args.no_plot)  # fmt: skip
    parts, charge = result["kl_parts"], result["charge"]
    print(f"{result['examples']} inputs of {result['split']} × {result['samples']} draws; "
          f"{result['posterior']} against {result['prior']} (moments {result['moments']})")
    print("KL part (nats, mean over inputs)")
    for key, label in (("marginal_gaussian", "Gaussian fit, marginals"),
                       ("correlation", "Gaussian fit, correlations"),
                       ("gaussian_fit", "Gaussian fit, total"),
                       ("non_gaussian", "non-Gaussian, lower bound"),
                       ("lower_bound", "lower bound on the KL")):  # fmt: skip
        print(f"  {label:>28s} {_num(parts[key])}")
    k = result["kurtosis"]
    print(f"  {'whitened kurtosis':>28s} {k['mean']:9.3f}  (max {k['max']:.2f}; Gaussian 3)")
    if "estimate" in charge:
        print(f"  {'estimate of ' + charge['estimator']:>28s} {_num(charge['estimate'])}"
              + (f"  (below the bound on {charge['under_charged_fraction']:.0%} of inputs)"
                 if "under_charged_fraction" in charge else ""))
        critic = charge.get("critic")
        if critic:
            print(f"  {'critic: KL(z̃ ‖ N(0, I))':>28s} {_num(critic['critic_kl'])}  (marginal "
                  f"bound {critic['marginal_kl']['mean']:.3f})")
    else:
        print(f"  charge: not available: {charge['unavailable']}")
    if result["critic_accuracy_last_10pct"] is not None:
        print(f"  {'critic accuracy, last 10 %':>28s} {result['critic_accuracy_last_10pct']:9.3f}")
    out = Path(args.out) if args.out else Path(args.run_dir)
    print(f"wrote {out / 'diagnose.json'}" + ("" if args.no_plot else " and diagnose.png"))
