"""NoiseInjectedMLP: many draws per x share the first layer's x-part and equal one call per draw."""

import pytest
import torch
from torch import nn

from implicit_vae.networks import NoiseInjectedMLP
from implicit_vae.networks.noise import noise_net_draws


@pytest.mark.parametrize("hidden", [[], [5], [5, 6]])
@pytest.mark.parametrize("inject_hidden", [False, True])
def test_many_draws_equal_one_call_per_draw(hidden, inject_hidden):
    torch.manual_seed(0)
    net = NoiseInjectedMLP((1, 4, 4), 3, hidden, 2, "relu", inject_hidden)
    x, eps = torch.randn(7, 1, 4, 4), torch.randn(4, 7, 3)
    per_draw = torch.stack([net(x, eps[k]) for k in range(4)])
    torch.testing.assert_close(net.many(x, eps), per_draw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(noise_net_draws(net, x, eps, 2), per_draw, rtol=1e-5, atol=1e-6)
    shared = noise_net_draws(net, x, eps, 2, x_part=net.x_part(x))  # computed once, reused
    torch.testing.assert_close(shared, per_draw, rtol=1e-5, atol=1e-6)


class _UserNet(nn.Module):
    def __init__(self, out_dim):
        super().__init__()
        self.lin = nn.Linear(16 + 3, out_dim)

    def forward(self, x, eps):
        return self.lin(torch.cat([x.flatten(1), eps], -1))


def test_any_module_is_called_on_repeated_x_and_its_shape_checked():
    torch.manual_seed(0)
    x, eps = torch.randn(7, 1, 4, 4), torch.randn(4, 7, 3)
    net = _UserNet(2)
    out = noise_net_draws(net, x, eps, 2)
    torch.testing.assert_close(out[3], net(x, eps[3]))
    with pytest.raises(ValueError, match=r"_UserNet returned shape \(28, 2\); expected \(28, 5\)"):
        noise_net_draws(net, x, eps, 5)
