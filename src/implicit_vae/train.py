"""Lightning training: alternating critic and model updates, exact resume, loggers and run outputs.

The LightningModule uses manual optimisation because AVB-style training alternates two players with
their own optimizers (k critic steps per model step). Validation, checkpoints and logging are tied to
the *model* step count, which survives a resume unchanged.
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
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader

from . import __version__
from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_save,
    collect_rng_states,
    load_checkpoint,
    restore_rng_states,
)
from .config import Config, ConfigError, config_from_dict
from .data import Dataset, load_dataset
from .factory import build_model
from .logs import run_loggers
from .model import ImplicitVAE
from .runs import new_run_dir, state_mismatch, write_json
from .stream import BatchStream, StepSampler

RESUMABLE_KEYS = (
    "max_steps",
    "checkpoint_every",
    "val_every",
    "log_every",
    "progress_bar",
    "threads",
)


class ImplicitVAEModule(L.LightningModule):
    """Trains an :class:`ImplicitVAE`: per batch, ``critic_steps`` critic updates then one model update.

    Args:
        cfg: the run's configuration.
        model: the model to train.
        data: the split data set (validation set used for 'best' checkpoints).
        run_dir: where checkpoints are written.
    """

    def __init__(self, cfg: Config, model: ImplicitVAE, data: Dataset, run_dir: Path):
        super().__init__()
        self.automatic_optimization = False
        self.cfg, self.model, self.data, self.run_dir = cfg, model, data, run_dir
        self.model_step = 0
        # Divergences that are not KL (MMD, energy distance, JS…) are logged under their own name.
        est = model.estimator
        self.divergence_key = "kl" if est.is_kl else est.divergence_name
        self.best_val = math.inf
        self.wall_time = 0.0  # seconds, summed over resumed segments
        self._segment_start = time.perf_counter()
        self._window: dict[str, list[float]] = {}
        self._pending: dict[str, Any] | None = None
        self.last_train_metrics: dict[str, float] = {}
        self.last_val_metrics: dict[str, float] = {}

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        t = self.cfg.train
        betas = (t.beta1, t.beta2)
        opts = [torch.optim.Adam(self.model.model_parameters(), lr=t.lr, betas=betas)]
        if self.model.critic_parameters():
            opts.append(
                torch.optim.Adam(self.model.critic_parameters(), lr=t.critic_lr, betas=betas)
            )
        return opts

    def _optimizers(self) -> list:
        opts = self.optimizers()
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    def training_step(self, x: torch.Tensor, batch_idx: int) -> None:
        t = self.cfg.train
        opts = self._optimizers()
        stats: dict[str, float] = {}
        if len(opts) > 1 and t.critic_steps > 0:
            for _ in range(t.critic_steps):
                opts[1].zero_grad(set_to_none=True)
                critic = self.model.critic_loss(x, t.n_samples)
                self.manual_backward(critic.loss)
                opts[1].step()
            stats["critic_loss"], stats["critic_accuracy"] = (
                float(critic.loss.detach()),
                critic.accuracy,
            )
        opts[0].zero_grad(set_to_none=True)
        terms = self.model(x, t.n_samples)
        self.manual_backward(terms.loss)
        opts[0].step()
        self.model_step += 1
        stats.update(
            loss=float(terms.loss.detach()),
            reconstruction=float(terms.reconstruction.detach().mean()),
            **{self.divergence_key: float(terms.kl.detach().mean())},
        )
        for key, value in stats.items():
            self._window.setdefault(key, []).append(value)
        bar = {"loss": stats["loss"], self.divergence_key: stats[self.divergence_key]}
        if "critic_accuracy" in stats:
            bar["acc"] = stats["critic_accuracy"]
        self.log_dict(bar, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    # --- hooks: resume, logging, validation, checkpoints ---------------------------------------
    def on_train_start(self) -> None:
        self._segment_start = time.perf_counter()
        if self._pending is not None:
            for opt, state in zip(self._optimizers(), self._pending["optimizers"]):
                opt.optimizer.load_state_dict(state) if hasattr(
                    opt, "optimizer"
                ) else opt.load_state_dict(state)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restoring the RNG right before the first resumed step makes anything Lightning draws while
        # setting up irrelevant to the continuation.
        if self._pending is not None:
            restore_rng_states(self._pending["rng"])
            self._pending = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        t, step = self.cfg.train, self.model_step
        last = step == t.max_steps
        if step % t.log_every == 0 or last:
            self.last_train_metrics = {k: sum(v) / len(v) for k, v in self._window.items()}
            self._log({f"train/{k}": v for k, v in self.last_train_metrics.items()})
            self._window = {}
        if step % t.val_every == 0 or last:
            self.last_val_metrics = self.evaluate_split(self.data.val)
            self._log({f"val/{k}": v for k, v in self.last_val_metrics.items()})
            if self.last_val_metrics["loss"] < self.best_val:
                self.best_val = self.last_val_metrics["loss"]
                atomic_save(self.checkpoint_state(), self.run_dir / "checkpoints" / "best.ckpt")
        if step % t.checkpoint_every == 0 or last:
            atomic_save(self.checkpoint_state(), self.run_dir / "checkpoints" / "last.ckpt")

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

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizers, counters, RNG, config."""
        return {
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "config": self.cfg.to_dict(),
            "model_step": self.model_step,
            "best_val": self.best_val,
            "wall_time": self.wall_time + time.perf_counter() - self._segment_start,
            "model": self.model.state_dict(),
            "optimizers": [
                o.optimizer.state_dict() if hasattr(o, "optimizer") else o.state_dict()
                for o in self._optimizers()
            ],
            "rng": collect_rng_states(),
        }

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
        self._pending = {"optimizers": ckpt["optimizers"], "rng": ckpt["rng"]}


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """The stored config of ``run_dir`` (with allowed ``train.*`` overrides) and its last checkpoint."""
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: run directory {str(run_dir)!r} does not exist")
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    raw = ckpt["config"]
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section != "train" or name not in RESUMABLE_KEYS:
            raise ConfigError(
                f"{key}: cannot be changed when resuming; only train."
                f"{{{','.join(RESUMABLE_KEYS)}}} can"
            )
        raw[section][name] = value
    return config_from_dict(raw), ckpt


