"""Captions for clips made from videos or keypoint files: a file mapping source names to captions, or one caption.

Formats (the source name is a video's file name, with or without its extension, or a sequence name inside a keypoint
file):

- JSON: an object ``{"name": "caption" | ["caption", ...], ...}``;
- CSV: a header row with columns ``name`` and ``caption`` (or ``video`` and ``text``); a name may appear on several
  rows, one caption each.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import DataError

__all__ = ["read_captions", "match_captions"]

_NAME_COLUMNS = ("name", "video")
_TEXT_COLUMNS = ("caption", "text")


def read_captions(path: Path) -> dict[str, list[str]]:
    """Source name → captions, from a ``.json`` or ``.csv`` file; :class:`DataError` naming the file otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot read the captions file ({err})") from None
    captions: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: captions JSON must be an object mapping names to captions")
        for name, value in data.items():
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
                raise DataError(f"{path}: captions of {name!r} must be a non-empty string or list of strings")
            captions[str(name)] = [v.strip() for v in values]
    elif path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        fields = rows[0].keys() if rows else []
        name_col = next((c for c in _NAME_COLUMNS if c in fields), None)
        text_col = next((c for c in _TEXT_COLUMNS if c in fields), None)
        if name_col is None or text_col is None:
            raise DataError(f"{path}: a captions CSV needs a header with columns name,caption (or video,text); "
                            f"got {list(fields)}")
        for line, row in enumerate(rows, start=2):
            name, caption = (row.get(name_col) or "").strip(), (row.get(text_col) or "").strip()
            if not name or not caption:
                raise DataError(f"{path}: line {line}: empty name or caption")
            captions.setdefault(name, []).append(caption)
    else:
        raise DataError(f"{path}: captions must be a .json or .csv file")
    if not captions:
        raise DataError(f"{path}: no captions in the file")
    return captions


def match_captions(captions: dict[str, list[str]], names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Key captions by source name (a key may carry the file extension) and list the keys naming no source.

    Returns ``(captions by source name, unknown keys)``; the caller reports the unknown keys (they are not an error:
    the other sources are still prepared).
    """
    by_name: dict[str, list[str]] = {}
    unknown = []
    known = set(names)
    for key, values in captions.items():
        name = key if key in known else Path(key).stem if Path(key).stem in known else None
        if name is None:
            unknown.append(key)
        else:
            by_name.setdefault(name, []).extend(values)
    return by_name, unknown
