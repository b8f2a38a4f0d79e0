"""benchmarks/bound_sample_limit.py: NWJ and DV with the exact critic, against the true KL."""

from __future__ import annotations

import json

import pytest

from implicit_vae.benchmarks.cases import gaussian_case
from scripts import load_benchmark_script


@pytest.fixture(scope="module")
def bench():
    return load_benchmark_script("bound_sample_limit.py")


def test_exact_critic_recovers_a_small_kl(bench):
    """At KL = 1 the exact log-ratio gives both bounds within 3 % from 10⁵ samples (seed 0);
    the bounds agree with each other to first order (log u ≈ u − 1 near u = 1)."""
    nwj, dv = bench.exact_critic_estimates(gaussian_case(2, 1.0), 100_000, seed=0)
    assert nwj == pytest.approx(1.0, rel=0.03) and dv == pytest.approx(1.0, rel=0.03)
    assert nwj == pytest.approx(dv, abs=0.01)


def test_exact_critic_dv_fails_at_a_large_kl_from_finite_samples(bench):
    """At KL = 50 no prior sample of 10⁴ reaches q's region, the normaliser is far too small and DV
    overshoots by more than 10x, whatever the seed: the limit no critic can remove."""
    case = gaussian_case(2, 50.0)
    for seed in range(3):
        _, dv = bench.exact_critic_estimates(case, 10_000, seed=seed)
        assert dv > 10 * 50.0


def test_quick_run_writes_the_json(bench, tmp_path):
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bound_sample_limit.json").read_text())
    assert len(report["cells"]) == 2 * 3 * 2
    cell = report["cells"][0]
    assert {"nwj", "dv"} <= set(cell) and 0.0 <= cell["dv"]["within_5_percent"] <= 1.0
