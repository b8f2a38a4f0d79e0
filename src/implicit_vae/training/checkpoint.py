"""Checkpoints that resume exactly and load safely.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)``: no pickled object from a file is ever executed. It is written to a
temporary file in the same directory and renamed into place, so an interrupted save leaves the previous
checkpoint intact. RNG states (torch CPU, every initialised CUDA device, MPS, numpy, python) are stored
as tensors and primitives.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


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
        _check_rng(ckpt["rng"])
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


def _check_rng(states: dict[str, Any]) -> None:
    """Raise KeyError/TypeError/ValueError unless ``states`` has the layout of collect_rng_states."""
    if not isinstance(states["torch"], torch.Tensor) or states["torch"].dtype != torch.uint8:
        raise TypeError("torch state is not a uint8 tensor")
    keys, internal = states["numpy"]["keys"], states["python"]["internal"]
    if not isinstance(keys, torch.Tensor) or keys.numel() != 624:
        raise ValueError("numpy state keys are not a tensor of 624 numbers")
    if not isinstance(internal, torch.Tensor) or internal.numel() != 625:
        raise ValueError("python state is not a tensor of 625 numbers")
    for device in ("cuda", "mps"):  # optional: written only where the process used the device
        found = states.get(device)
        found = [found] if isinstance(found, torch.Tensor) else found
        if found is not None and not (
            isinstance(found, list)
            and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in found)
        ):
            raise TypeError(f"{device} states are not uint8 tensors")


def cuda_devices_in_use() -> list[int]:
    """Indices of the CUDA devices whose generators this process may have used: all visible ones once
    CUDA is initialised, none before (reading a state must not initialise CUDA on a CPU run)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


def _mps_in_use() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available() and mps.is_built())


def collect_rng_states() -> dict[str, Any]:
    """torch (CPU, and each CUDA device / MPS in use), numpy and python RNG states as tensors and
    primitives (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
    }
    cuda = cuda_devices_in_use()
    if cuda:
        states["cuda"] = [torch.cuda.get_rng_state(i) for i in cuda]
    if _mps_in_use():
        states["mps"] = torch.mps.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`. CUDA states are restored onto the devices of the same
    index that this process sees (a checkpoint from a CPU run has none: CUDA keeps its seed)."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = states["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available():
        for i, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, i)
    if states.get("mps") is not None and _mps_in_use():
        torch.mps.set_rng_state(states["mps"])


@contextlib.contextmanager
def forked_rng(seed: int | None = None) -> Iterator[None]:
    """Run the block on forked generators, CPU and every CUDA device in use (and MPS), optionally
    seeded with ``seed``; the caller's streams continue afterwards as if the block had not run.

    Validation, evaluation and plots draw inside it, so the training sequence is the same whether
    or not (or how often, or on which device) they run.
    """
    mps = torch.mps.get_rng_state() if _mps_in_use() else None
    with torch.random.fork_rng(devices=cuda_devices_in_use()):
        try:
            if seed is not None:
                torch.manual_seed(seed)  # seeds CPU and every CUDA device
            yield
        finally:
            if mps is not None:
                torch.mps.set_rng_state(mps)
