"""The importance-weighted objective (``ImplicitVAE(objective="iw")``) against exact answers: a
linear-Gaussian model with a closed-form log p(x), where the exact posterior makes every importance
weight equal p(x), and a wider posterior gives bounds that tighten with the number of samples
towards log p(x) without passing it; for the exact densities and for SIVI's mixture. Plus its
refusals and its validation loss in training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from implicit_vae.divergences import ESTIMATORS
from implicit_vae.likelihoods import GaussianLikelihood
from implicit_vae.model import ImplicitVAE, IncompatibleComponentsError
from implicit_vae.posteriors import GaussianPosterior, SemiImplicitPosterior
from implicit_vae.priors import StandardNormal

D, DX, NOISE = 2, 5, 0.5


class LinearMixing(nn.Module):
    """μ(x, ε) = m(x) + A ε with m linear in x: a semi-implicit q(z|x) = N(m(x), AAᵀ + σ²I)."""

    def __init__(self, mean_map: nn.Linear, factor: torch.Tensor):
        super().__init__()
        self.mean_map, self.factor = mean_map, factor

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.mean_map(x) + eps @ self.factor.T


def linear_gaussian(n: int = 4, seed: int = 0):
    """p(z) = N(0, I_2), p(x|z) = N(Wz + c, 0.5² I_5) with orthogonal columns of W (so that p(z|x)
    has a diagonal covariance C), in float64. Returns the likelihood, x (n, 5), exact log p(x) (n,),
    the map x -> E[z|x] and diag C."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    basis, _ = torch.linalg.qr(torch.randn(DX, D, generator=g, dtype=dt))
    w = basis * torch.tensor([1.5, 0.7], dtype=dt)
    c = torch.randn(DX, generator=g, dtype=dt)
    x = torch.randn(n, D, generator=g, dtype=dt) @ w.T + c + NOISE * torch.randn(n, DX, generator=g, dtype=dt)
    cov = torch.eye(D, dtype=dt) + w.T @ w / NOISE**2  # precision, diagonal
    post_var = 1.0 / cov.diagonal()
    gain = w * post_var / NOISE**2  # (DX, D): E[z|x] = (x − c) gain
    mean_map = nn.Linear(DX, D).double()
    with torch.no_grad():
        mean_map.weight.copy_(gain.T)
        mean_map.bias.copy_(-c @ gain)
    decoder = nn.Linear(D, DX).double()
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(c)
    lik = GaussianLikelihood(D, DX, fixed_std=NOISE, decoder=decoder).double()
    marginal = torch.distributions.MultivariateNormal(c, w @ w.T + NOISE**2 * torch.eye(DX, dtype=dt))
    return lik, x, marginal.log_prob(x), mean_map, post_var


