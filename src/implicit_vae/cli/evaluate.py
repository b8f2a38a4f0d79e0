"""``implicit-vae evaluate``: honest log-likelihoods (AIS, IS, exact) and the ELBO of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError
from ..cpu import flush_denormals
from .common import positive


def add_parser(sub) -> None:
    """The ``evaluate`` sub-command and its options."""
    evaluate = sub.add_parser("evaluate", help="log-likelihoods (AIS, IS, exact) and ELBO of a run")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--checkpoint", default="last", choices=["last", "best"])
    evaluate.add_argument("--ais-chains", type=positive, default=8, metavar="N")
    evaluate.add_argument("--ais-steps", type=positive, default=1000, metavar="N")
    evaluate.add_argument(
        "--ais-leapfrog",
        type=positive,
        default=10,
        metavar="N",
        help="leapfrog steps per HMC transition",
    )
    evaluate.add_argument("--is-samples", type=positive, default=1000, metavar="K")
    evaluate.add_argument(
        "--max-examples",
        type=positive,
        default=None,
        metavar="N",
        help="evaluate only the first N examples of the split",
    )
    evaluate.add_argument(
        "--no-ais-curve",
        action="store_true",
        help="skip the AIS-versus-annealing-steps diagnostic plot",
    )
    evaluate.add_argument(
        "--ais-curve-examples",
        type=_count_or_all,
        default=500,
        metavar="N|all",
        help="examples the AIS-versus-steps curve runs on: the first N of those evaluated, or "
        "all (default 500; a subset is labelled as one in the JSON, the table and the plot)",
    )
    evaluate.add_argument(
        "--no-exact",
        action="store_true",
        help="skip the 2-D quadrature log_px_exact (it is computed for 2-D latents otherwise)",
    )
    evaluate.add_argument(
        "--no-progress",
        action="store_true",
        help="show no progress (by default: a bar on a terminal, plain lines in a log file)",
    )
    evaluate.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="where AIS/IS run: auto (a CUDA GPU if visible, else cpu), cpu, cuda, cuda:N or mps",
    )
    evaluate.add_argument(
        "--json",
        metavar="FILE",
        help="where to write the numbers (default: RUN_DIR/evaluation_<split>.json)",
    )


def run(args: argparse.Namespace) -> None:
    flush_denormals()
    from ..evaluation.compare import data_fingerprint
    from ..evaluation.run import evaluate_model, split_data
    from ..training.checkpoint import atomic_save
    from ..training.runs import load_run, write_json

    if args.json and not Path(args.json).parent.is_dir():
        # Checked first, so a long evaluation is not computed only to fail when it is written.
        raise ConfigError(
            f"--json: directory {str(Path(args.json).parent)!r} does not exist; expected a file "
            "path in an existing directory"
        )
    device = evaluation_device(args.device)
    cfg, model, data = load_run(args.run_dir, args.checkpoint)
    model.to(device)
    x = split_data(data, args.split, cfg.train.seed)
    if args.max_examples:
        x = x[: args.max_examples]
    run_dir = Path(args.run_dir)
    curve = None if args.no_ais_curve else run_dir / "plots" / f"ais_vs_steps_{args.split}.png"
    result = evaluate_model(
        model,
        x,
        divergence=cfg.divergence.name,
        ais_chains=args.ais_chains,
        ais_steps=args.ais_steps,
        ais_leapfrog_steps=args.ais_leapfrog,
        is_samples=args.is_samples,
        seed=cfg.train.seed,
        ais_curve_path=curve,
        ais_curve_examples=args.ais_curve_examples,
        exact=not args.no_exact,
        progress=not args.no_progress,
        per_example=True,
    )
    per_example = result.pop("per_example")
    result = {"run_dir": str(run_dir), "split": args.split, "checkpoint": args.checkpoint, **result}
    path = Path(args.json) if args.json else run_dir / f"evaluation_{args.split}.json"
    write_json(path, result)
    # Per-example values, so two runs evaluated on the same examples can be compared pairwise.
    examples_path = path.with_name(f"{path.stem}_per_example.pt")
    atomic_save(
        {
            **{k: v.cpu() for k, v in per_example.items()},
            "data_sha256": data_fingerprint(x),
            **{k: result[k] for k in ("run_dir", "split", "checkpoint")},
        },
        examples_path,
    )
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:>24s}  {value:.4f}")
    for key, why in result["unavailable"].items():
        print(f"{key:>24s}  not available: {why}")
    for key, why in result.get("skipped", {}).items():
        print(f"{key:>24s}  skipped: {why}")
    if "ais_versus_steps" in result:
        print_ais_curve(result["ais_versus_steps"])
    print(f"wrote {path} and {examples_path.name}")


def print_ais_curve(curve: dict) -> None:
    """The AIS-versus-steps table, headed by the examples it is on (a subset says so)."""
    from ..evaluation.run import curve_label

    print(f"{curve_label(curve['examples'], curve['of_examples'])}:")
    for point in curve["points"]:
        print(f"{point['steps']:>24d}  {point['log_px']:.4f} ± {point['stderr']:.4f}")


def _count_or_all(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return positive(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err}; expected a positive integer or 'all'") from None


def evaluation_device(name: str):
    """The torch device of ``evaluate --device``.

    Raises:
        ConfigError: for a name torch does not know or a device this machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"--device: {name!r} is not a device; expected auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise ConfigError(f"--device: {name!r}: torch sees no such CUDA device; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device: {name!r}: the Metal backend is not available; use cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device: {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device
