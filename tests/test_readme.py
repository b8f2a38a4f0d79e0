"""The README's promises: it opens with its two commands, its library example runs, its links
resolve, and CI runs the README's test command (after a strict build of the docs)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_two = re.findall(r"```(\w*)\n(.*?)```", text, re.S)[:2]
    assert [lang for lang, _ in first_two] == ["bash", "bash"]
    assert "implicit-vae train" in first_two[0][1]
    assert "pytest" in first_two[1][1]


def test_ci_runs_the_readme_test_command():
    install_and_test = _blocks("bash")[1].strip()
    test_command = install_and_test.split("&&")[-1].strip()  # "python -m pytest -q"
    assert test_command.replace("python ", "python3 ") in (ROOT / ".ci" / "run").read_text()


def test_library_example_runs(tmp_path):
    example = next(b for b in _blocks("python") if "critic_opt" in b)
    # The README's next block evaluates that model with AIS: run it too, on fewer steps.
    honest = next(b for b in _blocks("python") if "ais_log_likelihood" in b)
    script = tmp_path / "example.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + example.replace("range(200)", "range(20)")
                      + honest.replace("steps=1000", "steps=5"))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rec, kl, log_px, stderr = map(float, re.findall(r"-?\d+\.\d+", proc.stdout))
    assert rec < 0 and math.isfinite(kl)  # a log-likelihood and a finite KL estimate
    assert log_px < 0 and stderr >= 0  # AIS: a log-probability of binary data, and its s.e.


def test_readme_links_resolve():
    """Every relative link in the README (into docs/, mostly) names a file that exists."""
    text = (ROOT / "README.md").read_text()
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert any(link.startswith("docs/") for link in links)
    missing = [link for link in links if link and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_ci_builds_the_docs_strictly():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".[test,docs]" in ci and "mkdocs build --strict" in ci
