"""Event shapes: how components describe one data point, e.g. ``(64,)`` or ``(1, 28, 28)``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def event_shape_of(shape: int | Sequence[int]) -> tuple[int, ...]:
    """``64`` -> ``(64,)``; ``(1, 28, 28)`` stays; refuses empty or non-positive sizes."""
    out = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if not out or min(out) < 1:
        raise ValueError(f"an event shape needs sizes >= 1, got {shape!r}")
    return out


def flatten_event(inputs: torch.Tensor, event_shape: tuple[int, ...]) -> torch.Tensor:
    """(..., *event_shape) -> (..., prod(event_shape)), a view; flat inputs pass unchanged."""
    if len(event_shape) > 1 and inputs.shape[-len(event_shape) :] == event_shape:
        return inputs.flatten(-len(event_shape))
    return inputs


def as_event_batch(x: torch.Tensor, event_shape: tuple[int, ...], what: str = "x") -> torch.Tensor:
    """A batch as (B, *event_shape): accepts that shape or flat rows (B, prod(event_shape)).

    The data pipeline keeps rows flat (cheap to index and shard); networks see the event shape.
    Raises ValueError naming both accepted shapes otherwise.
    """
    size = math.prod(event_shape)
    if x.dim() == 1 + len(event_shape) and tuple(x.shape[1:]) == event_shape:
        return x
    if x.dim() == 2 and x.shape[1] == size:
        return x.view(x.shape[0], *event_shape) if len(event_shape) > 1 else x
    shaped = f"(B, {', '.join(map(str, event_shape))})"
    flat = f" or (B, {size})" if len(event_shape) > 1 else ""
    raise ValueError(f"{what} must have shape {shaped}{flat}, got {tuple(x.shape)}")


def network_output(net: torch.nn.Module, inputs: torch.Tensor, features: int) -> torch.Tensor:
    """``net(inputs)``, checked to be (B, features): a user's network with the wrong output gets an
    error naming it rather than a broadcast deep inside a loss."""
    out = net(inputs)
    if out.dim() != 2 or out.shape != (inputs.shape[0], features):
        raise ValueError(
            f"{type(net).__name__} returned shape {tuple(out.shape)}; expected "
            f"({inputs.shape[0]}, {features})"
        )
    return out