class GaussianNet(nn.Module):
    """x -> [E[z|x], log(scale · posterior std)]: the exact posterior at scale 1."""

    def __init__(self, mean_map: nn.Linear, post_var: torch.Tensor, scale: float):
        super().__init__()
        self.mean_map = mean_map
        self.register_buffer("log_std", 0.5 * post_var.log() + math.log(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean_map(x)
        return torch.cat([mean, self.log_std.expand_as(mean)], -1)


def gaussian_model(estimator: str, scale: float) -> tuple[ImplicitVAE, torch.Tensor, torch.Tensor]:
    lik, x, exact, mean_map, post_var = linear_gaussian()
    post = GaussianPosterior(DX, D, net=GaussianNet(mean_map, post_var, scale)).double()
    est = ESTIMATORS[estimator](DX, D)
    return ImplicitVAE(post, StandardNormal(D).double(), lik, est, objective="iw"), x, exact


def semi_implicit_model(scale: float, mixing_samples: int = 100):
    """SIVI's mixture on q(z|x) = N(E[z|x], scale² C): A = scale·√(C − σ²), σ² = λ_min(C)/4·scale²."""
    lik, x, exact, mean_map, post_var = linear_gaussian()
    sigma = math.sqrt(0.25 * float(post_var.min()))
    factor = scale * torch.diag((post_var - sigma**2).sqrt())
    post = SemiImplicitPosterior(DX, D, noise_dim=D, net=LinearMixing(mean_map, factor),
                                 sigma_init=scale * sigma).double()  # fmt: skip
    est = ESTIMATORS["sivi"](DX, D, mixing_samples=mixing_samples)
    return ImplicitVAE(post, StandardNormal(D).double(), lik, est, objective="iw"), x, exact


@pytest.mark.parametrize("estimator", ["analytic", "monte_carlo"])
def test_exact_posterior_makes_every_weight_the_marginal(estimator):
    # q = p(z|x): p(x|z) p(z) / q(z|x) = p(x) for every z, so the bound is exact at any n.
    torch.manual_seed(0)
    model, x, exact = gaussian_model(estimator, scale=1.0)
    for n in (1, 3, 17):
        terms = model(x, n)
        torch.testing.assert_close(terms.objective, exact, atol=1e-6, rtol=0)
        torch.testing.assert_close(terms.loss, -exact.mean(), atol=1e-6, rtol=0)


def _mean_bound(model, x, n: int, repeats: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([model(x, n).objective for _ in range(repeats)]).mean(0)


@pytest.mark.parametrize(
    "build",
    [lambda: gaussian_model("analytic", 1.6), lambda: semi_implicit_model(1.6)],
    ids=["gaussian", "sivi_mixture"],
)
def test_bound_tightens_with_samples_and_stays_below_log_px(build):
    # A posterior 1.6x too wide in std. Measured (seeds 0 and 1): gaps to log p(x) of 0.52-0.86
    # nats at n = 1, 0.06-0.17 at n = 4 and -0.009..0.018 at n = 256, where the repeat mean's s.e.
    # is 0.005 (exact densities) to 0.009 (mixture); the bounds below are > 3σ from those.
    torch.manual_seed(0)
    model, x, exact = build()
    gaps = [exact - _mean_bound(model, x, n, repeats) for n, repeats in ((1, 400), (4, 400), (256, 100))]
    assert (gaps[0] > 0.4).all() and (gaps[0] > gaps[1] + 0.3).all(), gaps
    assert (gaps[1] > 0.03).all() and (gaps[2].abs() < 0.04).all(), gaps


def test_gradient_reaches_posterior_and_decoder():
    model, x, _ = semi_implicit_model(1.6)
    model(x, 4).loss.backward()
    for module in (model.posterior, model.likelihood):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "estimator, beta, match",
    [
        ("avb", 1.0, "needs a per-sample log q"),
        ("uivi", 1.0, "needs a per-sample log q"),
        ("analytic", 0.5, "only with beta 1"),
    ],
)
def test_refusals(estimator, beta, match):
    lik, _, _, mean_map, post_var = linear_gaussian()
    if estimator == "uivi":
        post = SemiImplicitPosterior(DX, D, noise_dim=D, hidden=(8,)).double()
    else:
        post = GaussianPosterior(DX, D, net=GaussianNet(mean_map, post_var, 1.0)).double()
    kwargs = {"width": 8, "blocks": 1} if estimator == "avb" else {}
    est = ESTIMATORS[estimator](DX, D, **kwargs)
    with pytest.raises(IncompatibleComponentsError, match=match):
        ImplicitVAE(post, StandardNormal(D).double(), lik, est, beta=beta, objective="iw")
    with pytest.raises(ValueError, match="objective must be one of elbo, iw"):
        ImplicitVAE(post, StandardNormal(D).double(), lik, est, objective="iwae")


def test_training_validates_by_the_negative_bound(tmp_path):
    # A Gaussian VAE on digits under objective iw (n = 8): the validation loss is the negative IW
    # bound, so it lies below reconstruction_error + KL (the negative ELBO of the same samples'
    # mean terms): by 1.13 nats at train.seed 0 (measured), so 0.5 leaves room for other platforms.
    from implicit_vae.config import load_config
    from implicit_vae.training.fit import fit
    from tiny_runs import TINY_NETWORKS

    cfg = load_config(overrides=[
        *TINY_NETWORKS, "model.posterior=gaussian", "divergence.name=analytic",
        "model.objective=iw", "train.n_samples=8", "train.max_steps=60", "train.val_every=30",
        "train.threads=1", f"train.run_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    with pytest.warns(UserWarning, match="has no effect"):  # the tiny critic options go unused
        _, summary = fit(cfg)
    val = summary["val"]
    assert val["loss"] < val["reconstruction_error"] + val["kl"] - 0.5, val
