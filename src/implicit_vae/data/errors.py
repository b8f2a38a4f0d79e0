"""The one exception every data reader and loader raises for bad input."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data input; the message is one line naming the file or what was wrong and what was
    expected."""
