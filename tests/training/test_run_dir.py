"""Run directories that cannot collide: atomic claims, the run lock, stale locks, real races.

The race test really starts two trainings with the same ``train.run_dir`` at once and requires two
distinct, self-consistent run directories; the lock tests use a real second process as the holder.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from implicit_vae.cli import main
from implicit_vae.config import ConfigError
from implicit_vae.training.checkpoint import load_checkpoint
from implicit_vae.training.runs import LOCK_NAME, RunLock, claim_run_dir, new_run_dir

TINY = [
    "train.progress_bar=false",
    "model.hidden=[32]",
    "divergence.critic_width=32",
    "divergence.critic_blocks=1",
    "model.n_basis=2",
    "train.batch_size=32",
    "train.threads=1",
    "data.name=digits",
    "train.max_steps=20",
    "train.log_every=1",
    "train.val_every=10",
    "train.checkpoint_every=5",
]

# A process that locks argv[1] and holds it until killed.
HOLDER = """
import sys, time
from implicit_vae.training.runs import RunLock
lock = RunLock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def _set(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


# --- claiming a new directory --------------------------------------------------------------------


def test_claim_takes_a_free_or_empty_path_and_skips_anything_else(tmp_path):
    with claim_run_dir(tmp_path / "a" / "run") as lock:  # parents are made
        assert lock.run_dir == tmp_path / "a" / "run" and lock.path.is_file()
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert not (tmp_path / "a" / "run" / LOCK_NAME).exists(), "release removes the lock file"
    (tmp_path / "empty").mkdir()
    with claim_run_dir(tmp_path / "empty") as lock:  # an existing empty directory is reused
        assert lock.run_dir == tmp_path / "empty"
        with claim_run_dir(tmp_path / "empty") as other:  # held (so not empty): the next suffix
            assert other.run_dir == tmp_path / "empty-2"
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "metrics.csv").write_text("step\n")
    assert claim_run_dir(tmp_path / "file").run_dir == tmp_path / "file-2"
    assert new_run_dir(tmp_path / "full") == tmp_path / "full-2"
    assert new_run_dir(tmp_path / "full") == tmp_path / "full-3", "new_run_dir keeps its claim"
    with pytest.raises(ConfigError, match="cannot create"):
        claim_run_dir(tmp_path / "file" / "run")


def test_claims_at_the_same_moment_get_distinct_directories(tmp_path):
    n, claimed, errors = 12, [], []
    barrier = threading.Barrier(n)

    def claim() -> None:
        try:
            barrier.wait()
            claimed.append(claim_run_dir(tmp_path / "runs" / "x"))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=claim) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    dirs = sorted(lock.run_dir.name for lock in claimed)
    assert dirs == sorted(["x", *(f"x-{k}" for k in range(2, n + 1))])
    for lock in claimed:
        lock.release()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == dirs
    assert not list((tmp_path / "runs").rglob(".lock*")), "no lock file or temporary is left"


# --- the lock --------------------------------------------------------------------------------------


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError) as err:
            RunLock.acquire(run)
        message = str(err.value)
        assert "\n" not in message
        assert f"in use by pid {holder.pid} on host {socket.gethostname()} (since " in message
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: the file stays, its flock goes
        holder.wait(timeout=30)
        assert (run / LOCK_NAME).is_file()
        with RunLock.acquire(run) as lock:
            assert lock.holder()["pid"] == os.getpid()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not (run / LOCK_NAME).exists()


def test_a_lock_file_whose_pid_is_gone_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = {"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(info))
    with RunLock.acquire(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()


# --- two trainings, one path ------------------------------------------------------------------------


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_trainings_started_together_get_distinct_consistent_directories(tmp_path):
    same = tmp_path / "runs" / "same"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "implicit_vae.cli", "train", *_set(*TINY, f"train.run_dir={same}")]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    # each says where it writes before it trains
    runs = [Path(out.splitlines()[0].removeprefix("run directory: ")) for out, _ in outs]
    assert sorted(runs) == [same, same.with_name("same-2")]
    for run in runs:
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["run_dir"] == str(run)
        for name in ("last", "best"):
            ckpt = load_checkpoint(run / "checkpoints" / f"{name}.ckpt")
            assert ckpt["config"]["train"]["run_dir"] == str(run)
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["model_step"] == 20
        train_steps = [int(r["step"]) for r in _rows(run) if r.get("train/loss")]
        assert train_steps == list(range(1, 21)), "one run's rows, each step once"
        assert json.loads((run / "summary.json").read_text())["steps"] == 20
        assert not (run / LOCK_NAME).exists()
    # same seed, same config: the two runs are equal, which also shows neither wrote into the other
    assert _rows(runs[0]) == _rows(runs[1])


# --- the KL benchmark from the CLI -----------------------------------------------------------------


def test_benchmark_writes_into_a_fresh_run_directory_unless_told(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tracked = tmp_path / "benchmarks" / "results" / "kl_accuracy.json"
    tracked.parent.mkdir(parents=True)
    tracked.write_text("{}")
    args = ["benchmark", "kl", "--quick", "--estimators", "analytic", "--dims", "2", "--kls", "1"]
    args += ["--no-extra"]
    for expected in ("benchmark_kl", "benchmark_kl-2"):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"writing to {Path('runs') / expected}\n")
        assert f"wrote {Path('runs') / expected / 'kl_accuracy.json'}" in out
        assert sorted(p.name for p in (tmp_path / "runs" / expected).iterdir()) == [
            "kl_accuracy.json",
            "kl_accuracy.png",
        ]
    assert tracked.read_text() == "{}", "the tracked results are left alone"
    assert main([*args, "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "kl_accuracy.json").is_file()
