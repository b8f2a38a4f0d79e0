"""Divergence estimators behind one interface, selectable by name from :data:`ESTIMATORS`.

Every estimator takes ``(event_shape, latent_dim, **options)``; ``is_kl`` / ``divergence_name``
say what it estimates, and :func:`estimate_divergence` measures any of them between two samplers.
"""

from .adaptive_contrast import AVBAdaptiveContrast
from .aggregate import AdversarialAutoencoder
from .analytic import AnalyticKL, MonteCarloKL
from .avb import AVB
from .base import CriticLoss, DivergenceEstimator
from .fdiv import NWJ, DonskerVaradhan, JensenShannon, ReverseKL
from .kernel import KernelDensityKL, SteinEntropyKL
from .knn import KNearestNeighbourKL
from .measure import estimate_divergence, estimate_on_posterior
from .mmd import EnergyDistance, MaximumMeanDiscrepancy
from .semi_implicit import SIVI
from .uivi import UIVI

ESTIMATORS: dict[str, type[DivergenceEstimator]] = {
    "analytic": AnalyticKL,
    "monte_carlo": MonteCarloKL,
    "avb": AVB,
    "avb_ac": AVBAdaptiveContrast,
    "aae": AdversarialAutoencoder,
    "kl_nwj": NWJ,
    "kl_dv": DonskerVaradhan,
    "reverse_kl": ReverseKL,
    "js": JensenShannon,
    "kde": KernelDensityKL,
    "stein": SteinEntropyKL,
    "knn": KNearestNeighbourKL,
    "mmd": MaximumMeanDiscrepancy,
    "energy": EnergyDistance,
    "sivi": SIVI,
    "uivi": UIVI,
}

__all__ = [
    "AVB",
    "ESTIMATORS",
    "NWJ",
    "AVBAdaptiveContrast",
    "AdversarialAutoencoder",
    "AnalyticKL",
    "CriticLoss",
    "DivergenceEstimator",
    "DonskerVaradhan",
    "EnergyDistance",
    "JensenShannon",
    "KNearestNeighbourKL",
    "KernelDensityKL",
    "MaximumMeanDiscrepancy",
    "MonteCarloKL",
    "ReverseKL",
    "SIVI",
    "SteinEntropyKL",
    "UIVI",
    "estimate_divergence",
    "estimate_on_posterior",
]
