"""The one exception type of the data layer.

Every problem with input data (a malformed BVH line, a clip with mismatched shapes, a dataset folder without its
index) raises :class:`DataError`, or a subclass, with a message that names the file (and the line or clip where that
helps) and says what is wrong. The command-line interface prints the message as ``error: <message>``.
"""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad or missing input data; the message names the file (and line/clip) and the problem."""
