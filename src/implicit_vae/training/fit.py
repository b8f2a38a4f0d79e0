"""Training entry point: ``fit`` builds the run directory, model, data stream and Fabric, then runs
the two-player loop.

The loop lives in :mod:`implicit_vae.training.module`, the device/precision/strategy choice in
:mod:`implicit_vae.training.devices`, the NaN/inf guards in :mod:`implicit_vae.training.guards` and
the multi-process pieces in :mod:`implicit_vae.training.distributed`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric.utilities.seed import seed_everything

from ..config import Config, ConfigError, config_from_dict
from ..config.factory import build_model
from ..data import load_dataset
from ..data.stream import BatchStream
from .checkpoint import load_checkpoint, remove_stale_temporaries
from .devices import make_fabric, resolve_accelerator
from .distributed import ShardedStream, World
from .guards import NonFiniteError
from .logs import RunLogs
from .module import StopRequest, TrainingInterrupted, TwoPlayerLoop
from .quiet import LightningSink, lightning_quiet
from .runs import (
    DATA_INFO,
    RunLock,
    claim_run_dir,
    load_run_data,
    new_run_dir,
    write_data_info,
    write_json,
)
from .selection import criterion_for

__all__ = [
    "NonFiniteError",
    "TrainingInputWarning",
    "TrainingInterrupted",
    "TwoPlayerLoop",
    "check_against_data",
    "fit",
    "new_run_dir",
    "resume_config",
]

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
    "accelerator",  # a run may move between devices; it is exact on the device it stays on
    "devices",
)


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """The stored config of ``run_dir`` (with allowed ``train.*`` overrides) and its last checkpoint."""
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: run directory {str(run_dir)!r} does not exist")
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    raw = ckpt["config"]
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        started = raw.get("train", {}).get("select_by", "loss")
        if key == "train.select_by" and value != started:
            raise ConfigError(
                f"train.select_by: the run chose best.ckpt by {started!r} since it started; "
                f"resuming cannot change it to {value!r} (start a new run for that)"
            )
        if key == "train.select_by":
            continue
        if section != "train" or name not in RESUMABLE_KEYS:
            raise ConfigError(
                f"{key}: cannot be changed when resuming; only train."
                f"{{{','.join(RESUMABLE_KEYS)}}} can"
            )
        raw[section][name] = value
    return config_from_dict(raw), ckpt


def fit(
    cfg: Config,
    resume: str | Path | None = None,
    resume_overrides: dict[str, Any] | None = None,
    on_start: Callable[[Path], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train from ``cfg`` (or continue the run in ``resume``); returns the run directory and summary.

    The run directory is locked (``RUN_DIR/.lock``) for as long as this runs, so no other process
    trains or resumes in it meanwhile. SIGINT and SIGTERM (when called in the main thread) stop
    training after the current step, with ``last.ckpt`` written at that step; a second signal stops
    at once. Under ``torchrun`` every process calls this; only rank 0 creates, locks and writes
    files, and the other ranks get an empty summary. Lightning's own warnings and log messages go
    to ``RUN_DIR/lightning.log``, not to the terminal (:mod:`~implicit_vae.training.quiet`).

    Args:
        on_start: called on rank 0 with the run directory once it is claimed, before training.

    Raises:
        ConfigError: for a bad config, resume request or process layout, or a run directory that
            another live process holds.
        NonFiniteError: when a NaN or inf stops training (``train.on_nonfinite``).
        TrainingInterrupted: after SIGINT or SIGTERM (a KeyboardInterrupt).
    """
    stop = StopRequest()
    with contextlib.ExitStack() as held, _stop_on_signals(stop), lightning_quiet() as quiet:
        ckpt = None
        if resume is not None:
            run_dir = Path(resume)
            if not run_dir.is_dir():
                raise ConfigError(f"--resume: run directory {str(run_dir)!r} does not exist")
            if World.from_env("auto").is_zero:  # before any read: the checkpoint is not moving
                held.callback(RunLock.acquire(run_dir).release)
            cfg, ckpt = resume_config(run_dir, resume_overrides or {})
            if ckpt["model_step"] >= cfg.train.max_steps:
                raise ConfigError(
                    f"train.max_steps: the run already has {ckpt['model_step']} steps; "
                    "pass --set train.max_steps=N with a larger N to continue"
                )
        world = World.from_env(cfg.train.strategy)
        fabric = make_fabric(
            resolve_accelerator(cfg.train.accelerator), cfg.train.devices, cfg.train.precision, world
        )
        created = world.ddp and not dist.is_initialized()
        if world.ddp:  # joins torchrun's process group (NCCL on CUDA, gloo on the CPU)
            fabric.launch()
        try:
            resumed = Path(resume) if resume is not None else None
            return _fit(cfg, ckpt, resumed, world, fabric, held, stop, on_start, quiet)
        finally:
            if created and dist.is_initialized():
                dist.destroy_process_group()


