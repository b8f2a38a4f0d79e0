"""Load a script of ``benchmarks/`` as a module, so its functions can be tested directly."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(filename: str, module_name: str | None = None) -> ModuleType:
    """``benchmarks/<filename>`` executed as a fresh module named ``module_name`` (default: its stem)."""
    path = BENCHMARKS / filename
    spec = importlib.util.spec_from_file_location(module_name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
