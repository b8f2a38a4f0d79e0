"""Tests for implicit_vae.networks.conv: shapes, exact decoder sizes, gradient flow, noise
dependence, per-example independence (no BatchNorm), dtype/device following and a tiny fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from implicit_vae.networks.conv import (
    ConvCriticFeatures,
    ConvDecoder,
    ConvEncoder,
    ConvNoiseEncoder,
)

NOISE_DIM, LATENT_DIM = 6, 4
# MNIST, the small grey and RGB sizes, and odd / non-square sides through both layouts (small
# trunk below 16 pixels, AVB's trunk from 16 up).
SHAPES = [(1, 28, 28), (1, 8, 8), (3, 8, 8), (2, 13, 9), (1, 20, 17)]
KINDS = ["encoder", "noise_encoder", "decoder", "critic"]
# Same float32 computation at a different batch size: only summation order may differ.
BATCH_ATOL = 1e-5


def _build(kind, shape):
    if kind == "encoder":
        return ConvEncoder(shape)
    if kind == "noise_encoder":
        return ConvNoiseEncoder(shape, NOISE_DIM, LATENT_DIM)
    if kind == "decoder":
        return ConvDecoder(LATENT_DIM, shape)
    return ConvCriticFeatures(shape)


def _inputs(kind, shape, n, dtype=torch.float32):
    """Positional inputs for ``n`` examples: images in [0, 1] (plus eps), or latents."""
    if kind == "decoder":
        return (torch.randn(n, LATENT_DIM, dtype=dtype),)
    x = torch.rand(n, *shape, dtype=dtype)
    return (x, torch.randn(n, NOISE_DIM, dtype=dtype)) if kind == "noise_encoder" else (x,)


def _out_shape(net, kind, shape, n):
    if kind == "decoder":
        return (n, *shape)
    return (n, LATENT_DIM) if kind == "noise_encoder" else (n, net.out_features)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_output_shape_and_flat_input(kind, shape):
    """Each net gives its documented shape; image and flat (N, C*H*W) inputs give the same output."""
    net = _build(kind, shape)
    args = _inputs(kind, shape, 3)
    out = net(*args)
    assert out.shape == _out_shape(net, kind, shape, 3)
    if kind != "decoder":
        flat = (args[0].flatten(1), *args[1:])
        torch.testing.assert_close(net(*flat), out)


@pytest.mark.parametrize("shape", SHAPES)
def test_decoder_keeps_leading_dims(shape):
    """z of shape (3, 5, D) -> (3, 5, C, H, W), equal to decoding the flattened batch."""
    dec = ConvDecoder(LATENT_DIM, shape)
    z = torch.randn(3, 5, LATENT_DIM)
    out = dec(z)
    assert out.shape == (3, 5, *shape)
    torch.testing.assert_close(out.reshape(15, *shape), dec(z.reshape(15, LATENT_DIM)))


def test_encoders_keep_leading_dims():
    """Encoders also take (..., C, H, W) / (..., C*H*W), so they compose with the decoder output."""
    shape = (1, 8, 8)
    x, eps = torch.rand(3, 5, *shape), torch.randn(3, 5, NOISE_DIM)
    enc, noisy = ConvEncoder(shape), ConvNoiseEncoder(shape, NOISE_DIM, LATENT_DIM)
    assert enc(x).shape == (3, 5, enc.out_features)
    assert noisy(x.flatten(2), eps).shape == (3, 5, LATENT_DIM)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_parameter(kind, shape):
    """Backward of the summed output gives every parameter a finite, non-zero gradient."""
    net = _build(kind, shape)
    net(*_inputs(kind, shape, 2)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8)])
def test_noise_encoder_depends_on_eps_and_x(shape):
    """Two noise draws give different z for the same x, and two images for the same noise."""
    net = ConvNoiseEncoder(shape, NOISE_DIM, LATENT_DIM)
    x, eps = torch.rand(4, *shape), torch.randn(4, NOISE_DIM)
    z = net(x, eps)
    assert (net(x, torch.randn(4, NOISE_DIM)) - z).abs().min() > 1e-4
    assert (net(torch.rand(4, *shape), eps) - z).abs().min() > 1e-6


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_examples_do_not_interact(kind, shape):
    """A batch of 4 gives each example the output it gets alone (this rules out BatchNorm), in
    train mode too."""
    net = _build(kind, shape).train()
    args = _inputs(kind, shape, 4)
    with torch.no_grad():
        batched = net(*args)
        alone = torch.cat([net(*(a[i : i + 1] for a in args)) for i in range(4)])
    torch.testing.assert_close(batched, alone, atol=BATCH_ATOL, rtol=BATCH_ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_dtype_follows_input(kind):
    """A .double() net on float64 input gives float64 output."""
    shape = (3, 8, 8)
    net = _build(kind, shape).double()
    assert net(*_inputs(kind, shape, 2, torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("kind", KINDS)
def test_device_follows_input(kind):
    """On the meta device (shapes only) the output stays there: no tensor is made on a fixed device."""
    shape = (1, 28, 28)
    net = _build(kind, shape).to("meta")
    args = [a.to("meta") for a in _inputs(kind, shape, 2)]
    out = net(*args)
    assert out.device.type == "meta"
    assert out.shape == _out_shape(net, kind, shape, 2)


def test_mnist_layout_follows_avb():
    """28x28: AVB conv0 trunk (5x5; 64-128-256-512; stride 2 in the last two) and decoder
    (FC to 512x7x7, then 256, 128, 64, C channels with strides 2, 2, 1, 1)."""
    enc, dec = ConvEncoder((1, 28, 28)), ConvDecoder(8, (1, 28, 28))
    convs = list(enc.trunk.convs)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert [c.stride for c in convs] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert enc.out_features == 512 * 7 * 7
    deconvs = [m for m in dec.deconvs if isinstance(m, nn.ConvTranspose2d)]
    assert dec.fc[0].out_features == 512 * 7 * 7
    assert [c.out_channels for c in deconvs] == [256, 128, 64, 1]
    assert [c.stride for c in deconvs] == [(2, 2), (2, 2), (1, 1), (1, 1)]


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConvEncoder((28, 28)),
        lambda: ConvEncoder((1, 0, 8)),
        lambda: ConvDecoder(4, (1, 8, 8, 1)),
        lambda: ConvCriticFeatures((1, 8, 8), width=0),
        lambda: ConvNoiseEncoder((1, 8, 8), 0, 4),
        lambda: ConvEncoder((1, 8, 8), act="swish"),
    ],
)
def test_bad_construction_raises(build):
    with pytest.raises(ValueError):
        build()


def test_bad_inputs_raise():
    """Wrong image size, wrong latent width and mismatched eps are errors, not silent reshapes."""
    enc, dec = ConvEncoder((1, 8, 8)), ConvDecoder(4, (1, 8, 8))
    noisy = ConvNoiseEncoder((1, 8, 8), NOISE_DIM, 4)
    with pytest.raises(ValueError):
        enc(torch.rand(2, 1, 9, 8))
    with pytest.raises(ValueError):
        dec(torch.randn(4, 8))  # 32 numbers, would reshape to (8, 4) without the check
    with pytest.raises(ValueError):
        noisy(torch.rand(2, 64), torch.randn(3, NOISE_DIM))


def test_tiny_autoencoder_learns():
    """ConvEncoder -> linear -> ConvDecoder fit to 32 random binary 8x8 images: 30 Adam steps must
    halve the Bernoulli cross-entropy. Pixel marginals alone reach only H(0.3) = 0.61 nats from a
    start near 0.65-0.73, so this needs the net to encode the images (seeds 0-4 end at 0.09-0.20)."""
    shape = (1, 8, 8)
    x = (torch.rand(32, 64) < 0.3).float()
    enc = ConvEncoder(shape)
    model = nn.Sequential(enc, nn.Linear(enc.out_features, 16), ConvDecoder(16, shape))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.binary_cross_entropy_with_logits(model(x).flatten(1), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
