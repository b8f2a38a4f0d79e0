"""The two-player loop: alternating critic and model updates, guarded against NaN/inf, exact resume.

AVB-style training alternates two players with their own optimizers (k critic steps per model step),
so the loop is ours; Lightning Fabric supplies the device, autocast, the gradient scaler of
``16-mixed`` and DDP. Validation, checkpoints and logging are tied to the *model* step count, which
survives a resume unchanged; a batch skipped under ``on_nonfinite: skip`` still counts as a step, so
the data order stays a function of the step.

Host synchronisation: each update reads one small tensor back (its loss terms, the fused norm of its
gradients and of the weights changed since the previous read), because the skip/stop guard must decide
before the optimizer steps. That is one read per update (two per step with a critic) and nothing
else in the inner loop; logging uses the values already read. Under DDP that tensor is all-reduced
first (one small collective per update), so every rank reaches the same verdict; under DDP each step
also all-reduces one number, whether any rank got SIGINT/SIGTERM, so that all stop after the same step.

Interruption: :func:`~implicit_vae.training.fit.fit` turns SIGINT/SIGTERM into a :class:`StopRequest`;
the loop finishes the step, writes ``last.ckpt`` at it and raises :class:`TrainingInterrupted`, so the
resumed run logs no step twice and continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric.utilities.seed import seed_everything

from .. import __version__
from ..config import Config
from ..data import Dataset
from ..model import ImplicitVAE
from ..progress import Progress
from ..rng import collect_rng_states, forked_rng, restore_rng_states
from . import guards
from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_save,
)
from .distributed import World
from .guards import CriticSaturationWarning, NonFiniteError, SaturationAlarm, SkipCounter
from .report import validation_images
from .runs import state_mismatch
from .schedules import lr_factor
from .selection import compute_criterion, criterion_for

log = logging.getLogger("implicit_vae.train")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after finishing a step; ``last.ckpt`` holds that step.

    A :class:`KeyboardInterrupt`, so code that already catches Ctrl-C keeps working.
    """

    def __init__(self, step: int, run_dir: Path):
        self.step, self.run_dir = step, run_dir
        super().__init__(
            f"interrupted at step {step}; resume with: implicit-vae train --resume {run_dir}"
        )


