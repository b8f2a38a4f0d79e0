"""Run directories: creating them without clobbering, writing files atomically, loading trained models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, config_from_dict
from ..config.factory import build_model
from ..data import Dataset, load_dataset
from ..model import ImplicitVAE
from .checkpoint import CheckpointError, load_checkpoint


def new_run_dir(path: str | Path) -> Path:
    """``path`` if it is free, else ``path-2``, ``path-3``…: a run never writes into another's files.

    Raises:
        ConfigError: if the directory cannot be created (a file is in the way, no permission).
    """
    base = Path(path)
    candidate, k = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    try:
        candidate.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"train.run_dir: cannot create {str(candidate)!r} ({err.strerror or err}); expected a "
            "directory path that can be written"
        ) from None
    return candidate


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    tmp.replace(path)


def load_run(
    run_dir: str | Path, checkpoint: str = "last", with_data: bool = True
) -> tuple[Config, ImplicitVAE, Dataset | None]:
    """The config, trained model (eval mode) and data set of a run directory.

    Args:
        run_dir: a directory written by ``implicit-vae train``.
        checkpoint: ``"last"`` or ``"best"`` (by validation loss).
        with_data: also load the run's data set (same split and seed as in training).

    Raises:
        ConfigError: if the directory does not exist.
        CheckpointError: if the checkpoint is missing, unsafe, or does not fit its config.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    if checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint {checkpoint!r} is not known; expected 'last' or 'best'")
    ckpt = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.ckpt")
    cfg = config_from_dict(ckpt["config"])
    data = load_dataset(cfg.data, cfg.train.seed) if with_data else None
    event_shape = data.event_shape if data is not None else _event_shape(ckpt)
    model = build_model(cfg, event_shape)
    mismatch = state_mismatch(model.state_dict(), ckpt["model"])
    if mismatch:
        raise CheckpointError(
            f"checkpoint in {str(run_dir)!r} does not fit the model its config describes ({mismatch})"
        )
    model.load_state_dict(ckpt["model"])
    return cfg, model.eval(), data


def _event_shape(ckpt: dict[str, Any]) -> tuple[int, ...]:
    """The shape of one example: stored in the checkpoint, or (for checkpoints written before it
    was) the flat data dimension read off the MLP decoder's last bias."""
    if isinstance(ckpt.get("event_shape"), list):
        return tuple(int(s) for s in ckpt["event_shape"])
    biases = [
        k for k in ckpt["model"] if k.startswith("likelihood.decoder.") and k.endswith(".bias")
    ]
    return (int(ckpt["model"][sorted(biases, key=lambda k: int(k.split(".")[2]))[-1]].shape[0]),)


def state_mismatch(expected: dict[str, Any], found: dict[str, Any], limit: int = 3) -> str:
    """A short description of how two state dicts differ in keys or shapes ("" if they match)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: {tuple(found[k].shape)} in the file, {tuple(v.shape)} expected"
        for k, v in expected.items()
        if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)
