"""Run directories: creating them without clobbering, locking them while a process trains in them,
writing files atomically, loading trained models.

A run directory is claimed atomically: ``os.mkdir`` without ``exist_ok`` (or, for a directory that
exists but is empty, an ``O_CREAT | O_EXCL`` lock file in it), so of two processes given the same
``train.run_dir`` at once exactly one gets it and the other moves on to ``-2``, ``-3``… A training
or resume then holds ``RUN_DIR/.lock`` (its pid, host and start time, plus ``fcntl.flock`` on it) until
it ends; another process that wants the directory is refused with a one-line :class:`ConfigError`
naming the holder. A lock left by a process that died (its ``flock`` is gone, or where ``flock`` is
not available: its pid no longer runs on this host) is taken over.

``RUN_DIR/data_info.json`` records what was done to the data (binarisation, the categories of
one-hot text columns, standardisation, label names, notes such as how a split was made) and a
fingerprint of every split (rows, columns and the SHA-256 that ``compare`` pairs evaluations by).
``evaluate`` and ``--resume`` re-apply the saved preprocessing; ``--resume`` refuses data whose
fingerprint changed, and ``evaluate`` warns. It also records the directory training ran in, so that
a relative ``data.path`` (or ``train_path``…) that the current directory does not hold is read from
there: a run can be evaluated from anywhere, and the fingerprint still guards what is read.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import socket
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, config_from_dict
from ..config.factory import build_model
from ..data import Dataset, load_dataset
from ..files import atomic_write_text
from ..model import ImplicitVAE
from .checkpoint import CheckpointError, load_checkpoint

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid check alone
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
DATA_INFO = "data_info.json"
SPLITS = ("train", "val", "test")
DATA_PATH_KEYS = ("path", "train_path", "val_path", "test_path")


class RunLock:
    """``run_dir/.lock``, held by this process until :meth:`release` (or the process ends).

    Use :meth:`acquire` for a directory that exists (a resume), :func:`claim_run_dir` for a new one.
    """

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir, self._fd = run_dir, fd

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_NAME

    @classmethod
    def acquire(cls, run_dir: str | Path, what: str = "--resume") -> RunLock:
        """Lock ``run_dir`` (which must exist), taking over a stale lock.

        Raises:
            ConfigError: if a live process holds the lock (the message names it).
        """
        run_dir = Path(run_dir)
        for _ in range(20):  # each retry follows a lock that vanished or was replaced meanwhile
            lock = cls._try_create(run_dir)
            if lock is not None:
                return lock
            lock, holder = cls._try_take_over(run_dir)
            if lock is not None:
                return lock
            if holder is not None:
                raise ConfigError(
                    f"{what}: run directory {str(run_dir)!r} is in use by {holder}; wait for it to "
                    "end, or stop it"
                )
        raise ConfigError(f"{what}: could not lock {str(run_dir)!r}; its lock file keeps changing")

    @classmethod
    def _try_create(cls, run_dir: Path) -> RunLock | None:
        """The lock, if ``run_dir/.lock`` did not exist; None if it does.

        The lock file is written and flocked under a temporary name first and then hard-linked to
        ``.lock`` (which, like ``O_CREAT | O_EXCL``, fails if the name exists), so no other process
        ever sees a lock file without its holder or its flock.
        """
        tmp = run_dir / f"{LOCK_NAME}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except OSError as err:
            raise ConfigError(
                f"train.run_dir: cannot lock {str(run_dir)!r} ({err.strerror or err}); expected a "
                "directory that can be written"
            ) from None
        lock = cls(run_dir, fd)
        try:
            _flock(fd)  # a file just made: no one else holds its flock (None where there is none)
            lock._write_holder()
            os.link(tmp, run_dir / LOCK_NAME)
        except BaseException as err:
            os.close(fd)
            lock._fd = -1
            if isinstance(err, FileExistsError):
                return None
            raise
        else:
            return lock
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def _try_take_over(cls, run_dir: Path) -> tuple[RunLock | None, str | None]:
        """(the lock, None) if the existing lock is stale and now ours; (None, the holder) if a live
        process holds it; (None, None) if the lock file vanished or changed (retry)."""
        path = run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None, None
        try:
            got = _flock(fd)
            if not _same_file(fd, path):  # released (unlinked) or replaced before our flock
                os.close(fd)
                return None, None
            info = _read_holder(fd)
            stale = got is True or (got is None and not _alive_here(info))
            if not stale:
                os.close(fd)
                return None, describe_holder(info)
        except BaseException:
            os.close(fd)
            raise
        lock = cls(run_dir, fd)  # flock held (or unavailable): the file is ours to rewrite
        lock._write_holder()
        return lock, None

    def _write_holder(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        data = (json.dumps(info) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def holder(self) -> dict[str, Any]:
        return _read_holder(self._fd)

    def release(self) -> None:
        """Remove the lock file (while still holding its flock, so no one takes it over half-way)."""
        if self._fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)  # drops the flock
        self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a lock object dropped without release must not leak its fd
        with contextlib.suppress(Exception):
            if self._fd >= 0:
                os.close(self._fd)


def _flock(fd: int) -> bool | None:
    """True if this process now holds ``fd``'s flock, False if another does, None if the file
    system (or platform) has no flock."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP…: e.g. some network file systems
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0).decode(errors="replace")
        info = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def _alive_here(info: dict[str, Any]) -> bool:
    """Whether the lock's process may still run: True unless it is on this host and its pid is gone
    (a lock from another host, or with no readable pid, is assumed live)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h (since 2025-01-01 12:00:00 +0000)``, from a lock file's contents."""
    if not info:
        return "another process (its lock file is empty or unreadable)"
    return (
        f"pid {info.get('pid', '?')} on host {info.get('host', '?')} "
        f"(since {info.get('started', '?')})"
    )


