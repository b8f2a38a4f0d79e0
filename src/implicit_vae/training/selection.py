"""Which checkpoint is ``best.ckpt``: the criterion ``train.select_by`` computed at each validation.

- ``loss`` (the default): the validation loss −reconstruction + β·KL estimate, kept at its minimum.
  With a critic-based estimator its KL is the critic's own estimate, so it favours the checkpoint
  where the critic is most fooled.
- ``iw_bound``: an importance-weighted stochastic lower bound on log p(x), kept at its maximum:
  ``log_px_is`` (IWAE bound with q, K = ``train.select_samples``) for posteriors with a density,
  ``log_px_iw_semi_implicit`` (the semi-implicit IW bound, K samples each with K fresh mixing
  draws) for semi-implicit ones. Needs a prior with a density.
- ``ais``: ``log_px_ais``, a short AIS estimate (``train.select_ais_chains`` chains,
  ``train.select_ais_steps`` steps, started from q's moments where the posterior has them, as
  ``implicit-vae evaluate`` does), kept at its maximum; any posterior, a prior with a density.

Both bounds are computed on the first ``train.select_examples`` validation examples (the same ones
every time) under a forked, seeded RNG, so the training sequence is the same whatever the
criterion (tests/training/test_selection.py checks the weights after N steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import ConfigError, TrainConfig
from ..model import ImplicitVAE
from ..posteriors import SemiImplicitPosterior

CRITERIA = ("loss", "iw_bound", "ais")
_SEED_OFFSET = 54_321  # the criterion's own stream, apart from validation's (seed + 12 345)


@dataclass(frozen=True)
class Criterion:
    """``select_by`` and what it reads: the logged metric (under ``val/``) and its direction."""

    select_by: str
    metric: str
    maximise: bool

    @property
    def worst(self) -> float:
        return -math.inf if self.maximise else math.inf

    def better(self, value: float, best: float) -> bool:
        """Whether ``value`` beats ``best`` (a NaN never does)."""
        return value > best if self.maximise else value < best


def selection_error(select_by: str, model: ImplicitVAE) -> str | None:
    """Why ``model`` cannot be selected by ``select_by``, naming the criteria it allows, or None."""
    posterior, prior = model.posterior, model.prior
    allowed = ["loss"]
    if prior.has_density:
        if posterior.has_density or isinstance(posterior, SemiImplicitPosterior):
            allowed.append("iw_bound")
        allowed.append("ais")
    if select_by in allowed:
        return None
    if not prior.has_density:
        why = f"{type(prior).__name__} has no log p(z), which every bound on log p(x) needs"
    else:
        why = (
            f"{type(posterior).__name__} is a pure sampler (no log q(z|x), no semi-implicit "
            "mixture), so no importance weights exist"
        )
    return f"{select_by!r} cannot be used here: {why}; allowed: {', '.join(allowed)}"


def criterion_for(t: TrainConfig, model: ImplicitVAE) -> Criterion:
    """The :class:`Criterion` of ``t.select_by`` for ``model``; a one-line ConfigError if the model
    does not allow it."""
    reason = selection_error(t.select_by, model)
    if reason is not None:
        raise ConfigError(f"train.select_by: {reason}")
    if t.select_by == "loss":
        return Criterion("loss", "loss", maximise=False)
    if t.select_by == "ais":
        return Criterion("ais", "log_px_ais", maximise=True)
    semi = not model.posterior.has_density
    return Criterion("iw_bound", "log_px_iw_semi_implicit" if semi else "log_px_is", True)


@torch.no_grad()
def compute_criterion(
    criterion: Criterion, model: ImplicitVAE, x_val: torch.Tensor, t: TrainConfig
) -> dict[str, float]:
    """The criterion's estimate and its standard error on the first ``t.select_examples`` rows of
    ``x_val`` (B, D), on the model's device: ``{metric: mean, metric + "_stderr": s.e.}``; empty
    for ``loss`` (the validation loss is computed anyway). The caller's RNG streams are untouched
    (every estimator runs under its own seeded fork)."""
    from ..evaluation import (
        ais_log_likelihood,
        importance_sampling_log_likelihood,
        log_px_iw_semi_implicit,
    )
    from ..evaluation.run import ais_initial

    if criterion.select_by == "loss":
        return {}
    x = x_val[: t.select_examples].flatten(1)
    if x.shape[0] == 0:
        return {}
    seed = t.seed + _SEED_OFFSET
    was_training = model.training
    model.eval()
    try:
        if criterion.metric == "log_px_is":
            est = importance_sampling_log_likelihood(
                model.log_likelihood, model.prior, model.posterior, x,
                samples=t.select_samples, seed=seed,
            )  # fmt: skip
        elif criterion.metric == "log_px_iw_semi_implicit":
            est = log_px_iw_semi_implicit(
                model.log_likelihood, model.prior, model.posterior, x,
                samples=t.select_samples, mixing_samples=t.select_samples, seed=seed,
            )  # fmt: skip
        else:
            est = ais_log_likelihood(
                model.log_likelihood, model.prior, x, chains=t.select_ais_chains,
                steps=t.select_ais_steps, initial=ais_initial(model, x, seed), seed=seed,
            )  # fmt: skip
    finally:
        model.train(was_training)
    return {criterion.metric: est.mean, f"{criterion.metric}_stderr": est.mean_stderr}
