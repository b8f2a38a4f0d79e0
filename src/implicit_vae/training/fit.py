"""Training entry point: ``fit`` builds the run directory, model, data stream and Lightning trainer.

The LightningModule itself lives in :mod:`implicit_vae.lightning_module`, the NaN/inf guards in
:mod:`implicit_vae.guards` and the multi-process pieces in :mod:`implicit_vae.distributed`.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from ..config import Config, ConfigError, config_from_dict
from ..config.factory import build_model
from ..data import load_dataset
from ..data.stream import BatchStream, StepSampler
from .checkpoint import load_checkpoint, remove_stale_temporaries
from .distributed import ShardedStream, World
from .guards import NonFiniteError
from .logs import run_loggers
from .module import ImplicitVAEModule
from .runs import new_run_dir, write_json

__all__ = ["ImplicitVAEModule", "NonFiniteError", "fit", "new_run_dir", "resume_config"]

RESUMABLE_KEYS = (
    "max_steps",
    "checkpoint_every",
    "val_every",
    "log_every",
    "progress_bar",
    "threads",
    "on_nonfinite",
    "max_consecutive_skips",
    "detect_anomaly",
    "saturation_threshold",
    "saturation_patience",
    "strategy",
)


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
    """Train from ``cfg`` (or continue the run in ``resume``); returns the run directory and summary.

    Under ``torchrun`` every process calls this; only rank 0 writes files, and the other ranks get an
    empty summary.

    Raises:
        ConfigError: for a bad config, resume request or process layout.
        NonFiniteError: when a NaN or inf stops training (``train.on_nonfinite``).
    """
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        cfg, ckpt = resume_config(run_dir, resume_overrides or {})
        if ckpt["model_step"] >= cfg.train.max_steps:
            raise ConfigError(
                f"train.max_steps: the run already has {ckpt['model_step']} steps; "
                "pass --set train.max_steps=N with a larger N to continue"
            )
    world = World.from_env(cfg.train.strategy)
    created = world.setup()
    try:
        return _fit(cfg, ckpt, Path(resume) if resume is not None else None, world)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def _fit(
    cfg: Config, ckpt: dict[str, Any] | None, run_dir: Path | None, world: World
) -> tuple[Path, dict[str, Any]]:
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
    stream = BatchStream(data.train, cfg.train.batch_size, cfg.train.seed, data.dynamic_binarize)
    world.local_batch(stream.batch_size)  # refuses a batch that does not split evenly
    if world.rank:  # same initial weights (DDP broadcasts rank 0's), own posterior/prior noise
        L.seed_everything(world.rank_seed(cfg.train.seed), verbose=False)
    if ckpt is None:
        # Rank 0 picks the directory (new_run_dir never reuses one); the others are told.
        run_dir = Path(
            world.broadcast(str(new_run_dir(cfg.train.run_dir)) if world.is_zero else "")
        )
        cfg.train.run_dir = str(run_dir)
    assert run_dir is not None
    module = ImplicitVAEModule(cfg, model, data, run_dir, world)
    if ckpt is not None:
        module.load_resume_state(ckpt)
    if world.is_zero:
        cfg.save(run_dir / "config.yaml")
        if ckpt is not None:  # no other process writes here now: a killed save's leftovers go
            remove_stale_temporaries(run_dir / "checkpoints")
    trainer = _trainer(cfg, run_dir, module.model_step if ckpt is not None else None, world)
    loader = DataLoader(
        ShardedStream(stream, world) if world.world_size > 1 else stream,
        batch_size=None,
        sampler=StepSampler(module.model_step, cfg.train.max_steps),
        num_workers=0,
        generator=torch.Generator().manual_seed(0),
    )
    trainer.fit(module, train_dataloaders=loader)
    return run_dir, (write_outputs(module, run_dir) if world.is_zero else {})


def _trainer(cfg: Config, run_dir: Path, resume_step: int | None, world: World) -> L.Trainer:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    callbacks = (
        [TQDMProgressBar(refresh_rate=max(1, cfg.train.log_every))]
        if cfg.train.progress_bar
        else []
    )
    layout: dict[str, Any] = {"devices": 1}
    if world.ddp:
        # find_unused_parameters: a critic backward reaches no model parameter and vice versa.
        layout = {
            "strategy": DDPStrategy(process_group_backend="gloo", find_unused_parameters=True),
            "devices": world.local_world_size,
            "num_nodes": world.world_size // world.local_world_size,
        }
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        max_steps=-1,
        logger=run_loggers(run_dir, resume_step) if world.is_zero else False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.train.progress_bar,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=cfg.train.log_every,
        use_distributed_sampler=False,  # the step-indexed stream is sharded by ShardedStream
        **layout,
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
        "skipped_batches": module.skips.total,
        "critic_saturated_at_step": module.alarm.saturated_at,
        "processes": module.world.world_size,
        "note": "loss = -reconstruction + beta * kl; with a critic-based divergence, kl is an "
        "estimate and -loss is an ELBO estimate, not a bound",
    }
    write_json(run_dir / "summary.json", summary)
    write_plots(module.model, module.data, module.cfg, run_dir)
    return summary
