"""Tests for implicit_vae.posteriors: the sampling contract of every posterior in POSTERIORS, the
exact Gaussian density, closed-form and empirical moments, and shape errors."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from implicit_vae.posteriors import (
    POSTERIORS,
    ImplicitPosterior,
    NoiseBasisPosterior,
    PosteriorSample,
)

DATA_DIM, LATENT_DIM, BATCH = 3, 2, 4
# Options that keep every posterior small; each class takes the subset its __init__ accepts.
SMALL = {"hidden": (16,), "noise_dim": 4, "n_basis": 3, "basis_hidden": (8,)}

# Exact float32 comparisons of the same density computed two ways.
EXACT_ATOL = 1e-5
# Monte Carlo moments from N_MC samples: the standard error of a mean is std/sqrt(N_MC) ≈ 0.7% of
# the posterior std and that of a near-Gaussian sample variance sqrt(2/N_MC) ≈ 1% of the variance,
# so 5% leaves a ~5σ margin.
N_MC = 20_000
MC_RTOL = 0.05
# Entropy estimate -mean(log q): the standard error is sqrt(D/2 / N_MC) ≈ 0.007 nats for D = 2.
ENTROPY_ATOL = 0.05


def make(name: str, **overrides) -> torch.nn.Module:
    cls = POSTERIORS[name]
    accepted = inspect.signature(cls.__init__).parameters
    options = {k: v for k, v in {**SMALL, **overrides}.items() if k in accepted}
    return cls(DATA_DIM, LATENT_DIM, **options)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(BATCH, DATA_DIM)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
@pytest.mark.parametrize("n", [1, 5])
def test_sample_shapes(name, n, x):
    """sample(x, n) gives z (n, B, D); moments (B, D) and log_prob (n, B) where declared."""
    post = make(name)
    q = post.sample(x, n)
    assert isinstance(q, PosteriorSample)
    assert q.z.shape == (n, BATCH, LATENT_DIM)
    assert torch.isfinite(q.z).all()
    if post.has_moments:
        assert q.mean.shape == q.var.shape == (BATCH, LATENT_DIM)
        assert torch.isfinite(q.mean).all() and (q.var > 0).all()
    if post.has_density:
        assert q.log_prob.shape == (n, BATCH)
    else:
        assert q.log_prob is None


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_reparameterised_gradient_reaches_every_parameter(name, x):
    """z is reparameterised: the gradient of z.sum() is finite and non-zero for every parameter."""
    post = make(name)
    post.sample(x, 3).z.sum().backward()
    for pname, p in post.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_sample_is_random_given_x(name, x):
    """Two draws for the same x differ (the noise is used), the same seed gives the same draw."""
    post = make(name)
    torch.manual_seed(1)
    z1 = post.sample(x, 2).z
    torch.manual_seed(1)
    assert torch.equal(z1, post.sample(x, 2).z)
    assert (z1[0] - z1[1]).abs().min() > 0


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_bad_x_shape_names_expected_shape(name):
    """x of the wrong width or rank is a ValueError that states the expected shape (B, data_dim)."""
    post = make(name)
    with pytest.raises(ValueError, match=rf"\(B, {DATA_DIM}\).*\(4, 5\)"):
        post.sample(torch.zeros(4, 5))
    with pytest.raises(ValueError, match=rf"\(B, {DATA_DIM}\)"):
        post.sample(torch.zeros(DATA_DIM))


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_bad_sample_count(name, x):
    """n < 1 is a ValueError naming the count."""
    with pytest.raises(ValueError, match="got 0"):
        make(name).sample(x, 0)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_bad_dims_rejected(name):
    """data_dim or latent_dim below 1 is a ValueError."""
    cls = POSTERIORS[name]
    with pytest.raises(ValueError, match=">= 1"):
        cls(0, LATENT_DIM)
    with pytest.raises(ValueError, match=">= 1"):
        cls(DATA_DIM, 0)


@pytest.mark.parametrize("name", sorted(n for n, c in POSTERIORS.items() if not c.has_density))
def test_implicit_posteriors_have_no_log_prob(name, x):
    """A posterior without a density raises NotImplementedError naming itself."""
    post = make(name)
    z = post.sample(x, 2).z
    with pytest.raises(NotImplementedError, match=type(post).__name__):
        post.log_prob(z, x)


def test_gaussian_log_prob_matches_torch_normal(x):
    """GaussianPosterior.log_prob equals Normal(μ(x), σ(x)).log_prob(z).sum(-1) and the log_prob the
    sample carries."""
    post = make("gaussian")
    q = post.sample(x, 7)
    mean, log_std = post.net(x).chunk(2, dim=-1)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(q.z).sum(-1)  # (n, B)
    torch.testing.assert_close(post.log_prob(q.z, x), expected, atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(q.log_prob, expected, atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(q.mean, mean, atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(q.var, (2 * log_std).exp(), atol=EXACT_ATOL, rtol=0)


def test_gaussian_log_prob_at_arbitrary_z(x):
    """log_prob at points not drawn from q still equals the torch density."""
    post = make("gaussian")
    z = 3 * torch.randn(5, BATCH, LATENT_DIM)
    expected = post.distribution(x).log_prob(z)
    mean, log_std = post.net(x).chunk(2, dim=-1)
    manual = (
        -0.5 * ((z - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    torch.testing.assert_close(post.log_prob(z, x), expected, atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(post.log_prob(z, x), manual, atol=EXACT_ATOL, rtol=0)


def test_gaussian_log_prob_bad_z_shape(x):
    """z must be (n, B, D): a wrong batch or latent size is a ValueError with the expected shape."""
    post = make("gaussian")
    with pytest.raises(ValueError, match=rf"\(n, {BATCH}, {LATENT_DIM}\)"):
        post.log_prob(torch.zeros(2, BATCH + 1, LATENT_DIM), x)
    with pytest.raises(ValueError, match=rf"\(n, {BATCH}, {LATENT_DIM}\)"):
        post.log_prob(torch.zeros(BATCH, LATENT_DIM), x)


def test_gaussian_samples_agree_with_density(x):
    """Goodness of fit: sample moments match the density's, and -E[log q] matches the closed-form
    entropy Σ ½ log(2πe σ²)."""
    post = make("gaussian")
    with torch.no_grad():
        q = post.sample(x, N_MC)
    std = q.var.sqrt()
    assert ((q.z.mean(0) - q.mean).abs() <= MC_RTOL * std).all()
    torch.testing.assert_close(q.z.var(0), q.var, rtol=MC_RTOL, atol=0)
    entropy = (0.5 * torch.log(2 * math.pi * math.e * q.var)).sum(-1)  # (B,)
    torch.testing.assert_close(-q.log_prob.mean(0), entropy, atol=ENTROPY_ATOL, rtol=0)


def test_gaussian_moments_carry_gradient(x):
    """The Gaussian's mean and var stay in the graph (the closed-form KL trains through them)."""
    q = make("gaussian").sample(x)
    assert q.mean.requires_grad and q.var.requires_grad


