"""Progress of long loops: a tqdm bar on a terminal, plain lines where the output is a file or pipe.

A log file or CI console that receives tqdm's redraws gets one line of ``\\r``-separated frames that
nobody can read; there each update that is due is written as a line of its own instead, e.g.
``train step 500/3000  loss 103.2  val_loss 104.1  2.3 step/s  eta 0:14:30``. Which of the two is
chosen by whether the stream (standard error by default) is a terminal.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, captured output)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def format_value(value: float) -> str:
    """Four significant digits (``101.2``, ``0.5123``, ``1.235e+04``)."""
    return f"{value:.4g}"


class Progress:
    """Counts ``initial … total``; shows a tqdm bar on a terminal, else writes plain lines.

    Plain lines are written when the count passes each of ``lines`` evenly spaced marks (and at
    least ``min_interval`` seconds passed since the last line), when
    :meth:`update_to` is called with ``line=True`` (e.g. after a validation) and at :meth:`close`
    if the last count was not written yet; never a ``\\r``.

    Args:
        total: the count at which the loop is done.
        desc: what is counted (the bar's label and the start of each line).
        initial: the count it starts from (a resumed run).
        enabled: False shows nothing.
        stream: where to write (default: ``sys.stderr`` at construction).
        lines: about how many evenly spaced plain lines a whole run writes.
        unit: the name of one count (``step``): lines read ``DESC UNIT n/total``.
        terminal: force the bar (True) or plain lines (False); default: ask ``stream``.
        min_interval: seconds between two plain lines at marks (0: every mark), so that a short
            loop writes one line at its end rather than ``lines`` lines.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        lines: int = 10,
        unit: str = "",
        terminal: bool | None = None,
        min_interval: float = 0.0,
    ):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self._start_n = self._written = int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.postfix: dict[str, float] = {}
        self._every = max(1, math.ceil(max(1, self.total - self.n) / max(1, lines)))
        self._next = (self.n // self._every + 1) * self._every
        self._start = self._last_line = time.perf_counter()
        self.min_interval = float(min_interval)
        self._bar = None
        if self.enabled and self.terminal:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total, initial=self.n, desc=desc, file=self.stream, leave=True,
                unit=unit or "it", dynamic_ncols=True,
            )  # fmt: skip

    def set_postfix(self, **values: float | None) -> None:
        """Values shown beside the count (None removes one); shown at the next update."""
        for key, value in values.items():
            if value is None:
                self.postfix.pop(key, None)
            else:
                self.postfix[key] = float(value)
        if self._bar is not None:
            shown = {k: format_value(v) for k, v in self.postfix.items()}
            self._bar.set_postfix(shown, refresh=False)

    def update(self, k: int = 1) -> None:
        self.update_to(self.n + k)

    def update_to(self, n: int, line: bool = False) -> None:
        """Set the count to ``n``; in plain mode write a line if a mark was passed (or ``line``)."""
        self.n = int(n)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self.n - self._bar.n)
            return
        if line or self.n >= self.total:
            self._write_line()
        elif self.n >= self._next:
            self._next = (self.n // self._every + 1) * self._every
            if time.perf_counter() - self._last_line >= self.min_interval:
                self._write_line()

    def line(self) -> str:
        """The plain line for the current count and postfix."""
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{self.desc}{unit} {self.n}/{self.total}"]
        parts += [f"{k} {format_value(v)}" for k, v in self.postfix.items()]
        elapsed = time.perf_counter() - self._start
        done = self.n - self._start_n
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{rate:.3g} {self.unit or 'it'}/s")
            if self.n < self.total:
                parts.append(f"eta {_clock((self.total - self.n) / rate)}")
            else:
                parts.append(f"took {_clock(elapsed)}")
        return "  ".join(parts)

    def _write_line(self) -> None:
        if self._written == self.n and self.n != self._start_n:
            return  # this count is on a line already
        self._written = self.n
        self._last_line = time.perf_counter()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.n != self._written:
            self._write_line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
