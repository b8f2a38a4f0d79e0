"""Network builders: MLPs, noise-injected samplers, residual critics, batched noise bases and the
convolutional networks of AVB. Plain ``torch.nn``; components take these as ``nn.Module`` arguments."""

from .activations import ACTIVATIONS, activation
from .conv import ConvCriticFeatures, ConvDecoder, ConvEncoder, ConvNoiseEncoder
from .mlp import MLP, MLPTrunk, mlp
from .noise import NoiseInjectedMLP
from .parallel import ParallelMLPs
from .residual import ResidualBlock, ResidualCritic

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ConvCriticFeatures",
    "ConvDecoder",
    "ConvEncoder",
    "ConvNoiseEncoder",
    "MLPTrunk",
    "NoiseInjectedMLP",
    "ParallelMLPs",
    "ResidualBlock",
    "ResidualCritic",
    "activation",
    "mlp",
]
