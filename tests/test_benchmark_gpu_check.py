"""benchmarks/gpu_check.py in its quick CPU mode: every job and precision is trained, evaluated with
AIS and resumed exactly, and the report is written. (The real figures come from a CUDA machine.)"""

from __future__ import annotations

import json
import math

import pytest

from scripts import load_benchmark_script


def test_quick_cpu_mode_writes_the_report(tmp_path, monkeypatch, capsys):
    gpu_check = load_benchmark_script("gpu_check.py", "gpu_check_benchmark")
    monkeypatch.setattr("implicit_vae.training.report.write_plots", lambda *a, **k: None)
    monkeypatch.setitem(gpu_check.QUICK, "steps", 6)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == "gpu_check" and report["quick"] is True
    assert set(report["jobs"]) == {"default", "mnist_avb_ac"}
    for job in report["jobs"].values():
        assert job["exact_resume"] is True
        for key in ("cpu/32-true", "cpu/bf16-mixed"):
            assert job[key]["steps"] == 6 and job[key]["steps_per_s"] > 0
            assert math.isfinite(job[key]["train_loss"]) and math.isfinite(job[key]["ais"]["log_px"])
            assert job[key]["ais"]["images"] == 8
    assert "wrote" in capsys.readouterr().out


def test_cuda_mode_without_a_gpu_is_refused(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    gpu_check = load_benchmark_script("gpu_check.py", "gpu_check_refusal")
    assert gpu_check.main([]) == 2
    assert "--device cpu" in capsys.readouterr().err
