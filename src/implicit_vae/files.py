"""Files written whole or not at all.

Every file the package or its benchmarks write (configs, checkpoints, metrics, results, plots) goes
to a temporary file beside its target, is flushed to disk and is then renamed over the target, so
a reader or a killed process never sees half a file. The temporary name is unique per call, so that
two processes writing the same report at once (two benchmark runs sharing a results folder) each
replace it whole instead of one renaming the other's file away.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create or replace ``path`` with what ``write(handle)`` writes to a binary file handle.

    The parent folder is created if needed; the file gets the permissions of an ordinary new file
    (0o666 less the umask). If ``write`` raises, ``path`` is left as it was and the temporary file
    is removed. Temporaries a killed process left behind are named ``.NAME.*.tmp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
