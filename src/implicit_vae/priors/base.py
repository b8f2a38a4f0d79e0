"""The prior family's contract, :class:`Prior`. Priors p(z) are explicit (standard normal,
learnable Gaussian mixture) or implicit (a learnable generator h(η), a fixed bank of samples).

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

import torch
from torch import nn


class Prior(nn.Module):
    """Base class of p(z) over R^D."""

    has_density: bool = False
    # True only for p = N(0, I): the critics' ½‖z‖² skip is −log p(z) + const exactly then (see
    # :func:`implicit_vae.divergences.critics.resolve_gaussian_skip`).
    is_standard_normal: bool = False

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
