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

import torch

from .base import Prior


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
