"""Convolutional encoders, decoders and critic features for image VAEs with implicit posteriors.

The 28x28 layouts follow the MNIST networks of Adversarial Variational Bayes (encoder ``conv0`` /
``conv0_ac`` trunk, decoder ``conv0``, the x-branch of adversary ``conv0``):

    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes: Unifying Variational
    > Autoencoders and Generative Adversarial Networks. ICML 2017, arXiv:1701.04722.

Layouts are computed from the event shape ``(C, H, W)``, so any channel count and any H, W work:

* ``min(H, W) >= 16``: AVB's trunk. Four 5x5 convs with 64, 128, 256, 512 channels; the last
  ``n_down = clamp(floor(log2(min(H, W))) - 2, 0, 4)`` of them have stride 2 (AVB's rule), so
  28x28 -> 28 -> 28 -> 14 -> 7 and 64x64 -> 32 -> 16 -> 8 -> 4.
* ``min(H, W) < 16``: a small trunk for fast CPU runs. Two 3x3 convs, 32 and 64 channels, both
  stride 2, so 8x8 -> 4 -> 2.

A stride-2 layer maps a side s to ceil(s / 2), like TensorFlow's "SAME" padding. The decoder
mirrors the trunk and picks each transposed conv's ``output_padding`` so that it lands back on the
exact size, odd sides included; no crop or interpolation is needed.

No layer uses BatchNorm or any other normalisation. AVB's ``conv0`` encoder and its adversary use
BatchNorm, but BatchNorm makes an example's output depend on the other examples in its batch (and
on train/eval mode). That breaks per-example evaluation (AIS or importance sampling on one example,
where the "batch" is that example's chains or samples) and makes results depend on the batch size.
These nets are shallow enough to train with Adam without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .activations import activation

# Below this side the 4-layer 5x5 AVB trunk would mostly convolve padding; use the small trunk.
_AVB_MIN_SIDE = 16




def _event_shape(event_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"event_shape must be (C, H, W) with positive sizes, got {tuple(event_shape)}")
    return shape


class _Plan(NamedTuple):
    kernel: int
    channels: tuple[int, ...]  # output channels of each conv
    strides: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]  # (H, W) before each conv, then after the last


def _default_width(event_shape: tuple[int, int, int]) -> int:
    return 64 if min(event_shape[1:]) >= _AVB_MIN_SIDE else 32


def _plan(event_shape: tuple[int, int, int], width: int | None) -> _Plan:
    """The conv layout for ``event_shape``; ``width`` is the first layer's channel count."""
    _, h, w = event_shape
    width = _default_width(event_shape) if width is None else int(width)
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    side = min(h, w)
    if side >= _AVB_MIN_SIDE:
        n_down = max(min(side.bit_length() - 1 - 2, 4), 0)  # floor(log2(side)) - 2, as AVB
        kernel, channels = 5, (width, 2 * width, 4 * width, 8 * width)
        strides = (1,) * (4 - n_down) + (2,) * n_down  # downsample in the last layers, as AVB
    else:
        kernel, channels, strides = 3, (width, 2 * width), (2, 2)
    sizes = [(h, w)]
    for s in strides:
        sizes.append((math.ceil(sizes[-1][0] / s), math.ceil(sizes[-1][1] / s)))
    return _Plan(kernel, channels, strides, tuple(sizes))


def _as_images(x: torch.Tensor, event_shape: tuple[int, int, int]) -> tuple[torch.Tensor, tuple]:
    """(..., C, H, W) or flat (..., C*H*W) -> ((N, C, H, W), leading dims)."""
    c, h, w = event_shape
    if x.dim() >= 3 and tuple(x.shape[-3:]) == event_shape:
        lead = tuple(x.shape[:-3])
    elif x.dim() >= 1 and x.shape[-1] == c * h * w:
        lead = tuple(x.shape[:-1])  # our data pipeline keeps images flat
    else:
        raise ValueError(f"expected x of shape (..., {c}, {h}, {w}) or (..., {c * h * w}), "
                         f"got {tuple(x.shape)}")
    return x.reshape(-1, c, h, w), lead


class _ConvStack(nn.Module):
    """Shared trunk: x -> 2x - 1 (AVB centres binary pixels at 0), then conv -> [+ A_i eps] -> act
    per layer, flattened. Shapes: x (N, C, H, W), eps (N, noise_dim) or None -> (N, out_features).
    """

    def __init__(self, event_shape, width: int | None, act: str, noise_dim: int = 0):
        super().__init__()
        plan = _plan(event_shape, width)
        ins = (event_shape[0], *plan.channels[:-1])
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, plan.kernel, s, plan.kernel // 2)
            for i, o, s in zip(ins, plan.channels, plan.strides)
        )
        # AVB's add_linear: a learned linear map of eps added after each conv. We add one value per
        # channel, broadcast over the map (AVB adds one per position, C*H*W outputs, which is far
        # more parameters at 28x28). No bias: the conv has one.
        self.eps_maps = nn.ModuleList(
            nn.Linear(noise_dim, o, bias=False) for o in (plan.channels if noise_dim else ())
        )
        self.acts = nn.ModuleList(activation(act) for _ in plan.channels)
        h, w = plan.sizes[-1]
        self.out_features = plan.channels[-1] * h * w

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        h = 2 * x - 1
        for i, (conv, act) in enumerate(zip(self.convs, self.acts)):
            h = conv(h)
            if len(self.eps_maps):
                h = h + self.eps_maps[i](eps)[:, :, None, None]
            h = act(h)
        return h.flatten(1)


