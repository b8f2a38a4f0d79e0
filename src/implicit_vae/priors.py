"""Priors p(z): explicit (standard normal, learnable Gaussian mixture) and implicit (a learnable
generator h(η), a fixed bank of samples).

Subclass requirements (:class:`Prior`):
  - ``_sample(n) -> (n, D)``, differentiable (reparameterised) w.r.t. the prior's parameters where it
    has any, so that an estimator can send a gradient to them through the samples;
  - ``has_density = True`` only if ``_log_prob(z) -> z.shape[:-1]`` is implemented and exact.

A prior with trainable parameters is trained with the model (``ImplicitVAE.model_parameters``
includes them); how the KL term's gradient reaches an implicit one is explained in
:mod:`implicit_vae.divergences.prior_gradient`.

References:
    > A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey. Adversarial Autoencoders,
    > ICLR Workshop 2016 (arXiv:1511.05644): a 10-component 2-D mixture prior on a circle.
    > J. M. Tomczak, M. Welling. VAE with a VampPrior, AISTATS 2018: learnable priors fit the
    > aggregated posterior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .nets import mlp


class Prior(nn.Module):
    """Base class of p(z) over R^D."""

    has_density: bool = False

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim

    @property
    def is_learnable(self) -> bool:
        """True when the prior has trainable parameters (the model's optimizer then moves it)."""
        return any(p.requires_grad for p in self.parameters())

    def sample(self, n: int) -> torch.Tensor:
        """Draw ``n`` samples, shape (n, D)."""
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        return self._sample(n)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z of shape (..., D); returns shape (...)."""
        if not self.has_density:
            raise NotImplementedError(f"{type(self).__name__} is implicit: it has no log-density")
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must end in dimension {self.latent_dim}, got {tuple(z.shape)}")
        return self._log_prob(z)

    def _sample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class StandardNormal(Prior):
    """p(z) = N(0, I_D)."""

    has_density = True

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # A buffer so that .to(device) moves the sampler with the model.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def distribution(self) -> torch.distributions.Independent:
        loc = self._anchor.new_zeros(self.latent_dim)
        return torch.distributions.Independent(torch.distributions.Normal(loc, loc + 1.0), 1)

    def _sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self._anchor.device, dtype=self._anchor.dtype)

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2).sum(-1) + self.latent_dim * math.log(2 * math.pi))


def spread_means(components: int, latent_dim: int, radius: float) -> torch.Tensor:
    """``components`` initial means, shape (K, D): evenly spaced on [−radius, radius] for D = 1;
    at distance ``radius`` from the origin for D ≥ 2 — evenly on a circle for D = 2 (the AAE's
    mixture), along fixed pseudo-random directions (seed 0, not the global RNG) for D ≥ 3."""
    if latent_dim == 1:
        return torch.linspace(-radius, radius, components).unsqueeze(-1)
    if latent_dim == 2:
        angle = 2 * math.pi * torch.arange(components) / components
        return radius * torch.stack([angle.cos(), angle.sin()], dim=-1)
    directions = torch.randn(components, latent_dim, generator=torch.Generator().manual_seed(0))
    return radius * directions / directions.norm(dim=-1, keepdim=True)


class GaussianMixture(Prior):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), with learnable logits, means and log-scales.

    Means start spread at distance ``radius`` (on a circle in 2-D, see :func:`spread_means`) with
    scale ``scale`` and equal weights, so a 2-D latent map shows one cluster per component.
    Sampling picks a component (a discrete choice: no gradient) and returns z = μ_k + σ_k ε,
    reparameterised in the means and scales; the weights learn through ``log_prob`` only.

    Args:
        latent_dim: D.
        components: K.
        learnable: train the logits, means and scales (else they are fixed buffers).
        radius: distance of the initial means from the origin.
        scale: initial standard deviation of every component.
    """

    has_density = True

    def __init__(
        self,
        latent_dim: int,
        components: int = 10,
        learnable: bool = True,
        radius: float = 4.0,
        scale: float = 0.5,
    ):
        super().__init__(latent_dim)
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        if not (radius >= 0 and scale > 0 and math.isfinite(radius) and math.isfinite(scale)):
            raise ValueError(f"radius must be >= 0 and scale > 0, got {radius} and {scale}")
        self.components = components
        values = {
            "logits": torch.zeros(components),
            "means": spread_means(components, latent_dim, radius),
            "log_scales": torch.full((components, latent_dim), math.log(scale)),
        }
        for name, value in values.items():
            if learnable:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def distribution(self) -> torch.distributions.MixtureSameFamily:
        """The same density as a torch distribution (for reference and tests)."""
        d = torch.distributions
        normal = d.Independent(d.Normal(self.means, self.log_scales.exp()), 1)
        return d.MixtureSameFamily(d.Categorical(logits=self.logits), normal)

    def _sample(self, n: int) -> torch.Tensor:
        k = torch.multinomial(self.logits.detach().softmax(-1), n, replacement=True)  # (n,)
        eps = torch.randn(n, self.latent_dim, device=self.means.device, dtype=self.means.dtype)
        return self.means[k] + self.log_scales[k].exp() * eps

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u = (z.unsqueeze(-2) - self.means) / self.log_scales.exp()  # (..., K, D)
        log_normal = -0.5 * (u.pow(2) + math.log(2 * math.pi)).sum(-1) - self.log_scales.sum(-1)
        return (log_normal + self.logits.log_softmax(-1)).logsumexp(-1)


class ImplicitPrior(Prior):
    """p(z) = h(η)_# N(0, I): a learnable generator h (an MLP), η ~ N(0, I_noise_dim); no density.

    Samples are reparameterised, z = h(η), so an estimator can send KL(q ‖ p) gradients to h's
    parameters through prior samples (see :mod:`implicit_vae.divergences.prior_gradient`).
    With ``hidden=()`` h is affine and p is the Gaussian N(b, W Wᵀ), which the tests use to check
    gradients against the closed form.

    Args:
        latent_dim: D.
        noise_dim: dimension of η.
        hidden: widths of h's hidden layers.
        act: activation name (see :data:`implicit_vae.nets.ACTIVATIONS`).
    """

    def __init__(
        self,
        latent_dim: int,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64, 64),
        act: str = "elu",
    ):
        super().__init__(latent_dim)
        if noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        self.noise_dim = noise_dim
        self.generator = mlp(noise_dim, tuple(hidden), latent_dim, act)

    def _sample(self, n: int) -> torch.Tensor:
        weight = self.generator[0].weight
        eta = torch.randn(n, self.noise_dim, device=weight.device, dtype=weight.dtype)
        return self.generator(eta)


