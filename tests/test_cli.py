"""The command line: describe prints the information flow, for the default and a shipped config.
Bad command lines (one line, exit code 2) are in tests/test_bad_inputs.py."""

from __future__ import annotations

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
