"""The command line starts fast: a bad option or config value is reported without importing torch
or Lightning (each in a fresh interpreter, so nothing imported by the test run counts), and the
error types the CLI turns into one-line messages are found where it looks for them."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from implicit_vae import __version__
from implicit_vae.cli import main
from implicit_vae.cli.main import INTERRUPTED, NONFINITE_ERROR, USER_ERRORS
from tiny_runs import TINY_NETWORKS

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# Runs main(argv) in a fresh interpreter; prints the exit code and which heavy modules it imported.
PROBE = """
import sys
from implicit_vae.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "lightning", "numpy", "matplotlib") if m in sys.modules)
print(code, ",".join(heavy) or "-")
"""


def _probe(*argv: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=ENV, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, heavy = proc.stdout.split()[-2:]
    return int(code), heavy, proc.stderr


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["train", "--set", "model.latent_dim=abc"], "model.latent_dim: 'abc' has the wrong type"),
        (["train", "--set", "train.max_step=3"], "unknown config key 'train.max_step'"),
        (["train", "--set", "model.posterior=flow"], "model.posterior: 'flow' is not allowed"),
        (["train", "--config", "/nonexistent.yaml"], "neither a file nor a shipped config"),
        (["train", "--resume", "r", "--config", "x.yaml"], "--config cannot be combined"),
        (["describe", "--set", "train.lr=0"], "train.lr: 0.0 is out of range; expected > 0.0"),
        (["config", "--show", "--set", "data.name=cifar"], "data.name: 'cifar' is not allowed"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_config_is_one_line_without_importing_torch(argv, expected):
    code, heavy, err = _probe(*argv)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert heavy == "-", f"the error path imported {heavy}"


def test_a_bad_value_fails_within_a_second_or_so():
    """Wall time of the console entry point on a bad value: measured 0.2 s on 2 busy CPU cores,
    where importing torch and Lightning alone takes 2-6 s; the bound leaves room for a slow machine."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "implicit_vae.cli", "train", "--set", "model.latent_dim=abc"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2 and "model.latent_dim" in proc.stderr
    assert elapsed < 2.0, f"{elapsed:.2f} s"


def test_version_and_help_import_no_torch(capsys):
    # (tomllib is not in Python 3.10, which the project supports)
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert __version__ == version
    assert _probe("--version")[:2] == (0, "-")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"implicit-vae {version}\n"
    for argv in (["--help"], ["train", "--help"], ["config", "--show"]):
        assert _probe(*argv)[:2] == (0, "-"), argv


@pytest.mark.parametrize("table", [USER_ERRORS, NONFINITE_ERROR, INTERRUPTED])
def test_the_error_types_the_cli_reports_exist_where_it_looks(table):
    """A renamed or moved error class would otherwise turn its one-line message into a traceback."""
    for module, name in table.items():
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), (module, name)
        assert cls.__module__ == module, f"{name} is defined in {cls.__module__}"


def test_compare_offers_the_estimates_evaluation_writes():
    from implicit_vae.cli.compare import ESTIMATES
    from implicit_vae.evaluation.compare import PER_EXAMPLE_KEYS

    assert ESTIMATES == PER_EXAMPLE_KEYS


def test_a_warning_is_one_line_on_stderr(tmp_path):
    """As the console script prints them: ``implicit-vae: warning: <message>``, no source line."""
    sets = [*TINY_NETWORKS, "train.threads=1", "train.max_steps=1", "model.latent_dim=65"]
    sets.append(f"train.run_dir={tmp_path / 'run'}")
    argv = [sys.executable, "-m", "implicit_vae.cli", "train"]
    argv += [arg for item in sets for arg in ("--set", item)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "latent_dim" in line]
    assert warned == [
        "implicit-vae: warning: model.latent_dim: 65 is more than the data's 64 dimensions; the "
        "extra latent dimensions can carry nothing about x"
    ], proc.stderr[-2000:]
