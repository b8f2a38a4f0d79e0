"""Where training runs: ``train.accelerator``, ``train.devices`` and ``train.precision`` turned into a
Lightning Fabric (accelerator, precision plugin, single-device or DDP strategy).

Fabric supplies the device, the autocast context, the gradient scaler of ``16-mixed`` and the DDP
wrapping (NCCL on CUDA, gloo on the CPU); the two-player loop itself is ours
(:mod:`implicit_vae.training.module`). Processes are started by ``torchrun``, never by Fabric.
"""

from __future__ import annotations

import warnings

import torch

from ..config import ConfigError
from .distributed import World, process_group_backend

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def resolve_accelerator(name: str) -> str:
    """``cpu``, ``cuda`` or ``mps`` for ``train.accelerator``; ``auto`` is a CUDA GPU if one is
    visible, else the CPU (MPS only when asked for: it lacks float64, which evaluation uses).

    Raises:
        ConfigError: for a device that this machine does not have.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.accelerator: {name!r} needs a CUDA GPU, but torch sees none "
                f"(torch {torch.__version__}); use auto or cpu"
            )
        return "cuda"
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(
                "train.accelerator: 'mps' needs Apple's Metal backend, which torch does not see "
                "here; use auto or cpu"
            )
        return "mps"
    if name == "cpu":
        return "cpu"
    raise ConfigError(f"train.accelerator: {name!r} is not known; expected auto, cpu, gpu or mps")


def check_layout(devices: int | None, precision: str, accelerator: str, world: World) -> int:
    """Devices per machine for Fabric; refuses layouts the run cannot have.

    Raises:
        ConfigError: ``devices`` > 1 without torchrun, ``devices`` unequal to torchrun's processes
            per machine, or ``16-mixed`` off CUDA.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "16-mixed" and accelerator != "cuda":
        raise ConfigError(
            f"train.precision: '16-mixed' needs a CUDA GPU (fp16 autocast with a gradient "
            f"scaler), but training runs on the {accelerator}; use bf16-mixed or 32-true"
        )
    per_machine = world.local_world_size if world.ddp else 1
    if devices is not None and devices != per_machine:
        if not world.ddp:
            raise ConfigError(
                f"train.devices: {devices} devices need {devices} processes, one per device; "
                f"start them with torchrun --standalone --nproc_per_node {devices} -m "
                "implicit_vae.cli train ..."
            )
        raise ConfigError(
            f"train.devices: {devices}, but torchrun started {per_machine} processes on this "
            "machine (one per device); pass --nproc_per_node equal to train.devices, or leave "
            "train.devices unset"
        )
    return per_machine


def make_fabric(accelerator: str, devices: int | None, precision: str, world: World):
    """A Fabric for this process: one device, or DDP over ``world`` (launched by torchrun)."""
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    # Lightning's banners ("Using bfloat16 Automatic Mixed Precision") and warnings: fit() routes
    # them to RUN_DIR/lightning.log (training.quiet).
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    per_machine = check_layout(devices, precision, accelerator, world)
    strategy: object = "auto"
    if world.ddp:
        # find_unused_parameters: a critic backward reaches no model parameter and vice versa.
        strategy = DDPStrategy(
            process_group_backend=process_group_backend(accelerator),
            find_unused_parameters=True,
        )
    return Fabric(
        accelerator=accelerator,
        devices=per_machine,
        num_nodes=max(1, world.world_size // per_machine) if world.ddp else 1,
        precision=precision,  # type: ignore[arg-type]
        strategy=strategy,  # type: ignore[arg-type]
    )
