"""Log-likelihood evaluation: AIS (any prior with a density, any posterior), importance sampling
(explicit posteriors), the semi-implicit IW bound (SIVI-family posteriors) and 2-D quadrature (ground
truth for small models)."""

from ._common import EvaluationError, LogLikelihoodEstimate
from .ais import ais_log_likelihood, ais_versus_steps, beta_schedule
from .ais_curve import plot_ais_versus_steps
from .compare import paired_difference
from .importance import importance_sampling_log_likelihood
from .quadrature import QuadratureEstimate, exact_log_likelihood_2d, quadrature_log_likelihood_2d
from .semi_implicit import log_px_iw_semi_implicit

__all__ = [
    "EvaluationError",
    "LogLikelihoodEstimate",
    "QuadratureEstimate",
    "ais_log_likelihood",
    "ais_versus_steps",
    "beta_schedule",
    "exact_log_likelihood_2d",
    "importance_sampling_log_likelihood",
    "log_px_iw_semi_implicit",
    "paired_difference",
    "plot_ais_versus_steps",
    "quadrature_log_likelihood_2d",
]