@contextlib.contextmanager
def _stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (the loop stops after its step); a second one raises
    KeyboardInterrupt at once. Nothing is installed outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: Any) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.signal = signum

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _fit(
    cfg: Config,
    ckpt: dict[str, Any] | None,
    run_dir: Path | None,
    world: World,
    fabric: Any,
    held: contextlib.ExitStack,
    stop: StopRequest,
    on_start: Callable[[Path], None] | None,
    quiet: LightningSink | None = None,
) -> tuple[Path, dict[str, Any]]:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, verbose=False)
    if ckpt is None:
        data = load_dataset(cfg.data, cfg.train.seed, likelihood=cfg.model.likelihood)
    else:  # the saved preprocessing, and the same data
        assert run_dir is not None
        data, changed = load_run_data(run_dir, cfg)
        if changed:
            raise ConfigError(
                f"--resume: the data of run {str(run_dir)!r} changed since it started ({changed}); "
                "restore them, or start a new run"
            )
    cfg.data.binarize = data.binarize  # config.yaml and checkpoints record what was done
    model = build_model(cfg, data.event_shape)  # on the CPU: the same initial weights on any device
    criterion_for(cfg.train, model)  # a select_by the model cannot compute fails before any run dir
    check_against_data(cfg, model, data, warn=world.is_zero)
    world.local_batch(min(cfg.train.batch_size, data.train.shape[0]))  # must split evenly
    if world.rank:  # same initial weights (DDP broadcasts rank 0's), own posterior/prior noise
        seed_everything(world.rank_seed(cfg.train.seed), verbose=False)
    if ckpt is None:
        # Rank 0 claims and locks a directory no other run has (atomically); the others are told.
        claimed = ""
        if world.is_zero:
            lock = claim_run_dir(cfg.train.run_dir)
            held.callback(lock.release)
            claimed = str(lock.run_dir)
        run_dir = Path(world.broadcast(claimed))
        cfg.train.run_dir = str(run_dir)
    assert run_dir is not None
    if world.is_zero and quiet is not None:  # Lightning's remarks: into the run, not the terminal
        quiet.attach(run_dir / "lightning.log")
    if world.is_zero and on_start is not None:
        on_start(run_dir)
    if world.is_zero:
        for note in data.notes:
            print(f"data: {note}", flush=True)
    loop = TwoPlayerLoop(cfg, model, data, run_dir, world, fabric)
    loop.stop = stop
    if ckpt is not None:
        loop.load_resume_state(ckpt)
    if world.is_zero:
        cfg.save(run_dir / "config.yaml")
        if ckpt is None or not (run_dir / DATA_INFO).is_file():
            write_data_info(run_dir, data)
        if ckpt is not None:  # no other process writes here now: a killed save's leftovers go
            remove_stale_temporaries(run_dir / "checkpoints")
        loop.logs = RunLogs(run_dir, loop.model_step if ckpt is not None else None)
    loop.setup()
    # The training set goes to the device once; each batch is indexed there (no host copies).
    stream = BatchStream(
        data.train, cfg.train.batch_size, cfg.train.seed, data.dynamic_binarize, fabric.device
    )
    try:
        loop.run(ShardedStream(stream, world) if world.world_size > 1 else stream)
        summary = write_outputs(loop, run_dir) if world.is_zero else {}
    finally:
        if loop.logs is not None:
            loop.logs.close()
    return run_dir, summary


class TrainingInputWarning(UserWarning):
    """A config that trains, but probably not as meant (the message names the key)."""


