"""What training writes where a person reads it: a bar on a terminal, plain lines in a log file,
the latest validation loss beside the training loss, and none of Lightning's own remarks."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import warnings

import pytest

from implicit_vae.progress import Progress
from implicit_vae.training.quiet import lightning_quiet
from tiny_runs import TINY_NETWORKS

# Lines Lightning prints or warns with (Fabric, its loggers, its Trainer's data checks).
LIGHTNING_LINES = (
    "GPU available",
    "does not have many workers",
    "litlogger",
    "PossibleUserWarning",
    "Automatic Mixed Precision",
    "LightningDeprecationWarning",
)

# The CLI's train, with Lightning made to speak the way it does on other machines: banners and a
# PossibleUserWarning while the Fabric is made, and a warning from inside the loop's set-up.
NOISY_TRAIN = """
import sys
import implicit_vae.training.fit as fit_module
import implicit_vae.training.module as module
from lightning.fabric.utilities.rank_zero import rank_zero_info, rank_zero_warn
from lightning.fabric.utilities.warnings import PossibleUserWarning

real_fabric, real_setup = fit_module.make_fabric, module.TwoPlayerLoop.setup

def noisy_fabric(*args, **kwargs):
    fabric = real_fabric(*args, **kwargs)
    rank_zero_info("GPU available: False (cuda), used: False")
    rank_zero_info("Tip: for seamless cloud logging, try installing litlogger")
    rank_zero_warn("The 'train_dataloader' does not have many workers which may be a bottleneck.",
                   category=PossibleUserWarning)
    return fabric

def noisy_setup(self):
    real_setup(self)
    rank_zero_warn("a remark of Lightning's while the run directory exists")

fit_module.make_fabric = noisy_fabric
module.TwoPlayerLoop.setup = noisy_setup
from implicit_vae.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 40-step CLI training with a progress bar asked for, stdout and stderr sent to files."""
    tmp = tmp_path_factory.mktemp("logged")
    run = tmp / "run"
    sets = [
        *TINY_NETWORKS,
        "train.progress_bar=true",  # asked for; the files are no terminal
        "train.max_steps=40",
        "train.log_every=5",
        "train.val_every=20",
        "train.batch_size=100000",  # more than the data: our own warning must still show
        "train.precision=bf16-mixed",  # Fabric announces its AMP on the CPU
        f"train.run_dir={run}",
    ]
    argv = ["train"] + [a for s in sets for a in ("--set", s)]
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.run(
            [sys.executable, "-c", NOISY_TRAIN, *argv], stdout=o, stderr=e, env=env, timeout=300
        )
    assert proc.returncode == 0, err.read_text()[-3000:]
    return run, out.read_text(), err.read_text()


def test_progress_in_a_log_file_is_plain_lines(logged_run):
    _, stdout, stderr = logged_run
    assert "\r" not in stdout and "\r" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("train step ")]
    steps = [int(re.match(r"train step (\d+)/40  loss \S+", line).group(1)) for line in lines]
    assert steps == sorted(set(steps)) and steps[-1] == 40 and len(steps) >= 4, lines
    for line in lines:
        assert re.search(r"  \S+ step/s", line), line
    # the validations at steps 20 and 40 are on lines of their own, with their loss
    by_step = dict(zip(steps, lines))
    for step in (20, 40):
        assert re.search(r"  val_loss -?\d", by_step[step]), by_step[step]
    assert "val_loss" not in by_step[steps[0]]  # nothing validated before step 20


def test_lightning_remarks_go_to_the_run_not_the_terminal(logged_run):
    run, stdout, stderr = logged_run
    for text in LIGHTNING_LINES:
        assert text not in stderr and text not in stdout, text
    # our own warning still reaches the user, in the CLI's one-line form
    assert "implicit-vae: warning: train.batch_size: 100000 is more than" in stderr
    kept = (run / "lightning.log").read_text()
    for text in (
        "GPU available",
        "does not have many workers",
        "litlogger",
        "Automatic Mixed Precision",  # Fabric's own banner, not one this test injected
        "while the run directory exists",
    ):
        assert text in kept, text


def test_quiet_passes_other_warnings_and_restores_everything():
    import logging

    from lightning.fabric.utilities.rank_zero import rank_zero_warn

    before_hook = warnings.showwarning
    before = logging.getLogger("lightning.fabric").handlers[:]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with lightning_quiet() as sink:
            rank_zero_warn("from lightning")
            warnings.warn("from us", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["from us"]
    assert any("from lightning" in line for line in sink.lines)
    assert warnings.showwarning is before_hook
    assert logging.getLogger("lightning.fabric").handlers == before


def test_plain_lines_mark_progress_and_validations():
    stream = io.StringIO()
    bar = Progress(100, "train", stream=stream, lines=4, unit="step", terminal=False)
    for step in range(5, 101, 5):
        bar.set_postfix(loss=100.0 - step, val_loss=101.25 if step >= 30 else None)
        bar.update_to(step, line=step == 30)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [re.match(r"train step (\d+)/100", line).group(1) for line in lines] == [
        "25", "30", "50", "75", "100"
    ]  # fmt: skip
    assert "val_loss 101.2" in lines[1] and "val_loss" not in lines[0]
    assert lines[-1].startswith("train step 100/100  loss 0  val_loss 101.2")
    assert "\r" not in stream.getvalue()


def test_a_terminal_gets_the_bar_with_the_validation_loss():
    stream = io.StringIO()
    bar = Progress(10, "train", stream=stream, unit="step", terminal=True)
    bar.set_postfix(loss=3.0, val_loss=101.234)
    bar.update_to(10)
    bar.close()
    assert "\r" in stream.getvalue() and "val_loss=101.2" in stream.getvalue()


def test_closing_writes_the_last_count_once():
    stream = io.StringIO()
    with Progress(1000, "AIS", stream=stream, lines=2, terminal=False) as bar:
        bar.update(7)
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("AIS 7/1000  ") and "it/s" in line
    quiet = io.StringIO()
    with Progress(10, "off", stream=quiet, enabled=False) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
