"""``implicit-vae config --show``: every config key with its type, value, allowed values and help."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import load_config
from ..config.schema import key_table
from .common import add_config_options, resolve_config


def add_parser(sub) -> None:
    """The ``config`` sub-command and its options."""
    p = sub.add_parser("config", help="list every config key: type, default, allowed values, help")
    p.add_argument(
        "--show",
        action="store_true",
        help="list the keys with the values train would use (the default when no option is given)",
    )
    add_config_options(p)


def format_value(value: Any) -> str:
    """A value as it is written after ``--set KEY=`` (YAML: null, true, [256, 256], {})."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def show(config: str | None, overrides: list[str]) -> str:
    """The key listing of the config ``train`` would use with these options: a header, then per key
    ``key = value  (type; allowed values; default D where the value differs)`` and its help."""
    path = resolve_config(config)
    cfg = load_config(path, overrides)
    lines = [
        f"# {path}{' with --set overrides' if overrides else ''}: key = value  (type; allowed "
        "values; the schema's default where it differs), then what the key does"
    ]
    for row in key_table(cfg):
        facts = [row["type"], row["allowed"]]
        if row["value"] != row["default"]:
            facts.append(f"default {format_value(row['default'])}")
        lines.append(
            f"{row['key']} = {format_value(row['value'])}  ({'; '.join(filter(None, facts))})"
        )
        lines.append(f"    {row['help']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    print(show(args.config, args.set))  # listing is the command's one action, --show or not