def claim_run_dir(path: str | Path) -> RunLock:
    """A new run directory, locked: ``path`` if it is free, else ``path-2``, ``path-3``…

    "Free" means absent (made here with ``os.mkdir``, which fails if another process made it first)
    or an empty directory (claimed with its lock file, made with ``O_EXCL``). A run never writes into
    another's files, even when several processes start with the same path at once.

    Raises:
        ConfigError: if the directory cannot be created (a file is in the way, no permission).
    """
    base = Path(path)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_create(base, err) from None
    k = 1
    while True:
        candidate = base if k == 1 else base.with_name(f"{base.name}-{k}")
        k += 1
        try:
            os.mkdir(candidate)
        except FileExistsError:
            if not candidate.is_dir() or any(candidate.iterdir()):
                continue
            lock = RunLock._try_create(candidate)  # an empty directory: whoever locks it first
            if lock is None:
                continue
            if any(not p.name.startswith(LOCK_NAME) for p in candidate.iterdir()):
                lock.release()  # someone wrote into it without a lock meanwhile: leave it to them
                continue
            return lock
        except OSError as err:
            raise _cannot_create(candidate, err) from None
        lock = RunLock._try_create(candidate)
        if lock is not None:
            return lock


def _cannot_create(path: Path, err: OSError) -> ConfigError:
    return ConfigError(
        f"train.run_dir: cannot create {str(path)!r} ({err.strerror or err}); expected a "
        "directory path that can be written"
    )


def new_run_dir(path: str | Path) -> Path:
    """``path`` if it is free, else ``path-2``, ``path-3``…: a run never writes into another's files.

    The directory is claimed atomically (see :func:`claim_run_dir`) and stays locked until this
    process exits, so another process cannot claim it while it is still empty. Code that writes into
    a run directory for a while and then hands it on should use :func:`claim_run_dir` and release
    its lock instead.

    Raises:
        ConfigError: if the directory cannot be created (a file is in the way, no permission).
    """
    lock = claim_run_dir(path)
    if not _HELD:
        atexit.register(_release_held)
    _HELD.append(lock)
    return lock.run_dir


_HELD: list[RunLock] = []


def _release_held() -> None:
    while _HELD:
        _HELD.pop().release()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def load_run(
    run_dir: str | Path, checkpoint: str = "last", with_data: bool = True
) -> tuple[Config, ImplicitVAE, Dataset | None]:
    """The config, trained model (eval mode) and data set of a run directory.

    Args:
        run_dir: a directory written by ``implicit-vae train``.
        checkpoint: ``"last"`` or ``"best"`` (by validation loss).
        with_data: also load the run's data set (same split and seed as in training).

    Raises:
        ConfigError: if the directory does not exist.
        CheckpointError: if the checkpoint is missing, unsafe, or does not fit its config.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    if checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint {checkpoint!r} is not known; expected 'last' or 'best'")
    ckpt = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.ckpt")
    cfg = config_from_dict(ckpt["config"])
    data = None
    if with_data:
        data, changed = load_run_data(run_dir, cfg)
        if changed:
            warnings.warn(
                f"the data of run {str(run_dir)!r} changed since it was trained ({changed}); "
                "the numbers below are for the data as they are now",
                stacklevel=2,
            )
    event_shape = data.event_shape if data is not None else _event_shape(ckpt)
    model = build_model(cfg, event_shape)
    mismatch = state_mismatch(model.state_dict(), ckpt["model"])
    if mismatch:
        raise CheckpointError(
            f"checkpoint in {str(run_dir)!r} does not fit the model its config describes ({mismatch})"
        )
    model.load_state_dict(ckpt["model"])
    return cfg, model.eval(), data


def _event_shape(ckpt: dict[str, Any]) -> tuple[int, ...]:
    """The shape of one example: stored in the checkpoint, or (for checkpoints written before it
    was) the flat data dimension read off the MLP decoder's last bias."""
    if isinstance(ckpt.get("event_shape"), list):
        return tuple(int(s) for s in ckpt["event_shape"])
    biases = [
        k for k in ckpt["model"] if k.startswith("likelihood.decoder.") and k.endswith(".bias")
    ]
    return (int(ckpt["model"][sorted(biases, key=lambda k: int(k.split(".")[2]))[-1]].shape[0]),)


