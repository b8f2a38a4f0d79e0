"""benchmarks/kl_audit.py: goals and table from audit results, and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from pngs import decoded_png
from scripts import load_benchmark_script


@pytest.fixture(scope="module")
def bench():
    return load_benchmark_script("kl_audit.py")


def _audit(width: float, diag: float, full: float) -> dict:
    cell = {"status": "ok", "wall_time_s": 1.0, "inside_bracket": 1.0}
    return {
        "examples": 4,
        "settings": {"mixing": 1000},
        "truth": {"lower": 10.0, "upper": 10.0 + width, "width": width, "max_width": width},
        "estimators": {
            "avb_ac[diagonal]": {**cell, "estimate": 10 * (1 + diag), "relative_error": diag},
            "avb_ac[full]": {**cell, "estimate": 10 * (1 + full), "relative_error": full},
            "knn": {**cell, "status": "failed: boom", "relative_error": None},
        },
    }


@pytest.mark.parametrize(
    ("width", "diag", "full", "bracket_met", "avb_ac_met"),
    [
        (0.01, 0.02, -0.049, True, True),
        (0.051, 0.0, 0.0, False, True),
        (0.01, 0.02, -0.051, True, False),  # both contrasts must meet it
    ],
)
def test_goals_are_judged_on_the_largest_bracket_and_every_contrast(
    bench, width, diag, full, bracket_met, avb_ac_met
):
    g = bench.goals({"m": _audit(width, diag, full)})["m"]
    assert (g["bracket_met"], g["avb_ac_met"]) == (bracket_met, avb_ac_met)


def test_table_shows_failures_as_their_status_and_errors_signed(bench):
    audits = {"m": _audit(0.01, 0.02, -0.03)}
    report = {"audits": audits, "goals": bench.goals(audits), "table": bench.summarise(audits),
              "command": "python benchmarks/kl_audit.py"}  # fmt: skip
    text = bench.markdown(report)
    assert "| `avb_ac[full]` |" in text and "-3.0% (100% in)" in text
    assert "| `knn` |" in text and text.split("| `knn` |")[1].split("\n")[0].strip().endswith(
        "failed |"
    )
    assert "bracket width 0.0100" in text and "met" in text


def test_unknown_model_is_one_line(bench, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["--models", "digits,cifar"])
    assert exit_.value.code == 2 and "unknown ['cifar']" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_digits_audit_end_to_end(bench, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--models", "digits", "--examples", "2", "--steps", "5", "--train-steps", "20",
            "--mixing", "20", "--truth-samples", "8", "--workdir", str(tmp_path / "w"),
            "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads((out / "kl_audit.json").read_text())
    truth = report["audits"]["digits"]["truth"]
    assert truth["kind"] == "bracket" and truth["lower"] <= truth["upper"] + 0.5
    assert (out / "kl_audit.md").read_text().startswith("- **digits**")
    decoded_png(out / "kl_audit_digits.png")
