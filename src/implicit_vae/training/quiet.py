"""Lightning's own messages kept off the user's terminal: written to ``RUN_DIR/lightning.log``.

Fabric and its loggers speak through Python warnings (``rank_zero_warn``: PossibleUserWarning about
data-loader workers, deprecations, SLURM hints) and through the ``lightning.*`` loggers
(``rank_zero_info``: "GPU available", tensor-core tips, "Initializing distributed", the DDP banner),
which Lightning gives a handler of its own on standard error. None of that is about the user's
model, so while :func:`lightning_quiet` is active both go to a sink that writes them to
``RUN_DIR/lightning.log`` (kept in memory until the run directory is known; the file appears only
when there is something in it). Warnings raised by this library, or by torch on its behalf, are
shown as before.

A warning counts as Lightning's when its category comes from a Lightning package or when, walking
out from the code that issued it through torch and Lightning frames, a Lightning frame is met before
any other code (so torch's deprecation warnings about Lightning's own calls count, and those about
ours do not).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LIGHTNING_LOGGERS = (
    "lightning",
    "lightning.fabric",
    "lightning.pytorch",
    "lightning_fabric",
    "pytorch_lightning",
    "lightning_utilities",
)
_LIGHTNING_PACKAGES = ("lightning", "lightning_fabric", "pytorch_lightning", "lightning_utilities")
_PASS_THROUGH = ("torch", "warnings.py")  # frames walked through when looking for the caller
_MAX_BUFFERED = 1000


def _package_of(filename: str) -> str | None:
    """The first path component that names a package of interest (``lightning``, ``torch``…)."""
    parts = Path(filename).parts
    for name in (*_LIGHTNING_PACKAGES, *_PASS_THROUGH):
        if name in parts:
            return name
    return None


def issued_by_lightning(category: type[Warning], frame: Any) -> bool:
    """Whether the warning being shown (``frame``: the frame of the code showing it) is Lightning's."""
    if (category.__module__ or "").split(".")[0] in _LIGHTNING_PACKAGES:
        return True
    seen_lightning = False
    while frame is not None:
        package = _package_of(frame.f_code.co_filename)
        if package in _LIGHTNING_PACKAGES:
            seen_lightning = True
        elif package is None and not frame.f_code.co_filename.startswith("<"):
            return seen_lightning  # the first frame of other code: ours, or the user's
        frame = frame.f_back
    return seen_lightning


class LightningSink(logging.Handler):
    """Lightning's log records and warnings, in memory until :meth:`attach` names the file."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.path: Path | None = None
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def attach(self, path: str | Path) -> None:
        """Write what came so far to ``path`` (appending) and everything after it too."""
        self.path = Path(path)
        if self.lines:
            self._append(self.lines)
        self.lines = []

    def write(self, line: str) -> None:
        if self.path is not None:
            self._append([line])
        elif len(self.lines) < _MAX_BUFFERED:
            self.lines.append(line)

    def _append(self, lines: list[str]) -> None:
        try:
            with self.path.open("a") as handle:  # type: ignore[union-attr]
                handle.write("".join(f"{line.rstrip()}\n" for line in lines))
        except OSError:  # a log of Lightning's remarks never stops a run
            pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


@contextlib.contextmanager
def lightning_quiet() -> Iterator[LightningSink]:
    """Route Lightning's warnings and log records to a :class:`LightningSink` while active.

    The ``lightning.*`` loggers get the sink as their only handler (level INFO, not propagating);
    ``warnings.showwarning`` is wrapped so that Lightning's warnings go to the sink and every other
    warning to the hook that was there before (and so to pytest's recorder, or the CLI's one-line
    format). Both are restored on exit.
    """
    sink = LightningSink()
    saved = []
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(sink)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    previous = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issued_by_lightning(category, sys._getframe(1)):
            where = f"{os.path.basename(str(filename))}:{lineno}"
            sink.write(f"WARNING {category.__name__}: {message} ({where})")
            return
        previous(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        yield sink
    finally:
        warnings.showwarning = previous
        for logger, handlers, level, propagate in saved:
            logger.removeHandler(sink)
            for handler in handlers:
                logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
