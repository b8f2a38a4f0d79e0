"""benchmarks/mnist_posterior_shape.py: the 1-D KL estimate behind the critic-charge lower bound,
checked against exact answers (no MNIST needed; the script's run on a tiny MNIST model is tested in
test_benchmark_mnist.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from scripts import load_benchmark_script

shape = load_benchmark_script("mnist_posterior_shape.py")
N = 20_000  # draws per estimate, as for the trained posteriors


def _exact_kl_to_standard_normal(dist) -> float:
    """KL(dist ‖ N(0, 1)) by adaptive quadrature."""
    integrand = lambda u: dist.pdf(u) * (dist.logpdf(u) - stats.norm.logpdf(u))  # noqa: E731
    return integrate.quad(integrand, -np.inf, np.inf, limit=200)[0]


def _unit_variance_student_t(nu: float):
    return stats.t(nu, scale=np.sqrt((nu - 2) / nu))


@pytest.mark.parametrize(
    ("name", "dist", "tolerance"),
    [
        ("standard normal", stats.norm(), 0.02),
        ("narrower normal", stats.norm(scale=0.7), 0.03),
        ("student-t, 5 dof", _unit_variance_student_t(5.0), 0.03),
        ("student-t, 3 dof", _unit_variance_student_t(3.0), 0.06),
    ],
)
def test_marginal_kl_matches_quadrature(name, dist, tolerance):
    """Mean of 4 estimates from 20,000 draws each within ``tolerance`` nat of the exact KL; the
    heavier the tails, the wider the tolerance (3 dof has an infinite fourth moment)."""
    rng = np.random.default_rng(0)
    estimates = [shape.marginal_kl_1d(dist.rvs(N, random_state=rng)) for _ in range(4)]
    exact = _exact_kl_to_standard_normal(dist)
    assert abs(np.mean(estimates) - exact) < tolerance, (name, estimates, exact)


def test_marginal_kl_of_a_peaked_heavy_tailed_mixture_errs_low_not_high():
    """98 % N(0, 0.68²) + 2 % N(0, 5.2²): unit variance, kurtosis ≈ 44 as in the worst trained
    posterior. Within 0.05 nat of the exact value (trapezoid quadrature), and never above it by
    more than 0.03 nat, so as a lower bound it is safe."""
    rng = np.random.default_rng(1)
    grid = np.linspace(-60.0, 60.0, 200_001)
    pdf = 0.98 * stats.norm.pdf(grid, 0, 0.68) + 0.02 * stats.norm.pdf(grid, 0, 5.2)
    exact = np.trapezoid(pdf * (np.log(pdf) - stats.norm.logpdf(grid)), grid)
    estimates = []
    for _ in range(4):
        wide = rng.random(N) < 0.02
        estimates.append(shape.marginal_kl_1d(np.where(wide, 5.2, 0.68) * rng.standard_normal(N)))
    assert abs(np.mean(estimates) - exact) < 0.05
    assert max(estimates) < exact + 0.03
