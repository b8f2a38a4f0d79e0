"""``implicit-vae train``: train a model into a run directory, or continue one exactly."""

from __future__ import annotations

import argparse

from ..config import ConfigError, load_config, parse_override
from .common import add_config_options, resolve_config


def add_parser(sub) -> None:
    """The ``train`` sub-command and its options."""
    train = sub.add_parser("train", help="train a model and write a run directory")
    add_config_options(train)
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )


def run(args: argparse.Namespace) -> None:
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
