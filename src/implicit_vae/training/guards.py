"""Training guards: non-finite losses, gradients and weights; a critic-saturation alarm.

A NaN or inf anywhere in an update is caught *before* the optimizer steps, so the weights and the last
checkpoint stay good. The policy is ``train.on_nonfinite``: ``stop`` raises :class:`NonFiniteError`
naming the step and the term; ``skip`` drops the bad update and the rest of that batch's updates
(with ``critic_steps`` > 1, critic updates made before it stay), counts the batch as skipped, and
stops after ``train.max_consecutive_skips`` bad batches in a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

ANOMALY_MARK = "returned nan values"  # torch.autograd.detect_anomaly's error text


class NonFiniteError(RuntimeError):
    """Training met a NaN or inf and stopped before it reached the weights or a checkpoint.

    Attributes:
        step: the model step (1-based, as in checkpoints and logs) whose update was refused.
        term: what was not finite, e.g. ``"KL estimate"``, ``"critic loss"``, ``"model gradient"``.
        value: ``"nan"``, ``"inf"`` or ``"-inf"``.
        checkpoint: the last good checkpoint, or None if none had been written yet.
    """

    def __init__(
        self, step: int, term: str, value: str, detail: str, checkpoint: Path | None
    ) -> None:
        self.step, self.term, self.value, self.checkpoint = step, term, value, checkpoint
        where = (
            f"the last good checkpoint is {checkpoint}"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"training stopped at step {step}: the {term} is {value} ({detail}); {where}"
        )


class CriticSaturationWarning(UserWarning):
    """The critic has classified (almost) perfectly for many steps in a row."""


def describe_value(value: float) -> str:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float."""
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def nonfinite_value(tensors: list[torch.Tensor]) -> float | None:
    """None if every entry of ``tensors`` is finite, else ``nan`` (some entry is NaN) or ``inf``.

    One fused ``_foreach_norm`` and one read: the sum of the tensors' Euclidean norms is finite
    exactly when every entry is, unless squares of huge finite entries overflow, which the rare
    slow path (a look at the entries) tells apart.
    """
    if not tensors or math.isfinite(float(torch.stack(torch._foreach_norm(tensors)).sum())):
        return None
    if any(bool(t.isnan().any()) for t in tensors):
        return math.nan
    return math.inf if any(bool(t.isinf().any()) for t in tensors) else None


class Player:
    """One player's parameters (the model's or the critic's), listed once, and the checks made on
    every update, each one fused pass over the tensors (see :func:`nonfinite_value`).

    Args:
        named: ``(name, parameter)`` pairs.
    """

    def __init__(self, named: Iterable[tuple[str, nn.Parameter]]):
        self.named = list(named)
        self.params = [p for _, p in self.named]

    def nonfinite_gradient(self) -> float | None:
        """None if every gradient entry is finite, else ``nan`` or ``inf``."""
        return nonfinite_value([p.grad for p in self.params if p.grad is not None])

    @torch.no_grad()
    def weights_finite(self) -> bool:
        """True if no parameter holds a NaN or inf."""
        return nonfinite_value(self.params) is None


@torch.no_grad()
def first_nonfinite_weight(named: Iterable[tuple[str, nn.Parameter]]) -> tuple[str, str] | None:
    """``(name, value)`` of the first parameter holding a NaN or inf, else None."""
    named = list(named)
    norms = torch.stack(torch._foreach_norm([p for _, p in named], math.inf))
    if bool(torch.isfinite(norms).all()):
        return None
    for (name, p), norm in zip(named, norms):
        if not torch.isfinite(norm):
            bad = p[~torch.isfinite(p)]
            return name, describe_value(float(bad[0]))
    return None  # pragma: no cover - the norms said otherwise


class SkipCounter:
    """Counts skipped batches under ``on_nonfinite: skip`` and decides when to give up.

    Args:
        policy: ``"stop"`` or ``"skip"``.
        max_consecutive: skipped batches in a row after which training stops anyway.
    """

    def __init__(self, policy: str, max_consecutive: int):
        self.policy, self.max_consecutive = policy, max_consecutive
        self.total = 0
        self.consecutive = 0

    def should_skip(self) -> bool:
        """Record a bad batch; True if it is to be skipped, False if training must stop."""
        if self.policy != "skip":
            return False
        self.total += 1
        self.consecutive += 1
        return self.consecutive <= self.max_consecutive

    def good_batch(self) -> None:
        self.consecutive = 0

    def hint(self) -> str:
        """The parenthesised advice of a :class:`NonFiniteError`."""
        if self.policy == "skip":
            return (
                f"{self.consecutive} batches in a row were not finite, more than "
                f"train.max_consecutive_skips={self.max_consecutive}"
            )
        return (
            "the update was not applied; train.on_nonfinite=skip skips such batches, "
            "train.detect_anomaly=true finds the operation that made it"
        )

    def state(self) -> dict[str, int]:
        return {"skipped_batches": self.total, "consecutive_skips": self.consecutive}

    def load(self, state: dict) -> None:
        self.total = int(state.get("skipped_batches", 0))
        self.consecutive = int(state.get("consecutive_skips", 0))


class SaturationAlarm:
    """Fires once when the critic's accuracy stays above ``threshold`` for ``patience`` steps.

    A critic that separates posterior samples from its reference samples (almost) perfectly sits in
    the flat tails of its loss: its logit, and so the KL estimate read off it, is no longer a density
    ratio but just "very large" (the density chasm of AVB, Mescheder et al. 2017, section 3.3).

    Args:
        threshold: accuracy above which a step counts as saturated (e.g. 0.99).
        patience: saturated steps in a row before the alarm fires.
    """

    def __init__(self, threshold: float, patience: int):
        self.threshold, self.patience = threshold, patience
        self.streak = 0
        self.saturated_at: int | None = None  # the step at which the alarm first fired

    @property
    def saturated(self) -> bool:
        return self.streak >= self.patience

    def update(self, accuracy: float, step: int) -> bool:
        """Record one step's accuracy (nan for estimators without a classifier); True when the alarm
        fires for the first time."""
        self.streak = self.streak + 1 if accuracy > self.threshold else 0  # nan compares False
        if self.saturated and self.saturated_at is None:
            self.saturated_at = step
            return True
        return False

    def message(self, step: int) -> str:
        return (
            f"critic saturated at step {step}: its accuracy has stayed above {self.threshold:g} "
            f"for {self.patience} steps, so it tells posterior samples from its reference samples "
            "almost perfectly and the KL estimate read off it is unreliable (the density chasm); "
            "try divergence.name=avb_ac (adaptive contrast), more train.critic_steps, or a smaller "
            "train.lr so the posterior moves no faster than the critic can follow"
        )

    def state(self) -> dict[str, int | None]:
        return {"saturation_streak": self.streak, "critic_saturated_at_step": self.saturated_at}

    def load(self, state: dict) -> None:
        self.streak = int(state.get("saturation_streak", 0))
        at = state.get("critic_saturated_at_step")
        self.saturated_at = None if at is None else int(at)