class StopRequest:
    """Set by a signal handler (:func:`implicit_vae.training.fit.fit` installs one for SIGINT and
    SIGTERM); the loop reads it after each step, finishes, saves and raises
    :class:`TrainingInterrupted`."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


class TwoPlayerLoop:
    """Trains an :class:`ImplicitVAE`: per batch, ``critic_steps`` critic updates then one model update.

    Args:
        cfg: the run's configuration.
        model: the model to train (moved to the Fabric's device by :meth:`setup`).
        data: the split data set (validation set used for 'best' checkpoints, chosen by
            ``train.select_by``, see :mod:`~implicit_vae.training.selection`).
        run_dir: where checkpoints are written.
        world: this process's rank among the training processes (default: the only one).
        fabric: device, precision and strategy (default: one CPU process, 32-bit).
    """

    def __init__(
        self,
        cfg: Config,
        model: ImplicitVAE,
        data: Dataset,
        run_dir: Path,
        world: World | None = None,
        fabric: Any = None,
    ):
        if fabric is None:
            from lightning.fabric import Fabric

            fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
        self.cfg, self.model, self.data, self.run_dir = cfg, model, data, run_dir
        self.world, self.fabric = world or World(), fabric
        self.model_step = 0
        # Divergences that are not KL (MMD, energy distance, JS…) are logged under their own name.
        est = model.estimator
        self.divergence_key = "kl" if est.is_kl else est.divergence_name
        self.divergence_term = "KL estimate" if est.is_kl else f"{est.divergence_name} estimate"
        # best.ckpt holds the best value so far of the criterion train.select_by names
        self.criterion = criterion_for(cfg.train, model)
        self.best_val = self.criterion.worst
        self.best_step: int | None = None
        self.wall_time = 0.0  # seconds, summed over resumed segments
        self._segment_start = time.perf_counter()
        self._window: dict[str, list[float]] = {}
        self._pending: dict[str, Any] | None = None
        self._unchecked: dict[str, int] = {}  # player -> step of its update whose weights are unread
        self._on_device: dict[str, torch.Tensor] = {}
        self.logs: Any = None
        self.stop = StopRequest()
        self.last_train_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}
        t = cfg.train
        self.skips = SkipCounter(t.on_nonfinite, t.max_consecutive_skips)
        self.alarm = SaturationAlarm(t.saturation_threshold, t.saturation_patience)

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    # --- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        """Move the model to the device (wrapped in DDP under torchrun), make both optimizers and
        load their states when resuming."""
        t, fabric = self.cfg.train, self.fabric
        wrapped = fabric.setup_module(self.model)
        if self.world.ddp:
            # critic_loss goes through DDP's forward too, so its backward all-reduces the critic.
            wrapped.mark_forward_method("critic_loss")
            self._net = wrapped
        else:  # one process: the module itself (autocast comes from fabric.autocast())
            self._net = self.model
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
        self._plain_optimizers = opts
        wrapped_opts = fabric.setup_optimizers(*opts)
        self.optimizers = list(wrapped_opts) if len(opts) > 1 else [wrapped_opts]
        # 16-mixed: the GradScaler skips overflowing steps itself; inf gradients are no guard failure.
        self._scaler = getattr(fabric.strategy.precision, "scaler", None)
        if self._pending is not None:
            for opt, state in zip(self._plain_optimizers, self._pending["optimizers"]):
                opt.load_state_dict(state)  # states follow their parameters to the device
            if self._scaler is not None and self._pending.get("scaler"):
                self._scaler.load_state_dict(self._pending["scaler"])

    # --- the loop -------------------------------------------------------------------------------
    def run(self, stream: Any) -> None:
        """Steps ``model_step + 1 … max_steps`` on batches ``stream[k]`` (k = the step − 1)."""
        t = self.cfg.train
        self._segment_start = time.perf_counter()
        if self._pending is not None:  # right before the first resumed step
            rng = self._pending["rng"]
            if rng is not None:
                restore_rng_states(rng)
            else:  # resumed with more processes than the checkpoint has RNG states for
                seed_everything(self.world.rank_seed(t.seed) + self.model_step, verbose=False)
            self._pending = None
        show = t.progress_bar and self.world.is_zero
        # a bar on a terminal; in a log file or CI ~20 plain lines and one after each validation
        self._bar = Progress(
            t.max_steps, "train", initial=self.model_step, enabled=show, lines=20, unit="step"
        )
        try:
            for k in range(self.model_step, t.max_steps):
                self.training_step(stream[k])
                self.on_step_end()
                if self.model_step < t.max_steps and self._stop_agreed():
                    self.save_interrupted()
                    raise TrainingInterrupted(self.model_step, self.run_dir)
        finally:
            self._bar.close()

    def _stop_agreed(self) -> bool:
        """Whether any process was asked to stop (under DDP a one-number all-reduce per step, so
        every rank stops after the same step and takes part in the same collectives)."""
        if not self.world.ddp or self.world.world_size == 1:
            return bool(self.stop)
        flag = torch.tensor([1.0 if self.stop else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def save_interrupted(self) -> None:
        """``last.ckpt`` at the current step (unless :meth:`on_step_end` has just written it)."""
        t, step = self.cfg.train, self.model_step
        if step % t.checkpoint_every == 0:
            return
        self.check_weights()
        rng = self.world.gather_rng()  # a collective: every rank takes part
        if self.world.is_zero:
            atomic_save(self.checkpoint_state(rng), self.run_dir / "checkpoints" / "last.ckpt")

    def training_step(self, x: torch.Tensor) -> None:
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

    def _update(self, x: torch.Tensor, step: int) -> dict[str, float] | None:
        """One batch: the critic updates, then the model update; None if the batch was skipped."""
        t, opts = self.cfg.train, self.optimizers
        stats: dict[str, float] = {}
        factor = lr_factor(t.lr_schedule, step, t.max_steps, t.lr_milestones, t.lr_gamma)
        for opt, base in zip(opts, (t.lr, t.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        if t.lr_schedule != "constant":
            stats["lr"] = t.lr * factor
        if len(opts) > 1 and t.critic_steps > 0:
            for _ in range(t.critic_steps):
                opts[1].zero_grad(set_to_none=True)
                with self._forward_context():
                    critic = self._net.critic_loss(x, t.n_samples)
                terms = [("critic loss", critic.loss), (None, critic.accuracy)]
                values = self._backward_and_read(step, "critic", critic.loss, terms)
                if values is None:
                    return None
                opts[1].step()
                self._unchecked["critic"] = step
            stats["critic_loss"], stats["critic_accuracy"] = values
        opts[0].zero_grad(set_to_none=True)
        with self._forward_context(), self._critic_frozen():
            out = self._net(x, t.n_samples)
            terms = [
                ("reconstruction", out.reconstruction.mean()),
                (self.divergence_term, out.kl.mean()),
                ("model loss", out.loss),
            ]
            values = self._backward_and_read(step, "model", out.loss, terms)
        if values is None:
            return None
        opts[0].step()
        self._unchecked["model"] = step
        # reconstruction_error = −E_q[log p(x|z)] (nats, lower is better): the sign evaluate uses
        stats.update(
            reconstruction_error=-values[0], loss=values[2], **{self.divergence_key: values[1]}
        )
        return stats

    @contextlib.contextmanager
    def _critic_frozen(self) -> Iterator[None]:
        """The model update's forward and backward with the critics' parameters out of autograd:
        the model optimizer never reads their gradients (the critic update zeroes them first), and
        computing them cost 6 % of a digits step and 11 % of an MNIST one (profiled). Under DDP the
        parameters stay as they are, since its reducer expects the set it was built with."""
        params = [] if self.world.ddp else [p for p in self._players["critic"].params if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    @contextlib.contextmanager
    def _forward_context(self) -> Iterator[None]:
        """Autocast; a forward that fails on weights left non-finite by the previous update (e.g. a
        distribution's argument check) reports those weights, not its own error."""
        try:
            with self.fabric.autocast():
                yield
        except Exception:
            self.check_weights()
            raise

    def _backward_and_read(
        self, step: int, player: str, loss: torch.Tensor, terms: list[tuple[str | None, Any]]
    ) -> list[float] | None:
        """Backward, then one host read of the terms (rank means), the gradient norm and the weights
        left unchecked by earlier updates; refuses (None, or raises) on a non-finite one. Terms
        named None are logged but not guarded (e.g. accuracy, NaN for critics without one)."""
        means = self.world.reduce_mean(
            torch.stack(
                [torch.as_tensor(v, device=self.device).detach().float().reshape(()) for _, v in terms]
            )
        )
        names = [name for name, _ in terms]
        if self.cfg.train.detect_anomaly:  # debug: name a non-finite loss before its backward
            refused = self._check_terms(step, names, means.tolist())
            if refused:
                return None
        self._backward(loss, step, f"{player} gradient")
        grads = [p.grad for p in self._players[player].params if p.grad is not None]
        parts = [means]
        if grads and self._scaler is None:
            parts.append(torch.stack(torch._foreach_norm(grads)).sum().float().view(1))
        unchecked = list(self._unchecked.items())
        parts += [self._weight_norm(name) for name, _ in unchecked]
        values = torch.cat(parts).tolist()  # the one host read of this update
        self._unchecked.clear()
        n = len(terms)
        rest = values[n:]
        if grads and self._scaler is None:
            grad_norm, rest = rest[0], rest[1:]
        else:
            grad_norm = 0.0
        for (name, made_at), norm in zip(unchecked, rest):
            if not math.isfinite(norm):
                self._weights_failed(name, made_at)
        if self._check_terms(step, names, values[:n]):
            return None
        if not math.isfinite(grad_norm):
            bad = guards.nonfinite_value(grads)  # None: finite entries whose squares overflowed
            if bad is not None:
                self._refuse(step, f"{player} gradient", bad)
                return None
        return values[:n]

    def _check_terms(self, step: int, names: list[str | None], values: list[float]) -> bool:
        """True (after :meth:`_refuse`) if a guarded term is not finite."""
        for name, value in zip(names, values):
            if name is not None and not math.isfinite(value):
                self._refuse(step, name, value)
                return True
        return False

    def _weight_norm(self, player: str) -> torch.Tensor:
        with torch.no_grad():
            params = self._players[player].params
            return torch.stack(torch._foreach_norm(params)).sum().float().view(1)

    def check_weights(self) -> None:
        """Read the weights changed since the last read now (before a checkpoint or validation)."""
        if not self._unchecked:
            return
        unchecked = list(self._unchecked.items())
        self._unchecked.clear()
        norms = torch.cat([self._weight_norm(name) for name, _ in unchecked]).tolist()
        for (name, made_at), norm in zip(unchecked, norms):
            if not math.isfinite(norm):
                self._weights_failed(name, made_at)

    def _weights_failed(self, player: str, step: int) -> None:
        bad = guards.first_nonfinite_weight(self._players[player].named)
        if bad is None:  # finite entries whose squares overflowed the norm
            return
        detail = f"after the {player} update, from finite gradients; no checkpoint was written"
        raise NonFiniteError(step, f"weight {bad[0]}", bad[1], detail, self.last_good_checkpoint())

    def _backward(self, loss: torch.Tensor, step: int, term: str) -> None:
        try:
            self.fabric.backward(loss)  # scales under 16-mixed; DDP all-reduces as it goes
        except RuntimeError as err:  # detect_anomaly's report, turned into the guard's one line
            if guards.ANOMALY_MARK not in str(err):
                raise
            detail = f"autograd anomaly: {str(err).splitlines()[0]}"
            raise NonFiniteError(step, term, "nan", detail, self.last_good_checkpoint()) from err

    def _refuse(self, step: int, term: str, value: float) -> None:
        """Drop this batch's gradients; stop (raise) or count the batch as skipped."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        shown = guards.describe_value(value)
        if not self.skips.should_skip():
            raise NonFiniteError(step, term, shown, self.skips.hint(), self.last_good_checkpoint())
        if self.world.is_zero:
            total = self.skips.total
            log.warning("step %d skipped: the %s is %s (%d so far)", step, term, shown, total)

    def last_good_checkpoint(self) -> Path | None:
        path = self.run_dir / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None

    # --- after each step: logging, validation, checkpoints ----------------------------------
    def on_step_end(self) -> None:
        t, step = self.cfg.train, self.model_step
        last = step == t.max_steps
        logged = step % t.log_every == 0 or last
        validate = (step % t.val_every == 0 or last) and self.world.is_zero
        save = step % t.checkpoint_every == 0 or last
        if validate or save:
            self.check_weights()  # no checkpoint or validation of non-finite weights
        if logged:
            self.last_train_metrics = {k: sum(v) / len(v) for k, v in self._window.items()}
            metrics = {f"train/{k}": v for k, v in self.last_train_metrics.items()}
            if t.on_nonfinite == "skip":
                metrics["train/skipped_batches"] = float(self.skips.total)
            self._log(metrics)
            self._window = {}
        if validate:
            self.last_val_metrics = self.evaluate_split(self.data.val, split="val")
            x_val = self._on_device.get("val", self.data.val)
            self.last_val_metrics.update(compute_criterion(self.criterion, self.model, x_val, t))
            self._log({f"val/{k}": v for k, v in self.last_val_metrics.items()})
            if self.logs is not None:  # small grids, drawn at validations only
                self.logs.log_images(validation_images(self.model, x_val, self.data, t.seed), step)
            value = self.last_val_metrics.get(self.criterion.metric, math.nan)
            if self.criterion.better(value, self.best_val):
                self.best_val, self.best_step = value, step
                atomic_save(self.checkpoint_state(), self.run_dir / "checkpoints" / "best.ckpt")
        if logged or validate:
            self._progress(step, validated=validate)
        if save:
            rng = self.world.gather_rng()  # a collective: every rank takes part
            if self.world.is_zero:
                atomic_save(self.checkpoint_state(rng), self.run_dir / "checkpoints" / "last.ckpt")

    def _progress(self, step: int, validated: bool = False) -> None:
        """The bar's (or plain line's) training loss, divergence and critic accuracy, and the
        latest validation loss beside them."""
        bar = getattr(self, "_bar", None)
        if bar is None or not bar.enabled:
            return
        m = self.last_train_metrics
        shown = {"loss": m.get("loss"), self.divergence_key: m.get(self.divergence_key)}
        shown["acc"] = m.get("critic_accuracy")
        shown["val_loss"] = self.last_val_metrics.get("loss")
        bar.set_postfix(**shown)
        bar.update_to(step, line=validated)

    def _log(self, metrics: dict[str, float]) -> None:
        if self.logs is not None:
            self.logs.log(metrics, step=self.model_step)

    @torch.no_grad()
    def evaluate_split(
        self, x_all: torch.Tensor, batch_size: int = 500, split: str | None = None
    ) -> dict[str, float]:
        """Mean loss, reconstruction error −E_q[log p(x|z)] and KL estimate over a split (so that
        ``loss = reconstruction_error + beta * kl`` under the ELBO; under the importance-weighted
        objective the loss is its negative bound), on the training device (the split
        is copied there once); uses its own RNG stream (CPU and every CUDA device forked) so the
        training sequence is the same whether or not (or how often) validation runs."""
        if split is not None:  # a split of the run: keep its device copy for the next validation
            x_all = self._on_device.setdefault(split, x_all.to(self.device))
        else:
            x_all = x_all.to(self.device)
        was_training = self.model.training
        self.model.eval()
        key = self.divergence_key
        sums = []
        with forked_rng(self.cfg.train.seed + 12_345):
            for x in x_all.split(batch_size):
                terms = self.model(x, self.cfg.train.n_samples)
                sums.append(
                    torch.stack([terms.reconstruction.sum(), terms.kl.sum(), terms.objective.sum()])
                )
        self.model.train(was_training)
        chunks = torch.stack(sums).tolist() if sums else []  # one host read
        n = x_all.shape[0]
        out = {
            "reconstruction_error": -sum(c[0] for c in chunks) / n,
            key: sum(c[1] for c in chunks) / n,
        }
        # −objective: reconstruction_error + β·KL under the ELBO, the negative IW bound under "iw"
        out["loss"] = -sum(c[2] for c in chunks) / n
        return out

    # --- checkpoints -------------------------------------------------------------------------------
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
            "best_val": self.best_val,  # of the criterion select_by names
            "best_step": self.best_step if self.best_step is not None else -1,
            "select_by": self.criterion.select_by,
            "wall_time": self.wall_time + time.perf_counter() - self._segment_start,
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self._plain_optimizers],
            "rng": ranks[0],
            "guards": {**self.skips.state(), **self.alarm.state()},
            "world_size": self.world.world_size,
            "device": self.device.type,
            "event_shape": list(self.model.posterior.event_shape),  # rebuilds the model without data
            # train metrics of the steps since the last logged row: a run resumed between two log
            # steps logs the same averages as an unbroken one
            "log_window": {k: [float(v) for v in vs] for k, vs in self._window.items()},
        }
        if self._scaler is not None:
            state["scaler"] = self._scaler.state_dict()
        if len(ranks) > 1:
            state["rng_ranks"] = ranks  # rank r resumes from rng_ranks[r]
        return state

    def load_resume_state(self, ckpt: dict[str, Any]) -> None:
        """Restore weights and counters now; optimizer and RNG states in :meth:`setup` / :meth:`run`."""
        mismatch = state_mismatch(self.model.state_dict(), ckpt["model"])
        if mismatch:
            raise CheckpointError(
                f"checkpoint does not fit the model built from its config ({mismatch})"
            )
        self.model.load_state_dict(ckpt["model"])
        self.model_step = int(ckpt["model_step"])
        started = ckpt.get("select_by", "loss")  # checkpoints from before select_by: the loss
        if started != self.criterion.select_by:
            raise CheckpointError(
                f"train.select_by: the run chose best.ckpt by {started!r} since it started; it "
                f"cannot continue by {self.criterion.select_by!r} (start a new run for that)"
            )
        self.best_val = float(ckpt["best_val"])
        best_step = int(ckpt.get("best_step", -1))
        self.best_step = best_step if best_step >= 0 else None
        self.wall_time = float(ckpt["wall_time"])
        states = ckpt.get("guards", {})
        self.skips.load(states)
        self.alarm.load(states)
        window = ckpt.get("log_window") or {}
        self._window = {str(k): [float(v) for v in vs] for k, vs in window.items()}
        if "reconstruction" in self._window:  # an older checkpoint: E_q log p(x|z), other sign
            old = self._window.pop("reconstruction")
            self._window["reconstruction_error"] = [-v for v in old]
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        rank = self.world.rank
        rng = ckpt["rng"] if rank == 0 else (ranks[rank] if rank < len(ranks) else None)
        self._pending = {"optimizers": ckpt["optimizers"], "rng": rng, "scaler": ckpt.get("scaler")}


ImplicitVAEModule = TwoPlayerLoop  # the name of earlier versions (then a LightningModule)
