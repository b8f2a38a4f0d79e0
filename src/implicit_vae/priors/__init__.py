"""Priors p(z): explicit (standard normal, Gaussian mixture) and implicit (a generator h(η), a bank of
samples). The family contract is :class:`Prior`."""

from .base import Prior
from .implicit import ImplicitPrior
from .mixture import GaussianMixture, spread_means
from .normal import StandardNormal
from .samples import SamplePrior

PRIORS: dict[str, type[Prior]] = {
    "standard_normal": StandardNormal,
    "gaussian_mixture": GaussianMixture,
    "implicit": ImplicitPrior,
    "samples": SamplePrior,
}


__all__ = [
    "PRIORS",
    "GaussianMixture",
    "ImplicitPrior",
    "Prior",
    "SamplePrior",
    "StandardNormal",
    "spread_means",
]
