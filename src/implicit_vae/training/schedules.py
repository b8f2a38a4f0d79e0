"""Learning-rate schedules as pure functions of the model step.

The factor multiplies both players' base learning rates (``train.lr`` and ``train.critic_lr``), so
the critic slows down with the model it tracks. Being a function of the step alone, a schedule needs
no state of its own in a checkpoint: a resumed run continues on the same curve. (Resuming with a
larger ``max_steps`` stretches a decaying curve from that step on.)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

SCHEDULES = ("constant", "cosine", "multistep")


def lr_factor(
    schedule: str, step: int, max_steps: int, milestones: Sequence[int] = (), gamma: float = 0.1
) -> float:
    """Multiplier of the base learning rate for update number ``step`` (1-based) of ``max_steps``.

    ``constant``: 1. ``cosine``: ½(1 + cos(π (step−1) / max_steps)), from 1 at the first update
    down towards 0 at the last (Loshchilov & Hutter 2017, SGDR, one cycle without restarts).
    ``multistep``: ``gamma`` to the number of ``milestones`` already passed, i.e. update
    ``m + 1`` is the first at the lower rate after milestone ``m`` (torch's ``MultiStepLR`` counted
    in updates; pythae's VAE script drops ×10^(−1/5) at epochs 200 and 350, the UIVI code ×0.9
    every 15k iterations).
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(max(step - 1, 0), max_steps) / max_steps
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "multistep":
        if not milestones:
            raise ValueError("the multistep schedule needs at least one milestone")
        return gamma ** bisect.bisect_left(list(milestones), step)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}")
