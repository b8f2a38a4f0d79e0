"""Shared test fixtures: deterministic seeds and a guard against leaked global torch state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

SEED = 0


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed python, numpy and torch to ``SEED`` before every test; one intra-op thread, so timings
    and floating-point reductions do not depend on how busy the machine is. Subnormal floats are
    kept, as a library user has them, also after a test that ran the CLI (which flushes them) in
    this process."""
    torch.set_flush_denormal(False)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _guard_global_torch_state():
    """Fail a test that leaves global torch state changed: default dtype, anomaly mode, grad mode or
    torch.distributions argument validation. The state is restored first, so one leak cannot make
    every later test fail too."""
    before = {
        "default dtype": torch.get_default_dtype(),
        "anomaly mode": torch.is_anomaly_enabled(),
        "grad mode": torch.is_grad_enabled(),
        "distribution validate_args": torch.distributions.Distribution._validate_args,
    }
    yield
    after = {
        "default dtype": torch.get_default_dtype(),
        "anomaly mode": torch.is_anomaly_enabled(),
        "grad mode": torch.is_grad_enabled(),
        "distribution validate_args": torch.distributions.Distribution._validate_args,
    }
    leaked = [f"{k}: {before[k]} -> {after[k]}" for k in before if before[k] != after[k]]
    torch.set_default_dtype(before["default dtype"])
    torch.set_anomaly_enabled(before["anomaly mode"])
    torch.set_grad_enabled(before["grad mode"])
    torch.distributions.Distribution.set_default_validate_args(
        before["distribution validate_args"])
    if leaked:
        pytest.fail("test leaked global torch state: " + "; ".join(leaked), pytrace=False)