class ConvEncoder(nn.Module):
    """Deterministic conv features of an image: AVB's ``conv0_ac`` trunk (without BatchNorm).

    Shapes: x (..., C, H, W) or flat (..., C*H*W) -> (..., out_features). For 28x28 and default
    width, out_features = 512 * 7 * 7; for 8x8, 64 * 2 * 2. Heads (z0, AC coefficients, Gaussian
    moments) are left to the caller.

    Args:
        event_shape: (C, H, W) of one image.
        act: activation name (elu, relu, leaky_relu, tanh, softplus).
        width: channels of the first conv (later ones double); default 64 (AVB's df_dim) for
            min(H, W) >= 16, else 32.
    """

    def __init__(self, event_shape: Sequence[int], act: str = "elu", *, width: int | None = None):
        super().__init__()
        self.event_shape = _event_shape(event_shape)
        self.trunk = _ConvStack(self.event_shape, width, act)
        self.out_features: int = self.trunk.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images, lead = _as_images(x, self.event_shape)
        return self.trunk(images).reshape(*lead, self.out_features)


class ConvCriticFeatures(ConvEncoder):
    """The x-branch of a critic T(x, z) (AVB adversary ``conv0``'s theta(x) / T_x trunk, without
    BatchNorm): the encoder trunk at half the width, leaky-ReLU by default.

    Shapes: x (..., C, H, W) or flat (..., C*H*W) -> (..., out_features); 32 * 8 * 7 * 7 for 28x28,
    32 * 2 * 2 for 8x8. Half width because it is evaluated on both the q and the prior batch every
    step; pass ``width=64`` for AVB's full width.
    """

    def __init__(
        self, event_shape: Sequence[int], act: str = "leaky_relu", *, width: int | None = None
    ):
        shape = _event_shape(event_shape)
        super().__init__(shape, act, width=_default_width(shape) // 2 if width is None else width)


class ConvNoiseEncoder(nn.Module):
    """AVB's implicit sampler ``conv0``: z = g(x, eps) with eps injected after every conv layer.

    Each conv's output gets a learned linear map of eps (one value per channel, broadcast over the
    map) before the activation; a linear layer then gives z. z also gets a direct linear map of
    eps, so the sample depends on the noise from the first step, whatever the trunk does.

    Shapes: x (..., C, H, W) or flat (..., C*H*W), eps (..., noise_dim) with the same leading dims
    -> z (..., latent_dim).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        noise_dim: int,
        latent_dim: int,
        act: str = "elu",
        *,
        width: int | None = None,
    ):
        super().__init__()
        if noise_dim < 1 or latent_dim < 1:
            raise ValueError(f"noise_dim and latent_dim must be positive, got {noise_dim}, "
                             f"{latent_dim}")
        self.event_shape = _event_shape(event_shape)
        self.noise_dim, self.latent_dim = int(noise_dim), int(latent_dim)
        self.trunk = _ConvStack(self.event_shape, width, act, noise_dim=self.noise_dim)
        self.to_z = nn.Linear(self.trunk.out_features, self.latent_dim)
        self.eps_to_z = nn.Linear(self.noise_dim, self.latent_dim, bias=False)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        images, lead = _as_images(x, self.event_shape)
        if tuple(eps.shape) != (*lead, self.noise_dim):
            raise ValueError(f"expected eps of shape {(*lead, self.noise_dim)}, got "
                             f"{tuple(eps.shape)}")
        e = eps.reshape(-1, self.noise_dim)
        z = self.to_z(self.trunk(images, e)) + self.eps_to_z(e)
        return z.reshape(*lead, self.latent_dim)


class ConvDecoder(nn.Module):
    """AVB decoder ``conv0``: FC + act to the trunk's last map, then transposed convs that mirror
    the encoder trunk back to exactly (C, H, W). No output activation: the result is Bernoulli
    logits or Gaussian means.

    28x28: z -> 512x7x7 -> 256x14x14 -> 128x28x28 -> 64x28x28 -> Cx28x28 (5x5 kernels).
    8x8: z -> 64x2x2 -> 32x4x4 -> Cx8x8 (3x3 kernels).

    Shapes: z (..., latent_dim) -> (..., C, H, W); the leading dims are flattened and restored,
    since AIS calls the decoder on (chains, B, latent_dim).
    """

    def __init__(
        self,
        latent_dim: int,
        event_shape: Sequence[int],
        act: str = "elu",
        *,
        width: int | None = None,
    ):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.event_shape = _event_shape(event_shape)
        plan = _plan(self.event_shape, width)
        self._top = (plan.channels[-1], *plan.sizes[-1])
        self.fc = nn.Sequential(nn.Linear(self.latent_dim, math.prod(self._top)), activation(act))
        outs = (self.event_shape[0], *plan.channels[:-1])
        k, p = plan.kernel, plan.kernel // 2
        layers: list[nn.Module] = []
        for i in reversed(range(len(plan.strides))):  # undo encoder layer i: sizes[i+1] -> sizes[i]
            s, (th, tw), (ih, iw) = plan.strides[i], plan.sizes[i], plan.sizes[i + 1]
            # A transposed conv gives (in - 1) * s - 2p + k + output_padding; pick the padding (0 or
            # 1 for stride 2) that restores the exact size, so odd sides need no crop.
            pad_out = (th - ((ih - 1) * s - 2 * p + k), tw - ((iw - 1) * s - 2 * p + k))
            layers.append(nn.ConvTranspose2d(plan.channels[i], outs[i], k, s, p, pad_out))
            if i > 0:
                layers.append(activation(act))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"expected z of shape (..., {self.latent_dim}), got {tuple(z.shape)}")
        lead = tuple(z.shape[:-1])
        h = self.fc(z.reshape(-1, self.latent_dim)).reshape(-1, *self._top)
        return self.deconvs(h).reshape(*lead, *self.event_shape)