class SamplePrior(Prior):
    """p(z) = the empirical distribution of a fixed bank of samples (N, D); no density, no parameters.

    ``sample`` draws rows uniformly with replacement. The bank is a buffer, so checkpoints carry it.
    Build it from a tensor or with :meth:`from_file` (an ``.npy`` array).
    """

    def __init__(self, bank: torch.Tensor | np.ndarray):
        bank = torch.as_tensor(bank, dtype=torch.get_default_dtype())
        if bank.dim() != 2 or bank.shape[0] < 1 or bank.shape[1] < 1:
            raise ValueError(
                f"the prior sample bank must have shape (N, latent_dim) with N >= 1, "
                f"got {tuple(bank.shape)}"
            )
        if not torch.isfinite(bank).all():
            bad = int((~torch.isfinite(bank)).any(-1).sum())
            raise ValueError(f"the prior sample bank has {bad} rows with NaN or infinite values")
        super().__init__(bank.shape[1])
        self.register_buffer("bank", bank.clone())

    @classmethod
    def from_file(cls, path: str | Path, latent_dim: int | None = None) -> SamplePrior:
        """Load an ``.npy`` array of shape (N, D); checks D against ``latent_dim`` when given.

        Raises:
            ValueError: one line naming the file, for a missing or unreadable file, a wrong shape,
                non-finite values or a latent dimension that does not match.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"prior sample file {str(path)!r} does not exist")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"prior sample file {str(path)!r} is not a readable .npy array: {first}"
            ) from None
        if array.dtype.kind not in "biuf":  # bool, signed, unsigned, float
            raise ValueError(
                f"prior sample file {str(path)!r} holds {array.dtype}, not real numbers"
            )
        try:
            prior = cls(array.astype(np.float64))
        except ValueError as err:
            raise ValueError(f"prior sample file {str(path)!r}: {err}") from None
        if latent_dim is not None and prior.latent_dim != latent_dim:
            raise ValueError(
                f"prior sample file {str(path)!r} has samples of dimension {prior.latent_dim}, "
                f"but the model's latent_dim is {latent_dim}"
            )
        return prior

    def _sample(self, n: int) -> torch.Tensor:
        rows = torch.randint(self.bank.shape[0], (n,), device=self.bank.device)
        return self.bank[rows]


PRIORS: dict[str, type[Prior]] = {
    "standard_normal": StandardNormal,
    "gaussian_mixture": GaussianMixture,
    "implicit": ImplicitPrior,
    "samples": SamplePrior,
}