def check_against_data(cfg: Config, model: Any, data: Any, warn: bool = True) -> None:
    """Refuse or warn about settings that only the built model and the loaded data show to be
    wrong, before anything is written.

    Raises:
        ConfigError: a Bernoulli likelihood on continuous data; ``train.critic_steps=0`` with an
            estimator that has a critic (it would stay at its random initialisation, and so would
            the KL estimate that the model is trained on).
    """
    if model.likelihood.needs_binary_data and not data.binary:
        raise ConfigError(
            "model.likelihood: 'bernoulli' needs binary data, but these data are "
            "continuous; use data.binarize=dynamic or fixed, or model.likelihood=gaussian"
        )
    if cfg.train.critic_steps == 0 and model.critic_parameters():
        raise ConfigError(
            f"train.critic_steps: 0 never trains the critic of divergence.name="
            f"{cfg.divergence.name!r}, so its KL estimate stays that of random weights; "
            "expected >= 1"
        )
    if not warn:  # under torchrun, rank 0 says it once
        return
    n, dim = data.train.shape[0], data.data_dim
    if cfg.train.batch_size > n:
        warnings.warn(
            f"train.batch_size: {cfg.train.batch_size} is more than the {n} training examples; "
            f"every batch is the whole training set ({n})",
            TrainingInputWarning,
            stacklevel=3,
        )
    scales = column_scale_ratio(data) if cfg.model.likelihood == "gaussian" else None
    if scales is not None and not cfg.data.standardize:
        lo, hi = scales
        warnings.warn(
            f"data.standardize: the columns' standard deviations range from {lo:.3g} to {hi:.3g} "
            f"(a factor {hi / lo:.3g}), so the largest dominate the gaussian likelihood; set "
            "data.standardize: true",
            TrainingInputWarning,
            stacklevel=3,
        )
    m = cfg.model
    if not m.hidden and m.architecture == "mlp" and not (m.encoder and m.decoder):
        # Allowed (a linear VAE is a classic baseline), but easily a typo for the default.
        warnings.warn(
            "model.hidden: [] makes the MLP encoder and decoder linear maps (no hidden layer); "
            "give widths such as [256, 256] for a deep model",
            TrainingInputWarning,
            stacklevel=3,
        )
    if cfg.model.latent_dim > dim:
        warnings.warn(
            f"model.latent_dim: {cfg.model.latent_dim} is more than the data's {dim} dimensions; "
            "the extra latent dimensions can carry nothing about x",
            TrainingInputWarning,
            stacklevel=3,
        )


SCALE_RATIO = 100.0  # max/min column std above which a gaussian likelihood warns


def column_scale_ratio(data: Any) -> tuple[float, float] | None:
    """(smallest, largest) standard deviation of the numeric training columns when they differ by
    more than :data:`SCALE_RATIO` (one-hot columns and columns constant in training ignored), else
    None; None for images."""
    if data.image_shape is not None or data.train.shape[0] < 2:
        return None
    std = data.train.double().std(0)
    numeric = ~torch.tensor(data.info.get("one_hot", [False] * std.numel()), dtype=torch.bool)
    std = std[(std > 0) & numeric]
    if std.numel() < 2 or std.max() <= SCALE_RATIO * std.min():
        return None
    return float(std.min()), float(std.max())


def write_outputs(loop: TwoPlayerLoop, run_dir: Path) -> dict[str, Any]:
    """summary.json and plots for a finished run."""
    from .report import flat_hparams, write_plots

    test = loop.evaluate_split(loop.data.test, split="test") if loop.data.test.shape[0] else {}
    summary = {
        "steps": loop.model_step,
        "wall_time_s": round(loop.wall_time + time.perf_counter() - loop._segment_start, 2),
        "divergence": loop.cfg.divergence.name,
        "divergence_key": loop.divergence_key,
        "kl_is_estimate": loop.cfg.divergence.name != "analytic",
        "train": loop.last_train_metrics,
        "val": loop.last_val_metrics,
        "test": test,
        "best_val_loss": loop.best_val if loop.criterion.select_by == "loss" else None,
        "selected_by": selection_summary(loop),
        "skipped_batches": loop.skips.total,
        "critic_saturated_at_step": loop.alarm.saturated_at,
        "processes": loop.world.world_size,
        "device": loop.device.type,
        "precision": loop.cfg.train.precision,
        "note": "loss = reconstruction_error + beta * kl, where reconstruction_error = "
        "-E_q[log p(x|z)] in nats per example (the sign evaluate reports); with a critic-based "
        "divergence, kl is an estimate and -loss is an ELBO estimate, not a bound",
    }
    write_json(run_dir / "summary.json", summary)
    if loop.logs is not None:  # TensorBoard's HPARAMS tab: the config beside the final numbers
        final = {f"{split}/{k}": v for split in ("val", "test") for k, v in summary[split].items()}
        loop.logs.log_hparams(flat_hparams(loop.cfg.to_dict()), final, loop.model_step)
    write_plots(loop.model.cpu(), loop.data, loop.cfg, run_dir)  # the figures are drawn on the CPU
    return summary


def selection_summary(loop: TwoPlayerLoop) -> dict[str, Any]:
    """Which criterion chose ``best.ckpt``, its best value and the step it was reached at."""
    c, t = loop.criterion, loop.cfg.train
    out: dict[str, Any] = {
        "select_by": c.select_by,
        "metric": f"val/{c.metric}",
        "value": loop.best_val if math.isfinite(loop.best_val) else None,
        "step": loop.best_step,
        "best_is": "highest" if c.maximise else "lowest",
    }
    if c.select_by != "loss":
        out["examples"] = min(t.select_examples, int(loop.data.val.shape[0]))
        if c.select_by == "iw_bound":
            out["samples"] = t.select_samples
        else:
            out.update(chains=t.select_ais_chains, steps=t.select_ais_steps)
    return out
