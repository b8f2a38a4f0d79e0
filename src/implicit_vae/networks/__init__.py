"""Network builders: MLPs, noise-injected samplers, residual critics, batched noise bases and the
convolutional networks of AVB. Plain ``torch.nn``; components take these as ``nn.Module`` arguments."""

from .activations import ACTIVATIONS, activation
from .mlp import mlp
from .noise import NoiseInjectedMLP
from .parallel import ParallelMLPs
from .residual import ResidualBlock, ResidualCritic

__all__ = [
    "ACTIVATIONS",
    "NoiseInjectedMLP",
    "ParallelMLPs",
    "ResidualBlock",
    "ResidualCritic",
    "activation",
    "mlp",
]
