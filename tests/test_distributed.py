"""Multi-process training: 2 torchrun processes (gloo, CPU) against one process with the same global batch.

Equivalence tolerance. Each rank draws its own posterior/prior noise, so a 2-process run cannot be
bitwise equal to a 1-process run. The comparison therefore switches the sampling noise off (see
``_ddp_entry.py``): the data, the sharding, the gradient averaging of the model *and* the critic, and
the optimizers are all real, and the only differences left are floating-point rounding (a mean over 16
rows on each rank averaged by all-reduce versus one mean over 32 rows). Adam divides each gradient
by its own running scale, so a rounding difference in a near-zero gradient component becomes a
difference of up to lr·(its relative size) per step. Measured after 20 steps: max |Δw| = 4.7e-5, mean
|Δw| = 3e-7 over 82k weights. The tolerance is ATOL = 5e-4 (10× the measurement); unsynchronised
ranks, or one rank training on its half batch alone, differ by 6e-2.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _ddp_entry import zero_noise
from implicit_vae.config import ConfigError, load_config
from implicit_vae.data.stream import BatchStream
from implicit_vae.training.checkpoint import load_checkpoint
from implicit_vae.training.distributed import ShardedStream, World
from implicit_vae.training.fit import fit

ATOL = 5e-4
ENTRY = Path(__file__).with_name("_ddp_entry.py")
SMALL = [
    "train.progress_bar=false",
    "model.hidden=[32]",
    "divergence.critic_width=32",
    "divergence.critic_blocks=1",
    "model.n_basis=2",
    "train.batch_size=32",  # the global batch: 16 rows on each of 2 processes
    "train.val_every=10",
    "train.checkpoint_every=10",
    "train.log_every=5",
]


def _torchrun(target: list[str], args: list[str], cwd: Path, zero: bool = False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMPLICIT_VAE_TEST_ZERO_NOISE": str(int(zero))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    sets = [a for item in args for a in ("--set", item)]
    return subprocess.run(
        [*cmd, *target, "train", *sets],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _train_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return [r for r in csv.DictReader(handle) if r.get("train/loss")]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    args = [*SMALL, "train.max_steps=20", "train.run_dir=run"]
    done = _torchrun([str(ENTRY)], args, tmp_path, zero=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # One set of outputs, reported once: rank 1 neither made a directory nor printed a summary.
    assert done.stdout.count("run directory:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 20
    ddp = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ddp["world_size"] == 2 and len(ddp["rng_ranks"]) == 2
    assert not torch.equal(ddp["rng_ranks"][0]["torch"], ddp["rng_ranks"][1]["torch"])

    zero_noise(monkeypatch.setattr)
    fit(load_config(overrides=[*SMALL, "train.max_steps=20", f"train.run_dir={tmp_path / 'one'}"]))
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.ckpt")
    worst = max(float((ddp["model"][k] - one["model"][k]).abs().max()) for k in one["model"])
    assert worst < ATOL, f"max |Δw| = {worst:.2e}"
    # Logged training metrics are global-batch means, as in the one-process run.
    for a, b in zip(_train_rows(run), _train_rows(tmp_path / "one"), strict=True):
        assert a["step"] == b["step"]
        for key in ("train/loss", "train/kl", "train/critic_loss", "train/critic_accuracy"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-4), key


@pytest.mark.slow
def test_resume_under_ddp_reproduces_an_unbroken_ddp_run(tmp_path):
    """With real per-rank noise: 10 + 10 steps (each rank resumes its own RNG) equal 20 steps."""
    cli = ["-m", "implicit_vae.cli"]
    for name, steps in (("whole", 20), ("split", 10)):
        done = _torchrun(
            cli, [*SMALL, f"train.max_steps={steps}", f"train.run_dir={name}"], tmp_path
        )
        assert done.returncode == 0, done.stderr[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*cmd, *cli, "train", "--resume", "split", "--set", "train.max_steps=20"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for ra, rb in zip(a["rng_ranks"], b["rng_ranks"], strict=True):
        assert torch.equal(ra["torch"], rb["torch"])


def test_sharded_stream_splits_each_global_batch_exactly():
    stream = BatchStream(torch.arange(40.0).reshape(20, 2), 8, seed=3)
    shards = [ShardedStream(stream, World(rank=r, world_size=2, ddp=True)) for r in (0, 1)]
    for k in (0, 1, 5):
        merged = torch.empty_like(stream[k])
        merged[0::2], merged[1::2] = shards[0][k], shards[1][k]
        assert torch.equal(merged, stream[k])


def test_world_reads_torchrun_environment(monkeypatch):
    for var in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert World.from_env("auto") == World()
    with pytest.raises(
        ConfigError, match="train.strategy: 'ddp' needs processes started by torchrun"
    ):
        World.from_env("ddp")
    env = {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    world = World.from_env("auto")
    assert (world.rank, world.world_size, world.ddp, world.is_zero) == (1, 2, True, False)
    assert world.local_batch(32) == 16 and world.rank_seed(7) != 7 and World().rank_seed(7) == 7
    with pytest.raises(ConfigError, match="train.batch_size: 33 .* split evenly over 2 processes"):
        world.local_batch(33)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not World.from_env("auto").ddp and World.from_env("ddp").ddp


def test_resuming_a_ddp_checkpoint_in_one_process(tmp_path):
    """A checkpoint from 2 processes resumes in one (the global batch is the same); rank 0's RNG."""
    run = tmp_path / "run"
    fit(load_config(overrides=[*SMALL, "train.max_steps=5", f"train.run_dir={run}"]))
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    ckpt["rng_ranks"] = [ckpt["rng"], ckpt["rng"]]
    ckpt["world_size"] = 2
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    _, summary = fit(None, resume=run, resume_overrides={"train.max_steps": 8})
    assert summary["steps"] == 8 and summary["processes"] == 1
