"""Pieces the MNIST benchmarks share: reading a run's metrics.csv, the critic's health, and the
config comparison that decides whether a finished run may be reused.

Imported by ``benchmarks/mnist.py`` and ``benchmarks/binarized_mnist.py`` (each puts this folder on
``sys.path``, as ``benchmarks/speed.py`` does for its helpers).
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Any

from implicit_vae.files import atomic_write_text
from implicit_vae.training.runs import write_json

ROOT = Path(__file__).resolve().parents[1]
# An absolute path inside a string: "/" not after a word character or a dot, then no blanks.
_ABSOLUTE = re.compile(r"(?<![\w.)])/[^\s\"',;]+")

# Keys that say where or how visibly a run trains, not what it trains: never a reason to retrain.
NOT_TRAINING_KEYS = {"train": ("run_dir", "progress_bar")}


def portable(obj: Any, root: Path = ROOT) -> Any:
    """``obj`` with every absolute path inside its strings made relative to ``root`` (the
    repository), so a committed result names no directory of the machine that produced it."""
    if isinstance(obj, str):
        return _ABSOLUTE.sub(lambda m: os.path.relpath(m.group(0), root), obj)
    if isinstance(obj, dict):
        return {k: portable(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, root) for v in obj]
    return obj


def write_result(path: Path, obj: Any) -> None:
    """Write a benchmark result as JSON (atomically), its paths relative to the repository."""
    write_json(Path(path), portable(obj))


def write_table(path: Path, text: str) -> None:
    """Write a benchmark's Markdown table whole or not at all, its paths relative to the
    repository (as :func:`write_result` does for JSON)."""
    atomic_write_text(path, portable(text))


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a Lightning metrics.csv as {column: float}, empty cells dropped."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
    return rows


def critic_health(metrics: list[dict[str, float]], numbers: dict, points: int = 40) -> dict | None:
    """Final critic accuracy / loss, a thinned training curve (``points`` rows; 0: none) and the
    ELBO-estimate-vs-AIS gap; None for models without a critic.

    ``elbo_estimate − log_px_ais``: a true ELBO lies below log p(x), so a positive gap means the KL
    estimate is too small by at least the gap, provided AIS is tight (AIS is a stochastic lower
    bound; a loose AIS inflates the gap). ``kl_lower_bound_from_ais = −reconstruction_error −
    log_px_ais`` is the smallest KL consistent with the AIS value, on the same proviso.
    """
    rows = [r for r in metrics if "train/critic_accuracy" in r]
    if not rows:
        return None
    tail = rows[-max(1, len(rows) // 10) :]
    out = {
        "final_critic_accuracy": rows[-1]["train/critic_accuracy"],
        "final_critic_loss": rows[-1].get("train/critic_loss"),
        "critic_accuracy_last_10pct": sum(r["train/critic_accuracy"] for r in tail) / len(tail),
    }
    if points:
        stride = max(1, len(rows) // points)
        out["curve"] = [
            {
                "step": int(r["step"]),
                "critic_accuracy": r["train/critic_accuracy"],
                "critic_loss": r.get("train/critic_loss"),
                "kl_estimate": r.get("train/kl"),
            }
            for r in rows[::stride]
        ]
    if "log_px_ais" in numbers and "elbo_estimate" in numbers:
        out["elbo_estimate_minus_log_px_ais"] = numbers["elbo_estimate"] - numbers["log_px_ais"]
        out["kl_lower_bound_from_ais"] = -numbers["reconstruction_error"] - numbers["log_px_ais"]
    return out


def comparable(values: dict, ignore: dict[str, tuple[str, ...]] = NOT_TRAINING_KEYS) -> dict:
    """A config's ``to_dict()`` without the ``ignore``d keys (section → keys), deep-copied."""
    out = {section: dict(keys) if isinstance(keys, dict) else keys
           for section, keys in values.items()}  # fmt: skip
    for section, keys in ignore.items():
        for key in keys:
            out.get(section, {}).pop(key, None)
    return out


def differing_keys(want: dict, have: dict) -> list[str]:
    """``section.key`` names where two config dicts (as from :func:`comparable`) differ."""
    return sorted(
        f"{section}.{key}"
        for section in set(want) | set(have)
        for key in set(want.get(section, {})) | set(have.get(section, {}))
        if want.get(section, {}).get(key) != have.get(section, {}).get(key)
    )


def fmt(value, digits: int = 2) -> str:
    """A number for a markdown table; — for a missing or NaN one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
