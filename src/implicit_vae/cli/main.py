"""Command-line interface: ``implicit-vae train | describe | evaluate | compare``.

Every user error (bad config, data, checkpoint or argument) prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import ConfigError, load_config, parse_override
from ..training.checkpoint import CheckpointError

EXIT_USAGE = 2
EXIT_NONFINITE = 3  # training stopped on a NaN/inf (train.on_nonfinite)


class OneLineArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_config_path() -> Path:
    """The shipped default config (digits, AVB with adaptive contrast)."""
    return Path(__file__).parent.parent / "configs" / "default.yaml"


def resolve_config(name: str | None) -> Path:
    """A config path, or the name of a shipped config (``toy4_avb`` or ``toy4_avb.yaml``)."""
    if name is None:
        return default_config_path()
    path = Path(name)
    if path.exists():
        return path
    shipped = default_config_path().with_name(path.name if path.suffix else f"{path.name}.yaml")
    if not path.parent.parts and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in default_config_path().parent.glob("*.yaml")))
    raise ConfigError(f"--config: {name!r} is neither a file nor a shipped config ({names})")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="implicit-vae",
        description="VAEs with implicit posteriors: train, inspect and evaluate.",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser
    )
    sub.required = True
    common = {
        "--config": {"metavar": "FILE", "help": "YAML config (default: the shipped default)"},
        "--set": {
            "metavar": "KEY=VALUE",
            "action": "append",
            "default": [],
            "help": "override a config value, e.g. --set train.max_steps=500",
        },
    }
    train = sub.add_parser("train", help="train a model and write a run directory")
    for flag, kw in common.items():
        train.add_argument(flag, **kw)
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )
    describe = sub.add_parser("describe", help="print the model's information flow with shapes")
    for flag, kw in common.items():
        describe.add_argument(flag, **kw)
    benchmark = sub.add_parser(
        "benchmark", help="run a benchmark (kl: estimator accuracy against known answers)"
    )
    benchmark.add_argument("name", choices=["kl"], help="which benchmark")
    benchmark.add_argument(
        "options", nargs=argparse.REMAINDER, help="its options (implicit-vae benchmark kl --help)"
    )
    evaluate = sub.add_parser("evaluate", help="log-likelihoods (AIS, IS, exact) and ELBO of a run")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--checkpoint", default="last", choices=["last", "best"])
    evaluate.add_argument("--ais-chains", type=_positive, default=8, metavar="N")
    evaluate.add_argument("--ais-steps", type=_positive, default=1000, metavar="N")
    evaluate.add_argument(
        "--ais-leapfrog",
        type=_positive,
        default=10,
        metavar="N",
        help="leapfrog steps per HMC transition",
    )
    evaluate.add_argument("--is-samples", type=_positive, default=1000, metavar="K")
    evaluate.add_argument(
        "--max-examples",
        type=_positive,
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
    compare = sub.add_parser(
        "compare",
        help="paired difference of two evaluations of the same examples, with its s.e.",
    )
    compare.add_argument(
        "evaluations",
        nargs=2,
        metavar="PER_EXAMPLE",
        help="two *_per_example.pt files written by implicit-vae evaluate (A, then B)",
    )
    compare.add_argument("--estimate", default="log_px_ais", choices=["log_px_ais", "log_px_is"])
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _evaluate(args: argparse.Namespace) -> None:
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
    device = _evaluation_device(args.device)
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
    print(f"wrote {path} and {examples_path.name}")


def _evaluation_device(name: str):
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


def _compare(args: argparse.Namespace) -> None:
    from ..evaluation.compare import compare_evaluations

    a, b = args.evaluations
    paired = compare_evaluations(a, b, args.estimate)
    print(
        f"A - B in {args.estimate}: {paired['difference']:+.3f} ± "
        f"{paired['difference_stderr_over_examples']:.3f} nats (s.e. over "
        f"{paired['examples']} examples); A is higher on "
        f"{100 * paired['fraction_where_a_is_higher']:.0f} % of them\n  A = {a}\n  B = {b}"
    )


def _train(args: argparse.Namespace) -> None:
    from ..training.fit import fit

    if args.resume:
        if args.config:
            raise ConfigError(
                "--config cannot be combined with --resume; the run's stored config is used"
            )
        overrides = dict(parse_override(o) for o in args.set)
        run_dir, summary = fit(None, resume=args.resume, resume_overrides=overrides)  # type: ignore[arg-type]
    else:
        cfg = load_config(resolve_config(args.config), args.set)
        run_dir, summary = fit(cfg)
    if not summary:  # a torchrun process other than rank 0: rank 0 reports
        return
    val, key = summary.get("val", {}), summary["divergence_key"]
    print(f"run directory: {run_dir}")
    print(
        f"steps {summary['steps']}, wall time {summary['wall_time_s']:.1f} s, validation loss "
        f"{val.get('loss', float('nan')):.3f} (reconstruction {val.get('reconstruction', float('nan')):.3f}, "
        f"{key} {'estimate ' if summary['kl_is_estimate'] else ''}{val.get(key, float('nan')):.3f})"
    )


def _describe(args: argparse.Namespace) -> None:
    from ..config.factory import build_model
    from ..data import load_dataset
    from .describe_model import describe

    cfg = load_config(resolve_config(args.config), args.set)
    data = load_dataset(cfg.data, cfg.train.seed)
    model = build_model(cfg, data.event_shape)
    print(
        describe(
            model,
            data.data_dim,
            batch=cfg.train.batch_size,
            n_samples=cfg.train.n_samples,
            dataset=f"{cfg.data.name} ({data.data_dim} dims)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``implicit-vae`` console script; returns the exit code."""
    from ..data import DataError
    from ..evaluation import EvaluationError
    from ..model import IncompatibleComponentsError
    from ..training.guards import NonFiniteError

    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # argparse has printed its one line (or --help); return, not exit
        return 0 if done.code is None else done.code if isinstance(done.code, int) else EXIT_USAGE
    try:
        if args.command == "benchmark":
            from .benchmark import main as benchmark_main

            try:
                return benchmark_main(args.options)
            except SystemExit as done:  # its own argument errors and --help
                return done.code if isinstance(done.code, int) else EXIT_USAGE
        commands = {
            "train": _train,
            "describe": _describe,
            "evaluate": _evaluate,
            "compare": _compare,
        }
        commands[args.command](args)
    except (
        ConfigError,
        DataError,
        CheckpointError,
        EvaluationError,
        IncompatibleComponentsError,
    ) as err:
        print(f"implicit-vae: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteError as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; one reports
            print(f"implicit-vae: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    except KeyboardInterrupt:
        print("implicit-vae: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`implicit-vae compare A B | head -1`): stop quietly, and point
        # stdout at devnull so that the interpreter's final flush does not raise again.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - must stay open until exit
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
