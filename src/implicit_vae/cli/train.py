"""``implicit-vae train``: train a model into a run directory, or continue one exactly."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError, load_config, parse_override
from ..cpu import flush_denormals
from .common import add_config_options, resolve_config


def add_parser(sub) -> None:
    """The ``train`` sub-command and its options."""
    train = sub.add_parser("train", help="train a model and write a run directory")
    add_config_options(train)
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )


def _announce(run_dir: Path) -> None:
    print(f"run directory: {run_dir}", flush=True)


def run(args: argparse.Namespace) -> None:
    """Train (or resume); SIGINT/SIGTERM stop after the current step with ``last.ckpt`` at it, and
    :func:`implicit_vae.cli.main.main` prints where to resume from (exit code 130).

    The config is checked before torch and Lightning are imported, so a bad value fails at once."""
    if args.resume:
        if args.config:
            raise ConfigError(
                "--config cannot be combined with --resume; the run's stored config is used"
            )
        overrides = dict(parse_override(o) for o in args.set)
        flush_denormals()
        from ..training.fit import fit

        run_dir, summary = fit(
            None,  # type: ignore[arg-type]
            resume=args.resume,
            resume_overrides=overrides,
            on_start=_announce,
        )
    else:
        cfg = load_config(resolve_config(args.config), args.set)
        flush_denormals()
        from ..training.fit import fit

        run_dir, summary = fit(cfg, on_start=_announce)
    if not summary:  # a torchrun process other than rank 0: rank 0 reports
        return
    val, key, nan = summary.get("val", {}), summary["divergence_key"], float("nan")
    estimate = "estimate " if summary["kl_is_estimate"] else ""
    print(
        f"steps {summary['steps']}, wall time {summary['wall_time_s']:.1f} s, validation loss "
        f"{val.get('loss', nan):.3f} (reconstruction_error {val.get('reconstruction_error', nan):.3f}"
        f", {key} {estimate}{val.get(key, nan):.3f})"
    )
    chosen = summary.get("selected_by") or {}
    if chosen.get("step") is not None:
        print(
            f"best.ckpt: step {chosen['step']}, chosen by train.select_by={chosen['select_by']} "
            f"({chosen['best_is']} {chosen['metric']} = {chosen['value']:.3f})"
        )
