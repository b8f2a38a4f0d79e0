"""`implicit-vae evaluate` writes per-example values; `implicit-vae compare` pairs two of them."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from implicit_vae.cli import main
from tiny_runs import TINY_NETWORKS

EVAL = ["--ais-steps", "3", "--ais-chains", "2", "--ais-leapfrog", "2", "--is-samples", "4",
        "--no-ais-curve"]  # fmt: skip


def _train(run, *extra: str) -> None:
    argv = ["train"]
    for item in [*TINY_NETWORKS, "train.max_steps=6", "train.val_every=3", f"train.run_dir={run}",
                 *extra]:  # fmt: skip
        argv += ["--set", item]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """Two digits runs (a Gaussian VAE and AVB-AC) evaluated on the same 12 test digits, plus the
    VAE on 10 digits (other data)."""
    root = tmp_path_factory.mktemp("compare")
    _train(root / "vae", "model.posterior=gaussian", "divergence.name=analytic")
    _train(root / "ac")
    out = {}
    for name, run, n in (("vae", "vae", 12), ("ac", "ac", 12), ("vae10", "vae", 10)):
        path = root / f"{name}.json"
        assert main(["evaluate", str(root / run), *EVAL, "--max-examples", str(n),
                     "--json", str(path)]) == 0  # fmt: skip
        out[name] = path
    return out


def test_evaluate_writes_per_example_values_matching_its_means(evaluations):
    for name in ("vae", "ac"):
        result = json.loads(evaluations[name].read_text())
        saved = torch.load(evaluations[name].with_name(f"{name}_per_example.pt"))
        assert saved["log_px_ais"].shape == (12,) and saved["log_px_ais_stderr"].shape == (12,)
        assert saved["log_px_ais"].mean().item() == pytest.approx(result["log_px_ais"], abs=1e-4)
        assert ("log_px_is" in saved) == (name == "vae")  # IS only with an explicit posterior
        assert saved["split"] == "test" and len(saved["data_sha256"]) == 64


def test_compare_into_a_closed_pipe_stops_quietly(evaluations):
    """`implicit-vae compare A B | head -1` when the reader has gone before the first line: the
    command must stop without a traceback (the read end is closed before the child, which first
    imports torch, gets to print)."""
    a = evaluations["ac"].with_name("ac_per_example.pt")
    b = evaluations["vae"].with_name("vae_per_example.pt")
    call = f"main(['compare', {str(a)!r}, {str(b)!r}])"
    code = f"import sys; from implicit_vae.cli import main; sys.exit({call})"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    child.stdout.close()
    errors = child.stderr.read()
    assert child.wait(timeout=120) == 1
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors


def test_compare_prints_the_paired_difference(evaluations, capsys):
    a = evaluations["ac"].with_name("ac_per_example.pt")
    b = evaluations["vae"].with_name("vae_per_example.pt")
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    diff = torch.load(a)["log_px_ais"] - torch.load(b)["log_px_ais"]
    assert f"{diff.mean().item():+.3f} ± {diff.std().item() / math.sqrt(12):.3f}" in printed
    assert "over 12 examples" in printed


@pytest.mark.parametrize(
    "files, extra, message",
    [
        (("ac", "vae10"), [], "different data"),
        (("ac", "vae"), ["--estimate", "log_px_is"], "holds no log_px_is"),
        (("ac", "missing"), [], "does not exist"),
        (("ac", "json"), [], "not a per-example file"),
    ],
)
def test_compare_refuses_bad_input_in_one_line(evaluations, capsys, files, extra, message):
    root = evaluations["vae"].parent

    def path(name):
        return evaluations["vae"] if name == "json" else root / f"{name}_per_example.pt"

    capsys.readouterr()
    assert main(["compare", *(str(path(f)) for f in files), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
