"""The command line: describe, one-line errors with exit code 2, shipped configs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from implicit_vae.cli import main


def test_describe_prints_the_information_flow(capsys):
    assert main(["describe"]) == 0
    out = capsys.readouterr().out
    for piece in [
        "NoiseBasisPosterior",
        "z [1, 128, 8]",
        "BernoulliLikelihood",
        "StandardNormal",
        "AVBAdaptiveContrast critic",
        "adversarial loss",
        "KL estimate [128]",
        "params",
    ]:
        assert piece in out, piece


def test_describe_shipped_toy_config(capsys):
    assert main(["describe", "--config", "toy4_avb"]) == 0
    assert "ImplicitPosterior" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["train", "--set", "train.max_step=3"], "unknown config key 'train.max_step'"),
        (["train", "--set", "train.batch_size=-4"], "train.batch_size: -4 is out of range"),
        (
            ["train", "--set", "model.posterior=flow"],
            "expected one of gaussian, gaussian_full, implicit, noise_basis",
        ),
        (
            ["train", "--set", "divergence.name=analytic", "--set", "model.posterior=implicit"],
            "choose one of avb, avb_ac",
        ),
        (
            ["train", "--set", "data.name=file", "--set", "data.path=/nonexistent/x.npy"],
            "/nonexistent/x.npy",
        ),
        (["train", "--config", "/nonexistent.yaml"], "neither a file nor a shipped config"),
        (["train", "--resume", "/nonexistent-run"], "does not exist"),
        (["train", "--set", "novalue"], "not of the form section.key=value"),
        (["describe", "--set", "model.likelihood=poisson"], "expected one of bernoulli, gaussian"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_unknown_command_and_missing_argument_are_one_line_errors():
    for argv in (["fly"], ["train", "--resume"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "implicit_vae.cli", *argv], capture_output=True, text=True
        )
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_bernoulli_likelihood_refuses_continuous_data(capsys):
    assert main(["train", "--set", "data.binarize=none", "--set", "train.progress_bar=false"]) == 2
    assert "needs binary data" in capsys.readouterr().err
