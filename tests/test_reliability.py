"""Crash and resume, determinism, and failed runs that leave earlier outputs alone.

The crash test really kills a training process with SIGKILL between two checkpoints, resumes it from
the last one, and requires every number a checkpoint holds to equal those of an unbroken run with
``torch.equal``: weights of model and critic, both optimizers, step counter, and the torch, numpy and
python RNG states (style.md R6, Lightning ``test_ema_resume``, HF
``test_resume_training_with_randomness``). Unlike Lightning's test, shuffling, dynamic binarisation
and stochastic posterior samples stay on, so data order and RNG restoration are really exercised.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_vae.cli import main
from implicit_vae.training.checkpoint import CheckpointError, load_checkpoint

# Tiny networks; AVB with adaptive contrast and the noise-basis encoder (a critic and two
# optimizers); digits with dynamic binarisation (data order and Bernoulli draws depend on the RNG).
SMALL = [
    "train.progress_bar=false",
    "model.hidden=[32]",
    "divergence.critic_width=32",
    "divergence.critic_blocks=1",
    "model.n_basis=2",
    "train.batch_size=32",
    "train.threads=1",
]
RUN = [
    *SMALL,
    "data.name=digits",
    "data.binarize=dynamic",
    "divergence.name=avb_ac",
    "model.posterior=noise_basis",
    "train.max_steps=60",
    "train.checkpoint_every=10",
    "train.val_every=7",
    "train.log_every=1",
    "train.seed=3",
]
KILL_AFTER_STEP = 20

# ``python -m implicit_vae.cli`` with each batch delayed by 50 ms, so that the kill lands mid-run
# rather than after the last step. The delay paces the run; it changes no number.
PACED_CLI = """
import runpy, sys, time
from implicit_vae.data import stream
_batch = stream.BatchStream.__getitem__
def _paced(self, k):
    time.sleep(0.05)
    return _batch(self, k)
stream.BatchStream.__getitem__ = _paced
sys.argv = ["implicit-vae", *sys.argv[1:]]
runpy.run_module("implicit_vae.cli", run_name="__main__", alter_sys=True)
"""


def _argv(run_dir: Path, *extra: str) -> list[str]:
    out = []
    for item in [*RUN, f"train.run_dir={run_dir}", *extra]:
        out += ["--set", item]
    return out


@pytest.fixture(scope="module", autouse=True)
def _no_plots():
    """Figures cost seconds per run and no number here depends on them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("implicit_vae.training.report.write_plots", lambda *args, **kwargs: None)
        yield


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> Path:
    """An uninterrupted 60-step run: the reference for the crash and determinism tests."""
    run = tmp_path_factory.mktemp("reliability") / "unbroken"
    assert main(["train", *_argv(run)]) == 0
    return run


# --- helpers --------------------------------------------------------------------------------------


def _ckpt(run: Path, name: str = "last") -> dict:
    return load_checkpoint(run / "checkpoints" / f"{name}.ckpt")


def _rows(run: Path) -> list[dict[str, str]]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _max_logged_step(run: Path) -> int:
    steps = []
    for row in _rows(run):
        try:
            steps.append(int(float(row["step"])))
        except (TypeError, ValueError):  # a row being written right now
            continue
    return max(steps, default=-1)


def _assert_same(a, b, where: str = "checkpoint") -> None:
    """Exact equality of nested checkpoint contents: tensors with torch.equal, the rest with ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _comparable(ckpt: dict) -> dict:
    """A checkpoint without what legitimately differs between two runs: wall time and run dir."""
    out = {k: v for k, v in ckpt.items() if k != "wall_time"}
    out["config"] = {**ckpt["config"], "train": {**ckpt["config"]["train"], "run_dir": None}}
    return out


def _summary(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    summary.pop("wall_time_s")
    return summary


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _kill_between_checkpoints(run: Path, log: Path) -> None:
    """Start the paced CLI and SIGKILL it once a checkpoint at step >= KILL_AFTER_STEP exists and
    later steps have been logged (so the kill discards work the checkpoint does not hold)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", PACED_CLI, "train", *_argv(run)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"training ended ({proc.returncode}) unkilled: {log.read_text()[-2000:]}"
                )
            try:
                step = _ckpt(run)["model_step"]
            except CheckpointError:  # no checkpoint yet
                step = -1
            if step >= KILL_AFTER_STEP and _max_logged_step(run) > step:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        else:
            pytest.fail("training did not reach the kill point in time")
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- crash and resume ------------------------------------------------------------------------------