@pytest.mark.parametrize("name", ["implicit", "noise_basis"])
def test_implicit_moments_are_stop_gradient(name, x):
    """Implicit posteriors' moments are constants to the estimators (AVB's stop-gradient)."""
    q = make(name).sample(x, 3)
    assert q.z.requires_grad
    assert not q.mean.requires_grad and not q.var.requires_grad


def test_noise_basis_moments_match_empirical(x):
    """NoiseBasisPosterior's closed-form E[z|x] = z0 + Σ a_i E[v_i] and Var[z|x] = Σ a_i² Var[v_i]
    agree with the moments of an independent batch of N_MC samples for a fixed x.

    The coefficient bias is raised from its ELU(· − 5)+1 start (a ≈ 0.007) to order one, so the
    noise term dominates the variance and contributes to the mean."""
    post = make("noise_basis")
    with torch.no_grad():
        post.coeffs.bias.fill_(5.0)
        closed = post.sample(x, N_MC)
        z = post.sample(x, N_MC).z  # independent draws
    std = closed.var.sqrt()
    assert ((z.mean(0) - closed.mean).abs() <= MC_RTOL * std).all()
    torch.testing.assert_close(z.var(0), closed.var, rtol=MC_RTOL, atol=0)


def _empirical_cov(z: torch.Tensor) -> torch.Tensor:
    """Per-example covariance of z (n, B, D) -> (B, D, D)."""
    centred = z - z.mean(0)
    return torch.einsum("nbi,nbj->bij", centred, centred) / (z.shape[0] - 1)


