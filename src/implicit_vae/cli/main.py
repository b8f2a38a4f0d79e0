"""Command-line interface: ``implicit-vae train | describe | evaluate | compare | audit | diagnose |
benchmark``.

One module per command, each with ``add_parser(subparsers)`` and ``run(args)``. Every user error
(bad config, data, checkpoint or argument) prints one line and exits with code 2.

Nothing here imports torch or Lightning at import time: each command imports what it needs when it
runs, so a bad option or config value is reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from . import audit, compare, config, describe, diagnose, evaluate, train
from .common import EXIT_NONFINITE, EXIT_USAGE, OneLineArgumentParser

COMMANDS = {
    "train": train,
    "describe": describe,
    "evaluate": evaluate,
    "compare": compare,
    "audit": audit,
    "diagnose": diagnose,
    "config": config,
}

# The errors that mean bad input (one line, exit code 2), by the module that defines each. They are
# looked up among the modules already imported: an error whose module was never imported cannot have
# been raised, and importing its module to find out would import torch.
USER_ERRORS = {
    "implicit_vae.config.schema": "ConfigError",
    "implicit_vae.data.errors": "DataError",
    "implicit_vae.training.checkpoint": "CheckpointError",
    "implicit_vae.evaluation._common": "EvaluationError",
    "implicit_vae.model": "IncompatibleComponentsError",
}
NONFINITE_ERROR = {"implicit_vae.training.guards": "NonFiniteError"}
INTERRUPTED = {"implicit_vae.training.module": "TrainingInterrupted"}


def _loaded(errors: dict[str, str]) -> tuple[type[BaseException], ...]:
    """The classes named in ``errors`` whose modules are imported (an empty tuple matches nothing)."""
    return tuple(
        getattr(sys.modules[module], name)
        for module, name in errors.items()
        if module in sys.modules
    )


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="implicit-vae",
        description="VAEs with implicit posteriors: train, inspect and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser
    )
    sub.required = True
    train.add_parser(sub)
    describe.add_parser(sub)
    benchmark = sub.add_parser(
        "benchmark", help="run a benchmark (kl: estimator accuracy against known answers)"
    )
    benchmark.add_argument("name", choices=["kl"], help="which benchmark")
    benchmark.add_argument(
        "options", nargs=argparse.REMAINDER, help="its options (implicit-vae benchmark kl --help)"
    )
    evaluate.add_parser(sub)
    compare.add_parser(sub)
    audit.add_parser(sub)
    diagnose.add_parser(sub)
    config.add_parser(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line are one line each, like its errors (no source line)."""
    return f"implicit-vae: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``implicit-vae`` console script; returns the exit code."""
    warnings.formatwarning = _one_line_warning
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
        COMMANDS[args.command].run(args)
    except KeyboardInterrupt as err:
        if not isinstance(err, _loaded(INTERRUPTED)):  # a second Ctrl-C, or outside training
            print("implicit-vae: interrupted; the last checkpoint is intact", file=sys.stderr)
        elif os.environ.get("RANK", "0") == "0":  # last.ckpt is at the step it names
            print(f"implicit-vae: {err}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`implicit-vae compare A B | head -1`): stop quietly, and point
        # stdout at devnull so that the interpreter's final flush does not raise again.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - must stay open until exit
        return 1
    except Exception as err:
        if isinstance(err, _loaded(USER_ERRORS)):
            print(f"implicit-vae: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(err, _loaded(NONFINITE_ERROR)):
            if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; one reports
                print(f"implicit-vae: {err}", file=sys.stderr)
            return EXIT_NONFINITE
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