def state_mismatch(expected: dict[str, Any], found: dict[str, Any], limit: int = 3) -> str:
    """A short description of how two state dicts differ in keys or shapes ("" if they match)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: {tuple(found[k].shape)} in the file, {tuple(v.shape)} expected"
        for k, v in expected.items()
        if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def read_data_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``data_info.json`` (None for a run written before runs saved it)."""
    path = Path(run_dir) / DATA_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not readable JSON ({err}); expected the file training wrote") from None
    return info if isinstance(info, dict) else None


def data_fingerprint_of(data: Dataset) -> dict[str, dict[str, Any]]:
    """Rows, columns and SHA-256 (:func:`~implicit_vae.evaluation.compare.data_fingerprint`, the
    one ``compare`` pairs evaluations by) of each split."""
    from ..evaluation.compare import data_fingerprint

    out = {}
    for split in SPLITS:
        x = getattr(data, split)
        out[split] = {"rows": int(x.shape[0]), "columns": int(x.shape[1]),
                      "sha256": data_fingerprint(x)}
    return out


def data_info_of(data: Dataset) -> dict[str, Any]:
    """What ``data_info.json`` holds for ``data``, read in the current (training) directory."""
    return {"name": data.name, "binarize": data.binarize, "notes": list(data.notes), **data.info,
            "fingerprint": data_fingerprint_of(data), "working_directory": str(Path.cwd())}


def write_data_info(run_dir: Path, data: Dataset) -> None:
    write_json(run_dir / DATA_INFO, data_info_of(data))


def data_options_for_run(data_cfg: Any, saved: dict[str, Any]) -> Any:
    """``data_cfg`` with each relative data path that the current directory lacks but the
    training directory (``saved["working_directory"]``) holds, made absolute there; otherwise
    ``data_cfg`` itself (so a missing file is still reported as the config names it)."""
    base = saved.get("working_directory")
    if not isinstance(base, str):
        return data_cfg
    moved = {}
    for key in DATA_PATH_KEYS:
        value = getattr(data_cfg, key, None)
        if isinstance(value, str) and value and not Path(value).is_absolute() \
                and not Path(value).exists() and (Path(base) / value).exists():
            moved[key] = str(Path(base) / value)
    return replace(data_cfg, **moved) if moved else data_cfg


def fingerprint_changes(saved: dict[str, Any], data: Dataset) -> str:
    """How ``data`` differ from a saved fingerprint, in words ("" if they are the same)."""
    now = data_fingerprint_of(data)
    parts = []
    for split in SPLITS:
        was, new = saved.get(split), now[split]
        if not isinstance(was, dict) or was.get("sha256") == new["sha256"]:
            continue
        shape = [f"{new[k]} {k}, was {was.get(k)}" for k in ("rows", "columns")
                 if was.get(k) != new[k]]
        parts.append(f"{split} split: {', '.join(shape) if shape else 'same size, other values'}")
    return "; ".join(parts)


def load_run_data(run_dir: Path, cfg: Config) -> tuple[Dataset, str]:
    """The run's data, its saved preprocessing re-applied, and how they changed since ("")."""
    saved = read_data_info(run_dir)
    if saved is None:  # a run from before data_info.json: binarize=auto as it was then resolved
        return load_dataset(cfg.data, cfg.train.seed), ""
    data = load_dataset(data_options_for_run(cfg.data, saved), cfg.train.seed,
                        likelihood=cfg.model.likelihood, info=saved)
    changed = fingerprint_changes(saved.get("fingerprint") or {}, data)
    if changed:
        sources = saved.get("sources") or {}
        where = ", ".join(sorted(set(sources.values()))) or cfg.data.path or cfg.data.name
        changed = f"{where}: {changed}"
    return data, changed
