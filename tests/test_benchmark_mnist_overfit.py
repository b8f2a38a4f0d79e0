"""benchmarks/mnist_overfit.py: training against validation loss from a run's metrics.csv."""

from __future__ import annotations

import csv
import json

import pytest

from scripts import load_benchmark_script


@pytest.fixture(scope="module")
def bench():
    return load_benchmark_script("mnist_overfit.py")


def _write_metrics(path, train, val):
    """A Lightning-style sparse CSV: train rows and val rows on their own lines."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", "train/loss", "val/loss"])
        writer.writeheader()
        for step, loss in train:
            writer.writerow({"step": step, "train/loss": loss})
        for step, loss in val:
            writer.writerow({"step": step, "val/loss": loss})


def test_summary_numbers_are_exact(bench, tmp_path):
    # Train loss 100 - step/100 every 500 steps to 3,000; the last 1,000 steps hold 2,500 and 3,000.
    train = [(s, 100 - s / 100) for s in range(500, 3001, 500)]
    val = [(1000, 105.0), (2000, 103.0), (3000, 104.0)]
    _write_metrics(tmp_path / "m.csv", train, val)
    s = bench.summarise(bench.read_curves(tmp_path / "m.csv"))
    assert s["steps"] == 3000
    assert s["train_loss_last_1000_steps"] == pytest.approx((75 + 70) / 2)
    assert (s["val_loss_final"], s["val_loss_min"], s["val_loss_min_step"]) == (104.0, 103.0, 2000)
    assert s["generalisation_gap"] == pytest.approx(104.0 - 72.5)


def test_main_writes_json_and_figure_per_results_directory(bench, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        for model in ("vae", "avb_ac"):
            _write_metrics(tmp_path / sub / f"mnist_{model}_metrics.csv",
                           [(s, 120 - s / 50) for s in range(20, 2001, 20)],
                           [(500, 115.0), (1000, 112.0), (2000, 113.0)])
    out = tmp_path / "out"
    argv = ["--results", str(tmp_path / "a"), "first", "--results", str(tmp_path / "b"), "second",
            "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads((out / "mnist_generalisation.json").read_text())
    assert list(report) == ["first", "second"]
    assert set(report["first"]["models"]) == {"vae", "avb_ac"}
    assert (out / "mnist_generalisation.png").stat().st_size > 10_000


def test_bad_directories_and_logs_get_one_line(bench, tmp_path, capsys):
    assert bench.main(["--results", str(tmp_path), "x", "--out", str(tmp_path / "o")]) == 2
    assert "holds no mnist_<model>_metrics.csv" in capsys.readouterr().err
    _write_metrics(tmp_path / "mnist_vae_metrics.csv", [(10, 1.0)], [])
    assert bench.main(["--results", str(tmp_path), "x", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no train/loss or no val/loss" in err
    assert not (tmp_path / "o").exists()
