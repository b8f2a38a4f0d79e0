"""``implicit-vae evaluate``: --no-exact, --ais-curve-examples and the printed AIS curve, which
names the examples it is on; progress in a captured stream is plain lines."""

from __future__ import annotations

import json

import pytest

from implicit_vae.cli import main
from tiny_runs import TINY_NETWORKS

QUICK = ["--ais-steps", "40", "--ais-chains", "2", "--ais-leapfrog", "2", "--is-samples", "4",
         "--max-examples", "12"]  # fmt: skip


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("toy") / "run"
    sets = [*TINY_NETWORKS, "data.name=toy4", "model.latent_dim=2", "train.max_steps=10",
            f"train.run_dir={run}"]  # fmt: skip
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    return run


def test_no_exact_skips_the_quadrature(toy_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(toy_run), *QUICK, "--no-exact", "--no-ais-curve",
                 "--json", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert "log_px_exact" not in result and "log_px_exact" in result["skipped"]
    assert "log_px_exact  skipped:" in printed
    assert "ais_versus_steps" not in result


def test_the_printed_curve_is_on_the_headline_examples(toy_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(toy_run), *QUICK, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    curve = result["ais_versus_steps"]
    assert curve["examples"] == curve["of_examples"] == result["examples"] == 12
    assert "AIS vs annealing steps, on all 12 examples:" in captured.out
    last = captured.out.split("on all 12 examples:")[1].splitlines()[3]
    assert last.split()[:2] == ["40", f"{result['log_px_ais']:.4f}"]  # the headline number
    assert "log_px_exact" in result  # computed by default for a 2-D latent
    assert "\r" not in captured.err and "\nAIS curve, 10 steps 40/40 " in captured.err


def test_a_subset_curve_is_labelled_as_one(toy_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(toy_run), *QUICK, "--no-exact", "--ais-curve-examples", "5",
                 "--no-progress", "--json", str(out)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    curve = json.loads(out.read_text())["ais_versus_steps"]
    assert (curve["examples"], curve["of_examples"], curve["subset"]) == (5, 12, True)
    assert "on the first 5 of 12 examples (a subset):" in captured.out
    assert captured.err == ""  # --no-progress


def test_a_bad_curve_size_is_one_line(capsys):
    assert main(["evaluate", "somewhere", "--ais-curve-examples", "some"]) == 2
    err = capsys.readouterr().err
    assert "--ais-curve-examples" in err and "'all'" in err and len(err.splitlines()) == 1
