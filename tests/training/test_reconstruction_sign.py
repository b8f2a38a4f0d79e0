"""One sign for the reconstruction term everywhere a person reads it: ``reconstruction_error`` =
−E_q[log p(x|z)] in nats (lower is better) in metrics.csv, summary.json, the train command's last
line and evaluate's JSON; older runs' files are read with their sign flipped."""

from __future__ import annotations

import csv
import json
import math

from implicit_vae.cli import main
from implicit_vae.evaluation.figures import _read_metrics
from implicit_vae.training.logs import MetricsCSV


def _columns(path):
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_summary_and_metrics_use_the_reconstruction_error(digits_run):
    summary = json.loads((digits_run / "summary.json").read_text())
    for split in ("train", "val", "test"):
        terms = summary[split]
        assert "reconstruction" not in terms
        assert terms["reconstruction_error"] > 0  # Bernoulli digits: −log p(x|z) is positive
    for split in ("val", "test"):  # loss = reconstruction_error + beta * kl, with beta = 1
        terms = summary[split]
        assert math.isclose(terms["loss"], terms["reconstruction_error"] + terms["kl"], rel_tol=1e-6)
    assert "reconstruction_error" in summary["note"]
    fields, rows = _columns(digits_run / "metrics.csv")
    assert {"train/reconstruction_error", "val/reconstruction_error"} <= set(fields)
    assert not any(f.endswith("/reconstruction") for f in fields)
    values = [float(r["val/reconstruction_error"]) for r in rows if r["val/reconstruction_error"]]
    assert len(values) == 3 and all(v > 0 for v in values)


def test_evaluate_reports_the_same_quantity_with_the_same_sign(digits_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(digits_run), "--split", "val", "--ais-steps", "3", "--ais-chains", "2",
            "--is-samples", "4", "--no-ais-curve", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    evaluated = json.loads(out.read_text())["reconstruction_error"]
    trained = json.loads((digits_run / "summary.json").read_text())["val"]["reconstruction_error"]
    assert evaluated > 0 and math.isclose(evaluated, trained, rel_tol=0.15), (evaluated, trained)
    assert f"reconstruction_error  {evaluated:.4f}" in printed


def test_train_prints_the_reconstruction_error(tmp_path, capsys):
    from tiny_runs import TINY_NETWORKS

    sets = [*TINY_NETWORKS, "train.max_steps=5", f"train.run_dir={tmp_path / 'r'}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    last = capsys.readouterr().out.splitlines()
    line = next(x for x in last if x.startswith("steps 5"))
    value = float(line.split("reconstruction_error ")[1].split(",")[0])
    assert value > 0, line


def test_an_old_metrics_file_is_continued_with_one_sign(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,train/loss,train/reconstruction,val/reconstruction\n"
        "5,40.0,-35.5,\n10,38.0,-33.25,-34.0\n15,37.0,-32.0,\n"
    )
    logs = MetricsCSV(path, resume_step=10)  # a resume at step 10 of a run of older versions
    logs.log({"train/loss": 36.0, "train/reconstruction_error": 31.0}, step=15)
    fields, rows = _columns(path)
    assert fields == ["step", "train/loss", "train/reconstruction_error", "val/reconstruction_error"]
    assert [float(r["train/reconstruction_error"]) for r in rows] == [35.5, 33.25, 31.0]
    assert [r["val/reconstruction_error"] for r in rows] == ["", "34.0", ""]


def test_figures_read_an_old_metrics_file_with_the_sign_flipped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,train/reconstruction\n5,-35.5\n10,-33.0\n")
    curves = _read_metrics(path)
    assert "train/reconstruction" not in curves
    assert list(curves["train/reconstruction_error"][1]) == [35.5, 33.0]
