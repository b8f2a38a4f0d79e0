"""The ``.amat`` text format of binary data: one example a line, its 0/1 values separated by
whitespace, plain or gzip-compressed (detected from the leading bytes, whatever the name says).

The file is read in blocks of whole lines and parsed with numpy from the bytes (``np.loadtxt``
takes about a minute on binarised MNIST's 50,000 training rows): peak memory is one block plus the
uint8 result. Every problem raises :class:`DataError` with one line naming the file (and the line).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import DataError

AMAT_SUFFIXES = (".amat", ".amat.gz")
_BLOCK = 1 << 22  # bytes read at a time (whole lines are parsed together)
_TOKEN = np.ones(256, dtype=bool)  # bytes that are part of a value, i.e. not whitespace
_TOKEN[list(b" \t\r\n\v\f")] = False
_BINARY = np.zeros(256, dtype=bool)
_BINARY[list(b"01")] = True


def is_amat(path: str | Path) -> bool:
    """Whether ``path`` names an .amat file (``.amat`` or ``.amat.gz``, any case)."""
    return str(path).lower().endswith(AMAT_SUFFIXES)


def read_amat(path: str | Path, width: int | None = None, why: str = "") -> np.ndarray:
    """Read a binary .amat file (gzipped or not) into an (N, D) uint8 array of 0/1.

    Args:
        path: the file.
        width: the number of values every row must have; None: as many as the first row.
        why: appended to the wrong-row-length message, e.g. " (28 x 28 pixels)".

    Blank lines are skipped; every other line is one row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    rows, line0, first = [], 0, 0
    for block in _blocks(path):
        values, counts = _parse(block, path, line0)
        filled = np.flatnonzero(counts)
        if width is None and len(filled):
            width, first = int(counts[filled[0]]), line0 + int(filled[0]) + 1
        wrong = filled[counts[filled] != width]
        if len(wrong):
            i = int(wrong[0])
            like = why or (f" like line {first}" if first else "")
            raise DataError(f"{path}: line {line0 + i + 1} has {counts[i]} values; expected "
                            f"{width}{like}")
        if len(filled):
            rows.append(values.reshape(-1, width))
        line0 += len(counts)
    if not rows:
        raise DataError(f"{path}: no data rows; expected lines of 0/1 values separated by spaces")
    return rows[0] if len(rows) == 1 else np.concatenate(rows)


def _blocks(path: Path) -> Iterator[bytes]:
    """The decompressed file in blocks that each end with a line end (one is added at the end)."""
    try:
        raw = path.open("rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    with raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        fh = gzip.GzipFile(fileobj=raw) if gz else raw
        pending: list[bytes] = []
        while True:
            try:
                block = fh.read(_BLOCK)
            except (OSError, EOFError, zlib.error) as err:
                kind = "not a valid gzip file" if gz else "cannot read"
                raise DataError(f"{path}: {kind} ({err}); it may be truncated") from None
            if not block:
                break
            cut = block.rfind(b"\n") + 1
            if not cut:  # no line ends here: keep it for the block that ends the line
                pending.append(block)
                continue
            yield b"".join([*pending, block[:cut]])
            pending = [block[cut:]]
        tail = b"".join(pending)
        if tail.strip():
            yield tail + b"\n"


def _parse(block: bytes, path: Path, line0: int) -> tuple[np.ndarray, np.ndarray]:
    """(the block's values as uint8 0/1, the number of values on each of its lines)."""
    a = np.frombuffer(block, dtype=np.uint8)
    token = _TOKEN[a]
    bad = token & ~_BINARY[a]
    bad[1:] |= token[1:] & token[:-1]  # a value longer than one character
    if bad.any():
        p = int(bad.argmax())
        start = block.rfind(b"\n", 0, p) + 1
        line = block[start:block.find(b"\n", p)].split()
        value = next(v for v in line if v not in (b"0", b"1"))
        text = value[:20].decode("utf-8", "replace") + ("..." if len(value) > 20 else "")
        line_no = line0 + block.count(b"\n", 0, p) + 1
        raise DataError(f"{path}: line {line_no}: value {text!r} is not 0 or 1; expected rows of "
                        "0/1 values separated by spaces")
    ends = np.flatnonzero(a == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1))
    counts = np.add.reduceat(token.view(np.uint8), starts, dtype=np.int64)
    return a[token] - np.uint8(ord("0")), counts