def test_sigkill_mid_run_then_resume_equals_an_unbroken_run(tmp_path, unbroken):
    run = tmp_path / "killed"
    _kill_between_checkpoints(run, tmp_path / "stderr.txt")

    at_kill = _ckpt(run)["model_step"]
    rows_at_kill = _rows(run)
    assert KILL_AFTER_STEP <= at_kill < 60
    assert _max_logged_step(run) > at_kill, "the kill should discard steps after the checkpoint"
    assert not (run / "summary.json").exists()

    assert main(["train", "--resume", str(run)]) == 0

    a, b = _ckpt(unbroken), _ckpt(run)
    assert a["model_step"] == b["model_step"] == 60
    for key in a["model"]:  # model and critic weights: the clearest message on failure
        assert torch.equal(a["model"][key], b["model"][key]), key
    for name in ("optimizers", "rng", "best_val", "model_step"):
        _assert_same(a[name], b[name], name)
    assert np.array_equal(a["rng"]["numpy"]["keys"].numpy(), b["rng"]["numpy"]["keys"].numpy())
    _assert_same(_comparable(a), _comparable(b))
    _assert_same(_comparable(_ckpt(unbroken, "best")), _comparable(_ckpt(run, "best")))
    assert _summary(run) == _summary(unbroken)

    # metrics.csv: rows up to the checkpoint kept as written, the discarded steps logged once more,
    # no step twice, and the same rows as the unbroken run's.
    rows = _rows(run)
    kept = [r for r in rows_at_kill if int(float(r["step"])) <= at_kill]
    assert rows[: len(kept)] == kept and len(kept) >= at_kill
    keys = [(r["step"], tuple(k for k, v in r.items() if v)) for r in rows]
    assert len(keys) == len(set(keys)), "a step was logged twice"
    assert rows == _rows(unbroken)


