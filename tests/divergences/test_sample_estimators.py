"""Targeted accuracy tests of kl_dv, kde, knn and stein against closed-form Gaussian KLs.

q = N(μ, s²I) against p = N(0, I) (:func:`implicit_vae.benchmarks.cases.gaussian_case`), every
estimate through ``estimate_divergence`` with a fixed seed; tolerances are stated per test.
"""

from __future__ import annotations

import math

import pytest
import torch

from implicit_vae.benchmarks.cases import gaussian_case
from implicit_vae.divergences import ESTIMATORS, estimate_divergence
from implicit_vae.divergences.distances import kth_nn_log_dist, pairwise_sq_dists
from implicit_vae.divergences.kernel import likelihood_cv_log_scale


def _measure(name: str, dim: int, kl: float, **options) -> float:
    case = gaussian_case(dim, kl)
    return estimate_divergence(
        name, case.sample_q, case.sample_p, log_p=case.log_p, seed=0, p_is_standard_normal=True,
        **options,
    )


SMALL = {"steps": 600, "width": 32, "blocks": 1, "eval_samples": 2_000}


def test_dv_does_not_run_away_at_kl_ten():
    # The minibatch DV objective drove this cell (128 × 2-block critic) to −9·10⁶ nats; the
    # JS-trained critic's DV readout stays finite and within 50 % (measured −46 %: a large-KL DV
    # estimate from 2,000 prior samples cannot be much better, see DonskerVaradhan).
    value = _measure("kl_dv", 2, 10.0, **SMALL)
    assert value == pytest.approx(10.0, rel=0.5), value


@pytest.mark.parametrize("objective", ["js", "nwj"])
def test_dv_readout_is_accurate_at_kl_one(objective):
    # measured +2.0 % (js) and +0.9 % (nwj)
    value = _measure("kl_dv", 2, 1.0, critic_objective=objective, **SMALL)
    assert value == pytest.approx(1.0, rel=0.05), value


def test_dv_rejects_an_unknown_objective():
    with pytest.raises(ValueError, match="critic_objective"):
        ESTIMATORS["kl_dv"](1, 2, critic_objective="mine")


def test_likelihood_cv_finds_the_best_bandwidth_multiplier():
    # 8-D standard normal, n = 2,000: the LOO log-likelihood peaks near c ≈ 1.2 of Scott's rule.
    torch.manual_seed(0)
    n, dim = 2_000, 8
    z = torch.randn(1, n, dim)
    u = z / (z.std(1, keepdim=True) * n ** (-1.0 / (dim + 4)))
    sq = pairwise_sq_dists(u, u).masked_fill(torch.eye(n, dtype=torch.bool), math.inf)
    assert float(likelihood_cv_log_scale(sq, dim).exp()) == pytest.approx(1.2, abs=0.15)


def test_cv_bandwidth_beats_scott_at_eight_dimensions():
    # D = 8, KL = 1, n = 3,000: both under-estimate (likelihood CV measured −27 %); the KDE's
    # curse of dimensionality stays visible, but CV's bias is the smaller.
    scott = _measure("kde", 8, 1.0, steps=0, eval_samples=3_000, bandwidth="scott")
    cv = _measure("kde", 8, 1.0, steps=0, eval_samples=3_000)
    assert scott < cv < 1.0, (scott, cv)
    assert cv == pytest.approx(1.0, rel=0.35)


def test_nearest_neighbour_distances_are_exact_for_close_points():
    # Two points 1e-5 apart, far from the origin: the expanded ‖a‖² + ‖b‖² − 2a·b loses them in
    # float32 cancellation; the recomputed distance is exact to float32 precision.
    a = torch.tensor([[[100.0, 100.0], [100.0, 100.00001]]])
    a = torch.cat([a, torch.zeros(1, 1, 2)], dim=1)
    log_rho = kth_nn_log_dist(a, a, 1, exclude_self=True)
    assert torch.isfinite(log_rho).all()
    gap = float(a[0, 1, 1] - a[0, 0, 1])
    assert float(log_rho[0, 0].exp()) == pytest.approx(gap, rel=1e-3)


@pytest.mark.parametrize("name", ["knn", "stein"])
def test_nearest_neighbour_estimates_at_two_dimensions(name):
    # KL = 1 and 10 at D = 2 with 4,000 samples: within 10 % (knn's KL = 10 error is mostly the
    # variance of the few prior samples near q).
    for kl in (1.0, 10.0):
        value = _measure(name, 2, kl, steps=0, eval_samples=4_000)
        assert value == pytest.approx(kl, rel=0.10), (name, kl, value)


def test_estimate_on_posterior_matches_the_sampler_path_and_refuses_bad_input():
    """On the semi-implicit case (exact log q) the posterior path of a density-free estimator
    agrees with the sampler path to within their Monte Carlo noise (both 4,000 draws, knn at
    d = 2: s.e. ≈ 0.03 nat); a batch of inputs and a posterior the estimator cannot read are
    refused with one line."""
    from implicit_vae.benchmarks.cases import semi_implicit_case
    from implicit_vae.divergences import estimate_on_posterior
    from implicit_vae.posteriors import GaussianPosterior

    case = semi_implicit_case(2)
    x = torch.zeros(1, 1)
    direct = estimate_on_posterior("knn", case.posterior, case.prior, x, samples=4000, k=5)
    sampled = estimate_divergence(
        "knn", case.sample_q, case.sample_p, log_p=case.log_p, eval_samples=4000, k=5
    )
    assert abs(direct - sampled) < 0.15
    with pytest.raises(ValueError, match="one input"):
        estimate_on_posterior("knn", case.posterior, case.prior, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="SemiImplicitPosterior"):
        estimate_on_posterior("sivi", GaussianPosterior(1, 2), case.prior, x)
