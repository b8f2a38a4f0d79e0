"""Training: the two-player loop, checkpoints with RNG state, NaN/inf guards, multi-process runs,
run directories and logs. ``fit`` is the entry point.

The names below are imported on first use, so that ``implicit_vae.training.checkpoint`` (read by the
CLI for its errors) does not pull in Lightning.
"""

from importlib import import_module

_EXPORTS = {
    "fit": ".fit",
    "resume_config": ".fit",
    "CriticSaturationWarning": ".guards",
    "NonFiniteError": ".guards",
    "ImplicitVAEModule": ".module",
    "TrainingInterrupted": ".module",
    "TwoPlayerLoop": ".module",
    "RunLock": ".runs",
    "claim_run_dir": ".runs",
    "load_run": ".runs",
    "new_run_dir": ".runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