def _scalar_events(run: Path) -> list[tuple[str, int]]:
    """(tag, step) of every scalar in every TensorBoard event file of a run, as written."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for path in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            out += [(v.tag, event.step) for v in event.summary.value]
    return out


def test_sigint_stops_after_the_step_saves_it_and_resumes_exactly(tmp_path, unbroken, capsys):
    """Ctrl-C: the step finishes, last.ckpt is written at it, the CLI says where to resume (exit
    130); meanwhile a resume of the live run is refused; the resumed run equals an unbroken one and
    logs no step twice, in metrics.csv or TensorBoard."""
    run, log = tmp_path / "interrupted", tmp_path / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", PACED_CLI, "train", *_argv(run)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout.readline() == f"run directory: {run}\n", "printed when training starts"
        deadline = time.monotonic() + 240
        while _max_logged_step(run) < KILL_AFTER_STEP - 7:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "training did not reach the interrupt point"
            time.sleep(0.005)
        # another process holds the run: a resume is refused, in one line naming it
        capsys.readouterr()
        assert main(["train", "--resume", str(run)]) == 2
        refused = capsys.readouterr().err.strip()
        assert len(refused.splitlines()) == 1 and f"in use by pid {proc.pid} on host " in refused
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    message = log.read_text().strip().splitlines()[-1]
    step = int(message.split("interrupted at step ")[1].split(";")[0])
    assert message == (
        f"implicit-vae: interrupted at step {step}; resume with: implicit-vae train --resume {run}"
    )
    assert rest == "" and "Traceback" not in log.read_text()
    assert KILL_AFTER_STEP - 7 <= step < 60
    assert _ckpt(run)["model_step"] == step == _max_logged_step(run), "saved at the step it names"
    assert not (run / ".lock").exists() and not (run / "summary.json").exists()

    assert main(["train", "--resume", str(run)]) == 0
    a, b = _ckpt(unbroken), _ckpt(run)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    _assert_same(_comparable(a), _comparable(b))
    rows = _rows(run)
    train_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert train_steps == list(range(1, 61)), "strictly increasing, no step twice"
    assert rows == _rows(unbroken)
    events = _scalar_events(run)
    assert len(events) == len(set(events)), "TensorBoard got a step twice"
    assert sorted(events) == sorted(_scalar_events(unbroken))


def test_training_checkpoints_load_with_plain_weights_only_torch_load(unbroken):
    for name in ("last", "best"):
        raw = torch.load(unbroken / "checkpoints" / f"{name}.ckpt", weights_only=True)
        assert raw["format_version"] >= 1 and raw["model_step"] >= 1
        assert len(raw["optimizers"]) == 2  # model and critic


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_the_same_numbers_and_another_seed_does_not(tmp_path, unbroken):
    again, other = tmp_path / "again", tmp_path / "other"
    assert main(["train", *_argv(again)]) == 0
    assert main(["train", *_argv(other, "train.seed=4", "train.max_steps=20")]) == 0
    assert _summary(again) == _summary(unbroken)
    _assert_same(_comparable(_ckpt(again)), _comparable(_ckpt(unbroken)))
    assert _rows(again) == _rows(unbroken)
    first = _ckpt(unbroken, "last")["model"]
    different = _ckpt(other)["model"]
    assert not all(torch.equal(first[k], different[k]) for k in first)


def test_evaluation_gives_the_same_numbers_twice(tmp_path, unbroken, capsys):
    tiny = ["--ais-steps", "5", "--ais-chains", "2", "--is-samples", "4", "--max-examples", "8"]
    results = []
    for name in ("one.json", "two.json"):
        argv = ["evaluate", str(unbroken), *tiny, "--no-ais-curve", "--json", str(tmp_path / name)]
        assert main(argv) == 0
        result = json.loads((tmp_path / name).read_text())
        result["ais"].pop("wall_time_s")
        results.append(result)
    capsys.readouterr()
    assert isinstance(results[0]["log_px_ais"], float)
    assert results[0] == results[1]


# --- failed runs leave earlier outputs alone -----------------------------------------------------------


def test_failed_resumes_and_runs_change_no_file_of_an_existing_run(tmp_path, unbroken, capsys):
    run = tmp_path / "run"
    shutil.copytree(unbroken, run)
    before = _hashes(run)
    failing = [
        ["train", "--resume", str(run), "--set", "model.latent_dim=3"],  # not resumable
        ["train", "--resume", str(run), "--set", "train.batch_size=-1"],
        ["train", "--resume", str(run)],  # already at max_steps
        ["train", "--resume", str(run), "--config", "default"],
        ["evaluate", str(run), "--json", str(tmp_path / "missing" / "out.json")],
        ["evaluate", str(run), "--ais-steps", "0"],
        ["train", *_argv(run, "train.batch_size=0")],  # a new run aimed at the same directory
        ["train", *_argv(run, "data.name=file", f"data.path={tmp_path / 'absent.npy'}")],
    ]
    for argv in failing:
        assert main(argv) == 2, argv
    assert len(capsys.readouterr().err.strip().splitlines()) == len(failing)  # one line each
    assert _hashes(run) == before


def test_resume_with_broken_data_changes_no_file_of_the_run(tmp_path, capsys):
    data = tmp_path / "data.csv"
    rows = np.random.default_rng(0).integers(0, 2, (60, 6))
    np.savetxt(data, rows, fmt="%d", delimiter=",")
    run = tmp_path / "run"
    extra = ["data.name=file", f"data.path={data}", "train.max_steps=10", "train.val_every=5"]
    assert main(["train", *_argv(run, *extra)]) == 0
    before = _hashes(run)

    data.write_text(data.read_text().replace("0,1", "0,x", 1))  # text in a numeric column
    assert main(["train", "--resume", str(run), "--set", "train.max_steps=20"]) == 2
    assert "is not a number" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--ais-steps", "2"]) == 2

    np.savetxt(data, rows[:, :5], fmt="%d", delimiter=",")  # one column fewer: another model
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.max_steps=20"]) == 2
    assert "5 columns, but the data the run was made with had 6" in capsys.readouterr().err
    assert _hashes(run) == before
