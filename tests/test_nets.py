"""Tests for implicit_vae.nets: MLP shapes, noise injection, residual critics at initialisation."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from implicit_vae.networks import (
    ACTIVATIONS,
    NoiseInjectedMLP,
    ParallelMLPs,
    ResidualBlock,
    ResidualCritic,
    activation,
    mlp,
)

# The critic head is initialised N(0, 1e-3²); with width-64 unit-scale features its output has
# standard deviation ~1e-2, so 0.1 is a ~10σ bound on "starts near 0".
CRITIC_INIT_ATOL = 0.1
# Bit-level float32 agreement for the same computation done in a different order.
EXACT_ATOL = 1e-6


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden", [(), (5,), (7, 3)])
def test_mlp_shape_and_layers(act, hidden):
    """mlp maps (N, in) -> (N, out) with one Linear per hidden width plus the output layer."""
    net = mlp(4, hidden, 3, act)
    out = net(torch.randn(6, 4))
    assert out.shape == (6, 3)
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == len(hidden) + 1
    assert isinstance(net[-1], torch.nn.Linear)  # no output activation


def test_mlp_broadcasts_leading_dims():
    """Extra leading dimensions pass through: (n, B, in) -> (n, B, out)."""
    assert mlp(4, (8,), 3)(torch.randn(2, 5, 4)).shape == (2, 5, 3)


def test_unknown_activation_names_choices():
    """An unknown activation is a ValueError that lists the known names."""
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*elu"):
        activation("gelu")


@pytest.mark.parametrize("inject_hidden", [False, True])
def test_noise_injected_mlp_shape(inject_hidden):
    """g(x, ε): (N, in), (N, noise) -> (N, out); one noise map per hidden layer when injecting."""
    net = NoiseInjectedMLP(4, 3, (8, 6), 2, inject_hidden=inject_hidden)
    assert net(torch.randn(5, 4), torch.randn(5, 3)).shape == (5, 2)
    assert len(net.noise_maps) == (2 if inject_hidden else 0)


@pytest.mark.parametrize("inject_hidden", [False, True])
def test_noise_injected_mlp_depends_on_eps(inject_hidden):
    """For a fixed x the output changes with ε, and is a deterministic function of (x, ε)."""
    net = NoiseInjectedMLP(4, 3, (8, 6), 2, inject_hidden=inject_hidden)
    x = torch.randn(5, 4)
    eps1, eps2 = torch.randn(5, 3), torch.randn(5, 3)
    out1 = net(x, eps1)
    assert torch.equal(out1, net(x, eps1))
    assert (out1 - net(x, eps2)).abs().min() > 0


def test_noise_injected_mlp_gradient_reaches_noise_maps():
    """With hidden injection every noise map receives a non-zero, finite gradient."""
    net = NoiseInjectedMLP(4, 3, (8, 6), 2, inject_hidden=True)
    net(torch.randn(5, 4), torch.randn(5, 3)).sum().backward()
    for noise_map in net.noise_maps:
        grad = noise_map.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_noise_injected_mlp_hidden_injection_adds_linear_map():
    """With injection, hidden layer i computes act(W_i h + b_i + M_i ε): checked by hand."""
    net = NoiseInjectedMLP(4, 3, (8,), 2, act="tanh", inject_hidden=True)
    x, eps = torch.randn(5, 4), torch.randn(5, 3)
    h = torch.tanh(net.layers[0](torch.cat([x, eps], -1)) + eps @ net.noise_maps[0].weight.T)
    torch.testing.assert_close(net(x, eps), net.out(h), atol=EXACT_ATOL, rtol=0)


@pytest.mark.parametrize("act", ["elu", "relu", "tanh"])
def test_residual_block_starts_as_act(act):
    """The zero-initialised second layer makes a fresh block compute act(h) exactly (the residual
    branch is 0); for ReLU on non-negative inputs that is the identity."""
    block = ResidualBlock(16, act)
    h = torch.randn(10, 16)
    assert torch.equal(block(h), activation(act)(h))
    if act == "relu":
        assert torch.equal(block(F.relu(h)), F.relu(h))


@pytest.mark.parametrize("blocks", [0, 1, 3])
def test_residual_critic_starts_near_zero(blocks):
    """A fresh critic outputs (N,) values near 0 (an uninformed logit) with a zero-bias head."""
    critic = ResidualCritic(5, width=64, blocks=blocks)
    out = critic(torch.randn(200, 5))
    assert out.shape == (200,)
    assert out.abs().max() < CRITIC_INIT_ATOL
    assert torch.equal(critic.head.bias, torch.zeros(1))


def test_residual_critic_blocks_are_identity_on_stem_output_with_relu():
    """With ReLU, zero-initialised blocks leave the (non-negative) stem features unchanged, so the
    critic is head(stem(x)) at initialisation."""
    critic = ResidualCritic(5, width=32, blocks=4, act="relu")
    x = torch.randn(20, 5)
    expected = critic.head(critic.stem(x)).squeeze(-1)
    torch.testing.assert_close(critic(x), expected, atol=EXACT_ATOL, rtol=0)


def test_residual_critic_is_trainable():
    """Gradients reach stem, every block and the head (the zero init must not block learning)."""
    critic = ResidualCritic(3, width=16, blocks=2)
    critic(torch.randn(8, 3)).sum().backward()
    for name, p in critic.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert critic.head.weight.grad.abs().sum() > 0
    # The zero-initialised last layer of each block gets a gradient: blocks can leave the identity.
    for block in critic.blocks:
        assert block.inner[2].weight.grad.abs().sum() > 0


def test_parallel_mlps_match_independent_networks():
    """ParallelMLPs(K, ...) maps (K, N, in) -> (K, N, out) and network i equals the plain MLP with
    weights[l][i], biases[l][i] applied to inputs[i] alone."""
    nets = ParallelMLPs(3, 4, (8, 5), 2, act="tanh")
    inputs = torch.randn(3, 6, 4)
    out = nets(inputs)
    assert out.shape == (3, 6, 2)
    for i in range(3):
        h = inputs[i]
        for layer, (w, b) in enumerate(zip(nets.weights, nets.biases, strict=True)):
            h = h @ w[i] + b[i]
            if layer < len(nets.weights) - 1:
                h = torch.tanh(h)
        torch.testing.assert_close(out[i], h, atol=EXACT_ATOL, rtol=0)


def test_parallel_mlps_are_independent():
    """Changing the input of network j leaves the other networks' outputs unchanged, and every
    network's parameters get a gradient only from its own output."""
    nets = ParallelMLPs(3, 4, (8,), 2)
    inputs = torch.randn(3, 6, 4)
    changed = inputs.clone()
    changed[1] += 1.0
    a, b = nets(inputs), nets(changed)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and not torch.equal(a[1], b[1])
    nets(inputs)[0].sum().backward()
    for w in nets.weights:
        assert w.grad[0].abs().sum() > 0 and torch.equal(w.grad[1:], torch.zeros_like(w.grad[1:]))
