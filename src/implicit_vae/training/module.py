"""The LightningModule: alternating critic and model updates, guarded against NaN/inf, exact resume.

Manual optimisation, because AVB-style training alternates two players with their own optimizers
(k critic steps per model step). Validation, checkpoints and logging are tied to the *model* step
count, which survives a resume unchanged; a batch skipped under ``on_nonfinite: skip`` still counts
as a step, so the data order stays a function of the step.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from .. import __version__
from ..config import Config
from ..data import Dataset
from ..model import ImplicitVAE
from . import guards
from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_save,
    collect_rng_states,
    restore_rng_states,
)
from .distributed import World
from .guards import CriticSaturationWarning, NonFiniteError, SaturationAlarm, SkipCounter
from .runs import state_mismatch
from .schedules import lr_factor

log = logging.getLogger("implicit_vae.train")


class ImplicitVAEModule(L.LightningModule):
    """Trains an :class:`ImplicitVAE`: per batch, ``critic_steps`` critic updates then one model update.

    Args:
        cfg: the run's configuration.
        model: the model to train.
        data: the split data set (validation set used for 'best' checkpoints).
        run_dir: where checkpoints are written.
        world: this process's rank among the training processes (default: the only one).
    """

    def __init__(
        self,
        cfg: Config,
        model: ImplicitVAE,
        data: Dataset,
        run_dir: Path,
        world: World | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.cfg, self.model, self.data, self.run_dir = cfg, model, data, run_dir
        self.world = world or World()
        self.model_step = 0
        # Divergences that are not KL (MMD, energy distance, JS…) are logged under their own name.
        est = model.estimator
        self.divergence_key = "kl" if est.is_kl else est.divergence_name
        self.divergence_term = "KL estimate" if est.is_kl else f"{est.divergence_name} estimate"
        self.best_val = math.inf
        self.wall_time = 0.0  # seconds, summed over resumed segments
        self._segment_start = time.perf_counter()
        self._window: dict[str, list[float]] = {}
        self._pending: dict[str, Any] | None = None
        self.last_train_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        t = cfg.train
        self.skips = SkipCounter(t.on_nonfinite, t.max_consecutive_skips)
        self.alarm = SaturationAlarm(t.saturation_threshold, t.saturation_patience)

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        # Each player's parameters, listed once: the guards read them on every update.
        names = {id(p): n for n, p in self.model.named_parameters()}
        self._players = {
            key: guards.Player([(names[id(p)], p) for p in params])
            for key, params in (
                ("model", self.model.model_parameters()),
                ("critic", self.model.critic_parameters()),
            )
        }
        opts = [torch.optim.Adam(self.model.model_parameters(), lr=t.lr, betas=betas)]
        if self.model.critic_parameters():
            opts.append(
                torch.optim.Adam(self.model.critic_parameters(), lr=t.critic_lr, betas=betas)
            )
        return opts

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        # The plain torch optimizers: Lightning's wrappers add hooks and profiling to every step.
        opts = self.optimizers(use_pl_optimizer=False)
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    def training_step(self, x: torch.Tensor, batch_idx: int) -> None:
        step = self.model_step + 1
        # Anomaly mode (debug) records forward tracebacks and raises on a NaN made in backward.
        with torch.autograd.set_detect_anomaly(self.cfg.train.detect_anomaly, check_nan=True):
            stats = self._update(x, step)
        self.model_step = step
        if stats is None:  # skipped: nothing of this batch reaches the weights or the averages
            return
        self.skips.good_batch()
        if "critic_accuracy" in stats:
            if self.alarm.update(stats["critic_accuracy"], step) and self.world.is_zero:
                warnings.warn(self.alarm.message(step), CriticSaturationWarning, stacklevel=2)
            stats["critic_saturated"] = float(self.alarm.saturated)
        for key, value in stats.items():
            self._window.setdefault(key, []).append(value)
        t = self.cfg.train
        if t.progress_bar and (step % t.log_every == 0 or step == t.max_steps):
            # Only as often as the bar refreshes (a log_dict costs more than the guards), with the
            # averages of the window about to be logged.
            keys = {"loss": "loss", "acc": "critic_accuracy", self.divergence_key: None}
            bar = {k: sum(w) / len(w) for k, v in keys.items() if (w := self._window.get(v or k))}
            self.log_dict(bar, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def _update(self, x: torch.Tensor, step: int) -> dict[str, float] | None:
        """One batch: the critic updates, then the model update; None if the batch was skipped."""
        t, opts = self.cfg.train, self._optimizers()
        stats: dict[str, float] = {}
        factor = lr_factor(t.lr_schedule, step, t.max_steps)
        for opt, base in zip(opts, (t.lr, t.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        if t.lr_schedule != "constant":
            stats["lr"] = t.lr * factor
        if len(opts) > 1 and t.critic_steps > 0:
            for _ in range(t.critic_steps):
                opts[1].zero_grad(set_to_none=True)
                critic = self.model.critic_loss(x, t.n_samples)
                loss, acc = self.world.mean([float(critic.loss.detach()), critic.accuracy])
                if not math.isfinite(loss):
                    return self._refuse(step, "critic loss", loss)
                self._backward(critic.loss, step, "critic gradient")
                bad = self._players["critic"].nonfinite_gradient()  # DDP-averaged
                if bad is not None:
                    return self._refuse(step, "critic gradient", bad)
                opts[1].step()
                self._check_weights(step, "critic")
            stats["critic_loss"], stats["critic_accuracy"] = loss, acc
        opts[0].zero_grad(set_to_none=True)
        terms = self.model(x, t.n_samples)
        names = ("reconstruction", self.divergence_term, "model loss")
        means = torch.stack([terms.reconstruction.mean(), terms.kl.mean(), terms.loss]).detach()
        values = self.world.mean(means.tolist())  # one read of all three terms
        for name, value in zip(names, values):
            if not math.isfinite(value):
                return self._refuse(step, name, value)
        self._backward(terms.loss, step, "model gradient")
        bad = self._players["model"].nonfinite_gradient()
        if bad is not None:
            return self._refuse(step, "model gradient", bad)
        opts[0].step()
        self._check_weights(step, "model")
        stats.update(reconstruction=values[0], loss=values[2], **{self.divergence_key: values[1]})
        return stats

    def _backward(self, loss: torch.Tensor, step: int, term: str) -> None:
        try:
            if self.world.ddp:  # Lightning's backward prepares DDP's gradient all-reduce
                self.manual_backward(loss)
            else:  # one process needs none of its hooks and profiling
                loss.backward()
        except RuntimeError as err:  # detect_anomaly's report, turned into the guard's one line
            if guards.ANOMALY_MARK not in str(err):
                raise
            detail = f"autograd anomaly: {str(err).splitlines()[0]}"
            raise NonFiniteError(step, term, "nan", detail, self.last_good_checkpoint()) from err

    def _refuse(self, step: int, term: str, value: float) -> None:
        """Drop this batch's gradients; stop (raise) or count the batch as skipped."""
        for opt in self._optimizers():
            opt.zero_grad(set_to_none=True)
        shown = guards.describe_value(value)
        if not self.skips.should_skip():
            raise NonFiniteError(step, term, shown, self.skips.hint(), self.last_good_checkpoint())
        if self.world.is_zero:
            total = self.skips.total
            log.warning("step %d skipped: the %s is %s (%d so far)", step, term, shown, total)
        return None

    def _check_weights(self, step: int, player: str) -> None:
        weights = self._players[player]  # one fused check; names are looked up only on failure
        bad = None if weights.weights_finite() else guards.first_nonfinite_weight(weights.named)
        if bad is not None:  # the update is applied already: no batch can be skipped any more
            detail = f"after the {player} update, from finite gradients; no checkpoint was written"
            name, value = f"weight {bad[0]}", bad[1]
            raise NonFiniteError(step, name, value, detail, self.last_good_checkpoint())

    def last_good_checkpoint(self) -> Path | None:
        path = self.run_dir / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None

    # --- hooks: resume, logging, validation, checkpoints ---------------------------------------
    def on_train_start(self) -> None:
        self._segment_start = time.perf_counter()
        if self._pending is not None:
            for opt, state in zip(self._optimizers(), self._pending["optimizers"]):
                opt.load_state_dict(state)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restoring the RNG right before the first resumed step makes anything Lightning draws while
        # setting up irrelevant to the continuation.
        if self._pending is not None:
            rng = self._pending["rng"]
            if rng is not None:
                restore_rng_states(rng)
            else:  # resumed with more processes than the checkpoint has RNG states for
                seed = self.world.rank_seed(self.cfg.train.seed) + self.model_step
                L.seed_everything(seed, verbose=False)
            self._pending = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        t, step = self.cfg.train, self.model_step
        last = step == t.max_steps
        if step % t.log_every == 0 or last:
            self.last_train_metrics = {k: sum(v) / len(v) for k, v in self._window.items()}
            metrics = {f"train/{k}": v for k, v in self.last_train_metrics.items()}
            if self.cfg.train.on_nonfinite == "skip":
                metrics["train/skipped_batches"] = float(self.skips.total)
            self._log(metrics)
            self._window = {}
        if (step % t.val_every == 0 or last) and self.world.is_zero:
            self.last_val_metrics = self.evaluate_split(self.data.val)
            self._log({f"val/{k}": v for k, v in self.last_val_metrics.items()})
            if self.last_val_metrics["loss"] < self.best_val:
                self.best_val = self.last_val_metrics["loss"]
                atomic_save(self.checkpoint_state(), self.run_dir / "checkpoints" / "best.ckpt")
        if step % t.checkpoint_every == 0 or last:
            rng = self.world.gather_rng()  # a collective: every rank takes part
            if self.world.is_zero:
                atomic_save(self.checkpoint_state(rng), self.run_dir / "checkpoints" / "last.ckpt")

    def _log(self, metrics: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.model_step)
            logger.save()  # flushed now, so a crash loses no logged row

    @torch.no_grad()
    def evaluate_split(self, x_all: torch.Tensor, batch_size: int = 500) -> dict[str, float]:
        """Mean loss, reconstruction and KL estimate over a split; uses its own RNG stream so the
        training sequence is the same whether or not (or how often) validation runs."""
        was_training = self.model.training
        self.model.eval()
        key = self.divergence_key
        totals = {"loss": 0.0, "reconstruction": 0.0, key: 0.0}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.train.seed + 12_345)
            for x in x_all.split(batch_size):
                terms = self.model(x, self.cfg.train.n_samples)
                totals["reconstruction"] += float(terms.reconstruction.sum())
                totals[key] += float(terms.kl.sum())
        self.model.train(was_training)
        n = x_all.shape[0]
        out = {k: v / n for k, v in totals.items() if k != "loss"}
        out["loss"] = -out["reconstruction"] + self.model.beta * out[key]
        return out

    def checkpoint_state(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizers, counters, RNG, config.

        Args:
            rng: every rank's RNG states from :meth:`World.gather_rng`; default: this process's.
        """
        ranks = rng if rng is not None else [collect_rng_states()]
        state = {
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "config": self.cfg.to_dict(),
            "model_step": self.model_step,
            "best_val": self.best_val,
            "wall_time": self.wall_time + time.perf_counter() - self._segment_start,
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self._optimizers()],
            "rng": ranks[0],
            "guards": {**self.skips.state(), **self.alarm.state()},
            "world_size": self.world.world_size,
        }
        if len(ranks) > 1:
            state["rng_ranks"] = ranks  # rank r resumes from rng_ranks[r]
        return state

    def load_resume_state(self, ckpt: dict[str, Any]) -> None:
        """Restore weights and counters now; optimizer and RNG states once training starts."""
        mismatch = state_mismatch(self.model.state_dict(), ckpt["model"])
        if mismatch:
            raise CheckpointError(
                f"checkpoint does not fit the model built from its config ({mismatch})"
            )
        self.model.load_state_dict(ckpt["model"])
        self.model_step = int(ckpt["model_step"])
        self.best_val = float(ckpt["best_val"])
        self.wall_time = float(ckpt["wall_time"])
        guards = ckpt.get("guards", {})
        self.skips.load(guards)
        self.alarm.load(guards)
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        rank = self.world.rank
        rng = ckpt["rng"] if rank == 0 else (ranks[rank] if rank < len(ranks) else None)
        self._pending = {"optimizers": ckpt["optimizers"], "rng": rng}