@pytest.mark.parametrize("name", ["noise_basis", "implicit"])
def test_full_covariance_matches_empirical(name, x):
    """The reported Cov[z|x] (closed form for NoiseBasis, from the draws for Implicit) matches the
    covariance of an independent batch of N_MC samples, off-diagonal entries included (to MC_RTOL
    of the scale sqrt(Var_i Var_j)), and its diagonal is ``var``."""
    post = make(name, **({"moment_samples": N_MC} if name == "implicit" else {}))
    with torch.no_grad():
        if name == "noise_basis":
            post.coeffs.bias.fill_(5.0)
        reported = post.sample(x, N_MC if name == "noise_basis" else 1)
        z = post.sample(x, N_MC).z
    empirical = _empirical_cov(z)
    scale = torch.einsum("bi,bj->bij", empirical.diagonal(0, 1, 2), empirical.diagonal(0, 1, 2))
    assert ((reported.cov - empirical).abs() <= MC_RTOL * scale.sqrt()).all()
    torch.testing.assert_close(reported.cov.diagonal(0, 1, 2), reported.var)
    assert not reported.cov.requires_grad


def test_covariance_falls_back_to_the_diagonal(x):
    """A sample without ``cov`` (the Gaussian posterior) gives diag(var); one without moments fails."""
    q = make("gaussian").sample(x, 3)
    torch.testing.assert_close(q.covariance(), torch.diag_embed(q.var))
    with pytest.raises(ValueError, match="no moments"):
        PosteriorSample(z=q.z).covariance()


def test_noise_basis_single_draw_moments_are_finite():
    """With n * B = 1 there is no sample variance; the moments fall back to finite values."""
    q = make("noise_basis").sample(torch.randn(1, DATA_DIM), 1)
    assert torch.isfinite(q.mean).all() and torch.isfinite(q.var).all() and (q.var > 0).all()


def test_implicit_moments_with_many_moment_samples(x):
    """With moment_samples = N_MC the moments ImplicitPosterior reports match those of an
    independent batch of N_MC samples."""
    post = make("implicit", moment_samples=N_MC)
    with torch.no_grad():
        reported = post.sample(x, 1)
        z = post.sample(x, N_MC).z
    std = z.std(0)
    assert ((z.mean(0) - reported.mean).abs() <= MC_RTOL * std).all()
    torch.testing.assert_close(reported.var, z.var(0), rtol=MC_RTOL, atol=0)


def test_implicit_default_moments_are_sane(x):
    """From the default 10·D independent draws the mean lies within 4 standard errors of the true
    mean and the variance within the 99.9% chi-square range (ratio in [0.25, 3]) of an accurate
    estimate."""
    post = make("implicit")
    with torch.no_grad():
        reported = post.sample(x, 1)
        z = post.sample(x, N_MC).z
    k = post.moment_samples
    assert k == 10 * LATENT_DIM
    true_mean, true_var = z.mean(0), z.var(0)
    assert ((reported.mean - true_mean).abs() <= 4 * (true_var / k).sqrt()).all()
    ratio = reported.var / true_var
    assert ((ratio > 0.25) & (ratio < 3.0)).all(), ratio