def fit(
    cfg: Config, resume: str | Path | None = None, resume_overrides: dict[str, Any] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Train from ``cfg`` (or continue the run in ``resume``); returns the run directory and summary."""
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        cfg, ckpt = resume_config(run_dir, resume_overrides or {})
        if ckpt["model_step"] >= cfg.train.max_steps:
            raise ConfigError(
                f"train.max_steps: the run already has {ckpt['model_step']} steps; "
                "pass --set train.max_steps=N with a larger N to continue"
            )
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, verbose=False)
    data = load_dataset(cfg.data, cfg.train.seed)
    model = build_model(cfg, data.data_dim)
    if model.likelihood.needs_binary_data and not data.binary:
        raise ConfigError(
            "model.likelihood: 'bernoulli' needs binary data, but these data are "
            "continuous; use data.binarize=dynamic or fixed, or model.likelihood=gaussian"
        )
    if ckpt is None:
        run_dir = new_run_dir(cfg.train.run_dir)
        cfg.train.run_dir = str(run_dir)
        cfg.save(run_dir / "config.yaml")
    module = ImplicitVAEModule(cfg, model, data, run_dir)
    if ckpt is not None:
        module.load_resume_state(ckpt)
        cfg.save(run_dir / "config.yaml")
    trainer = _trainer(cfg, run_dir, module.model_step if ckpt is not None else None)
    stream = BatchStream(data.train, cfg.train.batch_size, cfg.train.seed, data.dynamic_binarize)
    loader = DataLoader(
        stream,
        batch_size=None,
        sampler=StepSampler(module.model_step, cfg.train.max_steps),
        num_workers=0,
        generator=torch.Generator().manual_seed(0),
    )
    trainer.fit(module, train_dataloaders=loader)
    return run_dir, write_outputs(module, run_dir)


def _trainer(cfg: Config, run_dir: Path, resume_step: int | None) -> L.Trainer:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    loggers = run_loggers(run_dir, resume_step)
    callbacks = (
        [TQDMProgressBar(refresh_rate=max(1, cfg.train.log_every))]
        if cfg.train.progress_bar
        else []
    )
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        max_steps=-1,
        logger=loggers,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.train.progress_bar,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=cfg.train.log_every,
    )


def write_outputs(module: ImplicitVAEModule, run_dir: Path) -> dict[str, Any]:
    """summary.json and plots for a finished run."""
    from .report import write_plots

    test = module.evaluate_split(module.data.test) if module.data.test.shape[0] else {}
    summary = {
        "steps": module.model_step,
        "wall_time_s": round(module.wall_time + time.perf_counter() - module._segment_start, 2),
        "divergence": module.cfg.divergence.name,
        "divergence_key": module.divergence_key,
        "kl_is_estimate": module.cfg.divergence.name != "analytic",
        "train": module.last_train_metrics,
        "val": module.last_val_metrics,
        "test": test,
        "best_val_loss": module.best_val,
        "note": "loss = -reconstruction + beta * kl; with a critic-based divergence, kl is an "
        "estimate and -loss is an ELBO estimate, not a bound",
    }
    write_json(run_dir / "summary.json", summary)
    write_plots(module.model, module.data, module.cfg, run_dir)
    return summary
