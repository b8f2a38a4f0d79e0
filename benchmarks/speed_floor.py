"""The compute floor of a training step: exactly its networks' forward and backward passes.

Forward hooks on every network a model holds (the posterior's, the decoder, the critic's) record
the shapes of the tensors each receives during one real training step (the critic update and the
model update). :meth:`NetworkFloor.step` replays those calls on random tensors of the same shapes,
with one backward pass per update through everything it ran, and nothing else: no sampling logic,
moments, whitening, losses, guards, optimizer or logging. A step of the trainer divided by this is
what the library adds on top of the networks (``benchmarks/speed.py``, figure d).
"""

from __future__ import annotations

import torch
from torch import nn

from implicit_vae.model import ImplicitVAE


def network_modules(model: ImplicitVAE) -> dict[str, nn.Module]:
    """The networks of a model by role: posterior networks, decoder and critic(s)."""
    nets: dict[str, nn.Module] = {}
    for name in ("net", "trunk", "bases", "z0", "coeffs"):
        if isinstance(getattr(model.posterior, name, None), nn.Module):
            nets[f"posterior.{name}"] = getattr(model.posterior, name)
    nets["likelihood.decoder"] = model.likelihood.decoder
    critic = getattr(model.estimator, "critic", None)
    if isinstance(critic, nn.Module):
        nets["estimator.critic"] = critic
    if isinstance(getattr(model, "prior_critic", None), nn.Module):
        nets["prior_critic"] = model.prior_critic
    return nets


class NetworkFloor:
    """Records one step's network calls, then replays them as the step's compute floor.

    Args:
        model: the model whose step is measured.
        x: one training batch.
        n_samples, critic_steps: as in ``train.*``.
    """

    def __init__(self, model: ImplicitVAE, x: torch.Tensor, n_samples: int, critic_steps: int):
        self.nets = network_modules(model)
        self.calls: list[list[tuple[str, list, bool]]] = []
        current: list[tuple[str, list, bool]] = []

        def hook(name):
            def record(module, args):
                shapes = [a.shape if isinstance(a, torch.Tensor) else a for a in args]
                current.append((name, shapes, torch.is_grad_enabled()))

            return record

        handles = [net.register_forward_pre_hook(hook(n)) for n, net in self.nets.items()]
        try:
            for _ in range(critic_steps if model.critic_parameters() else 0):
                model.critic_loss(x, n_samples).loss.backward()
                self.calls.append(current)
                current = []
            model(x, n_samples).loss.backward()
            self.calls.append(current)
        finally:
            for h in handles:
                h.remove()
        model.zero_grad(set_to_none=True)
        self.dtype, self.device = x.dtype, x.device

    def step(self) -> None:
        """Each recorded update's network calls on fresh random inputs, in the grad mode each ran in,
        then one backward."""
        for update in self.calls:
            total = 0.0
            for name, shapes, grad in update:
                args = [
                    torch.randn(s, dtype=self.dtype, device=self.device)
                    if isinstance(s, torch.Size)
                    else s
                    for s in shapes
                ]
                with torch.set_grad_enabled(grad):  # the critic update's posterior draw has none
                    out = self.nets[name](*args).float().sum()
                if out.requires_grad:
                    total = total + out
            if isinstance(total, torch.Tensor):
                total.backward()
        for net in self.nets.values():
            net.zero_grad(set_to_none=True)
