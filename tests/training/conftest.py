"""A tiny finished training run shared by the tests of its outputs (trained once per session)."""

from __future__ import annotations

import pytest

from implicit_vae.cli import main
from tiny_runs import TINY_NETWORKS


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """30 steps on digits (8x8 images), validated at steps 10, 20 and 30; returns its directory."""
    run = tmp_path_factory.mktemp("digits") / "run"
    sets = [
        *TINY_NETWORKS,
        "train.max_steps=30",
        "train.val_every=10",
        "train.log_every=5",
        f"train.run_dir={run}",
    ]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    return run
