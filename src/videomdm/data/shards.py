"""Preparing one dataset on many machines: shards of the sources, partial indices, and the merge.

A preparation run given ``Shard(i, n)`` processes only the sources at positions ``p`` with ``p mod n = i`` (positions
count the chosen sources in index order, so the parts are disjoint, cover everything, and do not depend on which
machine runs which part). It writes its clips into the dataset folder's ``clips/`` and a partial index
``shards/shard-<i>-of-<n>.json``; ``videomdm prepare merge DATA`` then checks that every part is there exactly once
and writes ``dataset.json`` (the index, with per-split statistics) from them, the same index one unsharded run
writes. The files are written by :class:`videomdm.data.writer.DatasetWriter` (shard mode, then in place for the
merge): clip files already in the folder are never overwritten; a shard whose file names are taken is refused before
anything of it is published.

Layout of a dataset folder while shards are being prepared::

    DATA/
      clips/<split>/*.npz                clips of every finished shard
      shards/shard-00003-of-00016.json   partial index of a finished shard
      .shard-00005-of-00016.tmp/         a shard in progress (replaced when that shard is re-run)
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clip import INDEX_NAME
from .errors import DataError
from .writer import SHARDS_DIR, DatasetWriter

__all__ = ["Shard", "merge_shards"]

_FILE = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count`` disjoint parts of the sources."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a shard is i/n with 0 <= i < n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` → ``Shard(i, n)``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"--shard expects i/n (e.g. 3/16, 0-based), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def selects(self, position: int) -> bool:
        """Whether the source at ``position`` (0-based, over all chosen sources in order) belongs to this shard."""
        return position % self.count == self.index

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"


def _read_partial_indices(out: Path) -> list[dict[str, Any]]:
    folder = out / SHARDS_DIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise DataError(f"{out}: no partial indices in {folder}; run `videomdm prepare ... --shard i/n --out {out}` "
                        f"for every i first")
    records = []
    for file in files:
        if not _FILE.match(file.name):
            raise DataError(f"{file}: unexpected file among the partial indices (expected shard-<i>-of-<n>.json)")
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            index, count = (int(v) for v in record["shard"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{file}: cannot read the partial index: {err}") from None
        record["_file"] = file
        record["_shard"] = (index, count)
        records.append(record)
    return records


def merge_shards(out: Path) -> dict[str, Any]:
    """Write ``out/dataset.json`` from the partial indices of ``Shard(0, n) … Shard(n−1, n)``.

    Refuses (:class:`DataError`, naming the shards) a folder that already holds ``dataset.json``, missing or
    duplicate shards, shards of different ``n``, shards prepared with different settings, and a clip listed twice.
    The clips of each split are listed in source order and the statistics summed, so the index equals the one an
    unsharded preparation writes. The partial indices are removed once the index is written.

    Returns:
        ``{"out", "shards", "clips", "frames", "splits": {split: statistics}}``.
    """
    out = Path(out)
    if (out / INDEX_NAME).exists():
        raise DataError(f"{out}: already holds a merged dataset ({INDEX_NAME})")
    records = _read_partial_indices(out)
    counts = sorted({r["_shard"][1] for r in records})
    if len(counts) > 1:
        raise DataError(f"{out}: partial indices of different shard counts n = {counts}; prepare every shard with the "
                        f"same n")
    count = counts[0]
    seen: dict[int, Path] = {}
    for record in records:
        index = record["_shard"][0]
        if index in seen:
            raise DataError(f"{out}: shard {index}/{count} appears twice ({seen[index]} and {record['_file']})")
        seen[index] = record["_file"]
    missing = [i for i in range(count) if i not in seen]
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"{out}: {len(missing)} of {count} shards are missing ({shown}); prepare them, then merge")
    settings = ("name", "fps", "skeleton", "license", "extra")
    first = records[0]
    for record in records[1:]:
        differ = [key for key in settings if record.get(key) != first.get(key)]
        if differ:
            raise DataError(f"{record['_file']} and {first['_file']} were prepared with different settings "
                            f"({', '.join(differ)}); prepare every shard with the same command")

    splits: dict[str, list[tuple[int, list[str]]]] = {}
    statistics: dict[str, dict[str, int]] = {}
    for record in records:
        for split, entries in record["sources"].items():
            splits.setdefault(split, []).extend((int(position), list(paths)) for position, paths in entries)
        for split, stats in record["statistics"].items():
            total = statistics.setdefault(split, {})
            for key, value in stats.items():
                total[key] = total.get(key, 0) + int(value)
    listed: dict[str, list[str]] = {}
    owner: dict[str, int] = {}
    for split in splits:
        listed[split] = []
        for position, paths in sorted(splits[split]):
            for rel in paths:
                if rel in owner:
                    raise DataError(f"{out}: clip {rel} is listed by two sources (positions {owner[rel]} and "
                                    f"{position}); shards of different preparations are mixed")
                owner[rel] = position
                listed[split].append(rel)
    split_order = [split for split in first["statistics"]]  # the chosen splits, in the order they were prepared
    stats = {split: statistics.get(split, {}) for split in split_order}
    writer = DatasetWriter(out, splits=split_order, in_place=True)
    for split in split_order:
        writer.list_existing(split, listed.get(split, []))
    writer.commit(name=first["name"], fps=first["fps"], skeleton=first["skeleton"], license=first["license"],
                  extra=first["extra"], statistics=stats)
    shutil.rmtree(out / SHARDS_DIR)
    return {"out": str(out), "shards": count, "clips": sum(s.get("clips", 0) for s in stats.values()),
            "frames": sum(s.get("frames", 0) for s in stats.values()), "splits": stats}