def test_implicit_posterior_noise_dim_validated():
    """noise_dim < 1 is rejected for both implicit samplers."""
    with pytest.raises(ValueError, match="noise_dim"):
        ImplicitPosterior(DATA_DIM, LATENT_DIM, noise_dim=0)
    with pytest.raises(ValueError, match="noise_dim"):
        NoiseBasisPosterior(DATA_DIM, LATENT_DIM, n_basis=0)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_posterior_sample_detach_cuts_graph(name, x):
    """detach() returns equal values with no graph, keeps absent fields None, and leaves the
    original attached."""
    q = make(name).sample(x, 3)
    d = q.detach()
    for original, cut in zip(q._fields(), d._fields(), strict=True):
        if original is None:
            assert cut is None
        else:
            assert torch.equal(original, cut)
            assert not cut.requires_grad and cut.grad_fn is None
    assert q.z.requires_grad


def _full(x_dim=DATA_DIM, d=LATENT_DIM, seed=0):
    """A full-covariance posterior whose q(z|x) is strongly correlated (scaled-up last layer)."""
    torch.manual_seed(seed)
    post = make("gaussian_full")
    with torch.no_grad():
        post.net[-1].weight.mul_(3.0)
        post.net[-1].bias.normal_(0.0, 0.5)
    return post


def test_full_covariance_gaussian_density_by_hand(x):
    """log q(z|x) equals the multivariate normal density written out from the encoder's outputs:
    L lower-triangular with exp'd diagonal, Σ = L Lᵀ; the carried log det Σ and cov agree."""
    post = _full()
    out = post.net(x)
    mean, raw = out[:, :LATENT_DIM], out[:, LATENT_DIM:]
    rows, cols = torch.tril_indices(LATENT_DIM, LATENT_DIM)
    tril = torch.zeros(BATCH, LATENT_DIM, LATENT_DIM)
    tril[:, rows, cols] = raw
    tril = tril.tril(-1) + torch.diag_embed(tril.diagonal(dim1=1, dim2=2).exp())
    cov = tril @ tril.transpose(1, 2)
    z = 2 * torch.randn(6, BATCH, LATENT_DIM)
    diff = (z - mean).unsqueeze(-1)
    maha = (diff.transpose(-1, -2) @ torch.linalg.solve(cov, diff)).squeeze(-1).squeeze(-1)
    manual = -0.5 * (maha + torch.logdet(cov) + LATENT_DIM * math.log(2 * math.pi))
    torch.testing.assert_close(post.log_prob(z, x), manual, atol=1e-4, rtol=0)
    q = post.sample(x, 3)
    torch.testing.assert_close(q.cov, cov, atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(q.log_det_cov, torch.logdet(cov), atol=1e-4, rtol=0)
    torch.testing.assert_close(q.var, cov.diagonal(dim1=1, dim2=2), atol=EXACT_ATOL, rtol=0)
    assert q.cov.requires_grad and q.log_det_cov.requires_grad  # the closed-form KL trains through


def test_full_covariance_gaussian_samples_match_its_moments(x):
    """N_MC draws have the reported mean and covariance (off-diagonals to MC_RTOL of the scale),
    and the posterior really is correlated, so the check is not passed by a diagonal."""
    post = _full()
    with torch.no_grad():
        q = post.sample(x, N_MC)
    empirical = _empirical_cov(q.z)
    scale = torch.einsum("bi,bj->bij", q.var, q.var).sqrt()
    assert ((q.cov - empirical).abs() <= MC_RTOL * scale).all()
    assert ((q.z.mean(0) - q.mean).abs() <= MC_RTOL * q.var.sqrt()).all()
    correlation = q.cov / scale
    assert correlation.tril(-1).abs().max() > 0.3
