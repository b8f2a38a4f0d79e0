"""Variational posteriors q(z|x): explicit Gaussians (diagonal, full covariance) and implicit samplers
(noise-injected networks, AVB's noise-basis encoder). The family contract is :class:`Posterior`."""

from .base import Posterior, PosteriorSample
from .gaussian import FullCovarianceGaussianPosterior, GaussianPosterior
from .implicit import ImplicitPosterior
from .noise_basis import NoiseBasisPosterior

POSTERIORS = {
    "gaussian": GaussianPosterior,
    "gaussian_full": FullCovarianceGaussianPosterior,
    "implicit": ImplicitPosterior,
    "noise_basis": NoiseBasisPosterior,
}


__all__ = [
    "POSTERIORS",
    "FullCovarianceGaussianPosterior",
    "GaussianPosterior",
    "ImplicitPosterior",
    "NoiseBasisPosterior",
    "Posterior",
    "PosteriorSample",
]
