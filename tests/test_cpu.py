"""implicit_vae.cpu: subnormal floats flushed to zero by the command line, on every thread torch
starts, and never by merely importing or calling the library (each case in a fresh interpreter,
since the mode belongs to the process and torch cannot read it back)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tiny_runs import TINY_NETWORKS

# 1e-39 is subnormal in float32 (the smallest normal is 1.18e-38); doubled over 2 threads, every
# element comes out 0 only where each thread flushes.
SUBNORMALS_FLUSHED = "bool(((torch.full((4_000_000,), 1e-39) * 2) == 0).all())"
PROBE = f"""
import sys
import torch
from implicit_vae.cli import main
code = main(sys.argv[1:])
torch.set_num_threads(2)
print(code, {SUBNORMALS_FLUSHED})
"""
LIBRARY_ONLY = f"""
import torch
import implicit_vae.training.fit, implicit_vae.evaluation
from implicit_vae.config import load_config
from implicit_vae.config.factory import build_model
model = build_model(load_config(None, ["model.hidden=[8]"]), 64)
model(torch.rand(16, 64).round()).loss.backward()
torch.set_num_threads(2)
print({SUBNORMALS_FLUSHED})
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def _python(code: str, *argv: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=ENV, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split("\n")[-2]


@pytest.fixture(scope="module")
def flushing_cpu():
    from implicit_vae.cpu import flush_denormals

    supported = flush_denormals()
    torch.set_flush_denormal(False)
    if not supported:
        pytest.skip("this CPU cannot flush subnormals (not x86 with SSE3)")


def test_flush_denormals_zeroes_subnormal_results_and_only_then(flushing_cpu):
    tiny = torch.tensor([1e-39])
    assert (tiny * 2).item() != 0.0  # kept (conftest): the check below can fail
    from implicit_vae.cpu import flush_denormals

    try:
        assert flush_denormals()
        assert (tiny * 2).item() == 0.0
        assert (torch.tensor([1e-30]) * 2).item() == pytest.approx(2e-30)  # normal numbers as ever
    finally:
        torch.set_flush_denormal(False)  # as conftest would before the next test


def test_importing_and_building_with_the_library_keeps_subnormals(flushing_cpu):
    assert _python(LIBRARY_ONLY) == "False"


def test_train_and_evaluate_flush_on_every_thread(flushing_cpu, tmp_path):
    run = tmp_path / "run"
    train = ["train", *sum((["--set", o] for o in TINY_NETWORKS), []), "--set",
             "train.max_steps=2", "--set", "train.threads=2", "--set", f"train.run_dir={run}"]  # fmt: skip
    assert _python(PROBE, *train) == "0 True"
    evaluate = ["evaluate", str(run), "--max-examples", "4", "--ais-chains", "2", "--ais-steps",
                "3", "--is-samples", "4", "--no-ais-curve", "--no-progress"]  # fmt: skip
    assert _python(PROBE, *evaluate) == "0 True"
