"""Pieces every command shares: the one-line argument parser, shipped-config lookup, option types."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError

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


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE``, for the commands that build a model."""
    common = {
            "--config": {"metavar": "FILE", "help": "YAML config (default: the shipped default)"},
            "--set": {
                "metavar": "KEY=VALUE",
                "action": "append",
                "default": [],
                "help": "override a config value, e.g. --set train.max_steps=500",
            },
        }
    for flag, kw in common.items():
        parser.add_argument(flag, **kw)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def at_least_two(text: str) -> int:
    """An integer ≥ 2 (sample counts that a variance or covariance needs)."""
    value = positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} is below 2")
    return value


