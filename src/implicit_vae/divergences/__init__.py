"""Divergence estimators behind one interface, selectable by name from :data:`ESTIMATORS`."""

from .analytic import AnalyticKL, MonteCarloKL
from .avb import AVB, AVBAdaptiveContrast
from .base import CriticLoss, DivergenceEstimator

ESTIMATORS: dict[str, type[DivergenceEstimator]] = {
    "analytic": AnalyticKL,
    "monte_carlo": MonteCarloKL,
    "avb": AVB,
    "avb_ac": AVBAdaptiveContrast,
}

__all__ = [
    "AVB",
    "ESTIMATORS",
    "AVBAdaptiveContrast",
    "AnalyticKL",
    "CriticLoss",
    "DivergenceEstimator",
    "MonteCarloKL",
]
