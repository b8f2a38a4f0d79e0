"""Random-number state: every generator a run draws from (Python, NumPy, torch's CPU generator,
each CUDA device's and MPS's), collected as tensors and primitives (``weights_only``-safe), restored,
and forked around code that must not move the caller's streams (validation, evaluation, plots)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def check_rng_states(states: dict[str, Any]) -> None:
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
