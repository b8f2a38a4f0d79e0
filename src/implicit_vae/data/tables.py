"""Text tables: ``.csv`` (comma-separated) and ``.txt`` (whitespace-separated, as ``np.savetxt``
writes), plain or gzip-compressed (detected from the leading bytes, whatever the name says).

A first row with no numeric cell is a header; a first row with a number in it is data. A column
most of whose cells are not numbers is a text column: it is one-hot encoded, one output column per
category (categories sorted, the same for every split; :func:`table_encoding` finds them and
:func:`encode_table` applies them, so a saved encoding re-applies identically later). A numeric
column with a stray text cell is an error naming the cell. Rows are numbered as a text editor
numbers lines (1-based, the header line counted), and cells in messages are cut to
:data:`CELL_SHOWN` characters.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

CELL_SHOWN = 40  # characters of a cell quoted in a message


def shorten(cell: str, limit: int = CELL_SHOWN) -> str:
    """``cell`` cut to ``limit`` characters, the last one an ellipsis when it was longer."""
    return cell if len(cell) <= limit else cell[: limit - 1] + "…"


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic number."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: not a valid gzip file ({err}); it may be truncated") from None
    if not raw:
        raise DataError(f"{path}: file is empty")
    return raw


@dataclass
class TextTable:
    """A table's cells as text: ``rows[i]`` is on line ``lines[i]`` of ``path``."""

    path: Path
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]

    @property
    def width(self) -> int:
        return len(self.rows[0])

    def name(self, j: int) -> str:
        """Column ``j``'s name (0-based): its header, else ``column <j+1>``."""
        if self.header is not None and j < len(self.header) and self.header[j].strip():
            return self.header[j].strip()
        return f"column {j + 1}"


def read_table(path: Path) -> TextTable:
    """Read a .csv or .txt table (gzipped or not); every row must have the first row's width."""
    try:
        text = read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a readable text file ({err})") from None
    base = path.name.lower().removesuffix(".gz")
    rows, lines = [], []
    if base.endswith(".csv"):
        reader = csv.reader(io.StringIO(text, newline=""))
        start = 1
        try:
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append([c.strip() for c in row])
                    lines.append(start)
                start = reader.line_num + 1
        except csv.Error as err:
            raise DataError(f"{path}: line {reader.line_num}: not readable CSV ({err})") from None
    else:  # whitespace-separated (commas also allowed)
        for i, line in enumerate(text.splitlines(), 1):
            cells = line.replace(",", " ").split()
            if cells:
                rows.append(cells)
                lines.append(i)
    header = None
    if rows and not any(is_number(c) for c in rows[0]):
        header, rows, lines = rows[0], rows[1:], lines[1:]
    if not rows:
        raise DataError(f"{path}: no data rows; expected numeric rows")
    width = len(rows[0])
    for line, row in zip(lines, rows):
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} columns; expected {width}")
    if header is not None and len(header) != width:
        header = None  # a title line rather than column names
    return TextTable(path, header, rows, lines)


def _is_text_column(cells: list[str]) -> bool:
    """Most non-empty cells are not numbers (a numeric column's stray word is an error instead)."""
    filled = [c for c in cells if c]
    words = sum(not is_number(c) for c in filled)
    return 2 * words > len(filled)


def table_encoding(tables: list[TextTable]) -> dict[str, Any]:
    """The encoding of tables of one layout: per column its name and, for a text column, its sorted
    categories (from every table given, so every split shares them). JSON-ready."""
    first = tables[0]
    for t in tables[1:]:
        if t.width != first.width:
            raise DataError(f"{t.path}: {t.width} columns, but {first.path} has {first.width}; "
                            "expected the same columns in every split")
    columns = []
    for j in range(first.width):
        cells = [r[j] for t in tables for r in t.rows]
        column: dict[str, Any] = {"name": first.name(j)}
        if _is_text_column(cells):
            column["categories"] = sorted(set(cells))
        columns.append(column)
    return {"columns": columns}


def encoded_names(encoding: dict[str, Any]) -> tuple[list[str], list[bool]]:
    """The output column names (``color=red`` for a one-hot column) and which are one-hot."""
    names, one_hot = [], []
    for column in encoding["columns"]:
        if "categories" in column:
            names += [f"{column['name']}={c}" for c in column["categories"]]
            one_hot += [True] * len(column["categories"])
        else:
            names.append(column["name"])
            one_hot.append(False)
    return names, one_hot


def encode_table(table: TextTable, encoding: dict[str, Any]) -> np.ndarray:
    """The table as an (N, D) float64 array: numeric columns parsed, text columns one-hot."""
    columns = encoding["columns"]
    if table.width != len(columns):
        raise DataError(f"{table.path}: {table.width} columns, but the data the run was made "
                        f"with had {len(columns)}; expected the same columns")
    parts = []
    for j, column in enumerate(columns):
        cells = [r[j] for r in table.rows]
        cats = column.get("categories")
        if cats is None:
            values = np.empty(len(cells))
            for i, cell in enumerate(cells):
                try:
                    values[i] = float(cell)
                except ValueError:
                    what = repr(shorten(cell)) if cell else "an empty cell"
                    raise DataError(
                        f"{table.path}: row {table.lines[i]}, column {j + 1}: {what} is not a "
                        f"number; column {column['name']!r} holds numbers (a column of mostly "
                        "text would be one-hot encoded)"
                    ) from None
            parts.append(values[:, None])
        else:
            index = {c: k for k, c in enumerate(cats)}
            hot = np.zeros((len(cells), len(cats)))
            for i, cell in enumerate(cells):
                if cell not in index:
                    shown = ", ".join(repr(shorten(c)) for c in cats[:5])
                    more = f" and {len(cats) - 5} more" if len(cats) > 5 else ""
                    raise DataError(
                        f"{table.path}: row {table.lines[i]}, column {j + 1}: {shorten(cell)!r} "
                        f"is not one of the categories of {column['name']!r} the run was made "
                        f"with ({shown}{more})"
                    )
                hot[i, index[cell]] = 1.0
            parts.append(hot)
    return np.concatenate(parts, axis=1)
