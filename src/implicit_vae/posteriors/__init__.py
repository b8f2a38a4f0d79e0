"""Variational posteriors q(z|x): explicit Gaussians (diagonal, full covariance), implicit samplers
(noise-injected networks, AVB's noise-basis encoder) and semi-implicit mixtures (SIVI, UIVI). The
family contract is :class:`Posterior`."""

from .base import Posterior, PosteriorSample
from .gaussian import FullCovarianceGaussianPosterior, GaussianPosterior
from .implicit import ImplicitPosterior
from .noise_basis import NoiseBasisPosterior
from .semi_implicit import SemiImplicitPosterior, SemiImplicitSample

POSTERIORS = {
    "gaussian": GaussianPosterior,
    "gaussian_full": FullCovarianceGaussianPosterior,
    "implicit": ImplicitPosterior,
    "noise_basis": NoiseBasisPosterior,
    "semi_implicit": SemiImplicitPosterior,
}


__all__ = [
    "POSTERIORS",
    "FullCovarianceGaussianPosterior",
    "GaussianPosterior",
    "ImplicitPosterior",
    "NoiseBasisPosterior",
    "Posterior",
    "PosteriorSample",
    "SemiImplicitPosterior",
    "SemiImplicitSample",
]
