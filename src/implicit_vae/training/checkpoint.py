"""Checkpoints that resume exactly and load safely.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)``: no pickled object from a file is ever executed. It is written to a
temporary file in the same directory and renamed into place, so an interrupted save leaves the previous
checkpoint intact. RNG states (torch CPU, every initialised CUDA device, MPS, numpy, python) are stored
as tensors and primitives.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write
from ..rng import check_rng_states

FORMAT_VERSION = 1
# Entries every training checkpoint carries, with the type each must have.
REQUIRED_ENTRIES = {
    "config": dict,
    "model": dict,
    "model_step": int,
    "best_val": (int, float),
    "wall_time": (int, float),
    "optimizers": list,
    "rng": dict,
}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe or incompatible."""


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files of saves that a killed process never finished or cleaned up.

    Only :func:`atomic_save`'s own ``.NAME.*.tmp`` files are touched; call this when no other process
    is writing checkpoints into ``directory`` (e.g. when a run resumes). Returns the files removed.
    """
    directory = Path(directory)
    stale = sorted(directory.glob(".*.ckpt.*.tmp")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its format version and contents.

    Raises:
        CheckpointError: if the file is missing, truncated or corrupt, carries pickled objects, was
            written by an incompatible format version, or lacks an entry a checkpoint must have. The
            message is one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupt (the file is empty)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's pickle-protocol note; errors say it all
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:  # the file names a Python callable or class: never imported, never called
            raise CheckpointError(
                f"checkpoint {str(path)!r} contains pickled Python objects ({found.group(1)}) and "
                "was refused (only tensors and plain values are loaded, so no code from the file "
                "runs)"
            ) from None
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupt (not a tensor file torch can read)"
        ) from None
    except Exception as err:  # any other failure to parse the bytes means a damaged file
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupt ({_first_sentence(err)})"
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(
            f"{str(path)!r} is not an implicit-vae checkpoint (no format_version); expected a file "
            "written by implicit-vae train"
        )
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {ckpt['format_version']!r}; this version "
            f"of implicit-vae reads format {FORMAT_VERSION}"
        )
    _check_entries(path, ckpt)
    return ckpt


def _first_sentence(err: BaseException) -> str:
    """The first line and sentence of an exception's message (torch's run on for a paragraph)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    return text if text and not text.isdigit() else type(err).__name__


def _check_entries(path: Path, ckpt: dict[str, Any]) -> None:
    """Refuse a checkpoint of the right version that lacks an entry or holds one of the wrong type."""
    from ..config import ConfigError, config_from_dict  # config imports no checkpoint code

    for key, kind in REQUIRED_ENTRIES.items():
        value = ckpt.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            found = "missing" if key not in ckpt else f"a {type(value).__name__}"
            raise CheckpointError(
                f"checkpoint {str(path)!r} is incomplete: entry {key!r} is {found}; expected "
                f"{_kind_name(kind)}"
            )
    not_tensors = [k for k, v in ckpt["model"].items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: model entries {', '.join(not_tensors[:3])} are not "
            "tensors; expected a state dict of tensors"
        )
    try:
        check_rng_states(ckpt["rng"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has malformed RNG states ({err}); expected the torch, "
            "numpy and python states written by implicit-vae train"
        ) from None
    try:
        config_from_dict(ckpt["config"])
    except ConfigError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a config this version cannot use ({err})"
        ) from None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "a mapping", list: "a list", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names[k] for k in kinds))
