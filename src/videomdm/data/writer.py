"""The one dataset writer: every command that makes a dataset folder (:mod:`videomdm.data.clip`) writes through it.

``add(split, clip)`` saves ``clips/<split>/<file name>.npz``, refusing a second clip with the same file name in a split
(file names come from clip names, :func:`clip_file_name`), and counts frames; ``commit(...)`` writes ``dataset.json``
last. Splits are declared up front and listed in the index in that order (an empty split is listed empty); clips are
listed in the order they were added. Use it as a context manager: a block that fails before ``commit`` leaves the
destination as it was.

Modes (one per constructor argument, exclusive):

- **new** (default): the clips go into a temporary folder next to the destination (``.<name>.tmp-*``);
  ``commit`` writes the index there and swaps the folder in: renamed to the destination when there is none, else
  only the entries the writer owns (``dataset.json``, ``clips/`` and the ``owns`` files) are exchanged, index out
  first and in last; other files in the destination are kept. A destination holding a dataset (``dataset.json`` or
  ``clips/``) is refused, naming the folder, unless ``replace=True``; the old entries are deleted only after the new
  ones are in place.
- **shard** (``shard=Shard(i, n)``, :mod:`videomdm.data.shards`): the clips go into ``DATA/.shard-<i>-of-<n>.tmp/``;
  ``commit`` checks that none of their paths exists in ``DATA/clips``, hard-links them there (a link never replaces a
  file) and writes the partial index ``DATA/shards/shard-<i>-of-<n>.json``. Every clip is added with the position of
  its source, so that ``merge_shards`` lists the clips of all shards in source order.
- **in place** (``in_place=True``, or ``resume=settings``): the destination is the work folder. Clips already there
  are listed with :meth:`DatasetWriter.list_existing`; new ones are saved one file at a time (atomically), never over a
  clip the destination's current index lists; ``commit`` replaces the index last. With ``resume`` the writer keeps
  ``progress/``: ``settings`` must equal those of the run that started the folder (``progress/.settings.json``), and
  each finished source leaves ``progress/<source>.json`` (its clips and frames), so a later run lists those clips
  again (:meth:`DatasetWriter.start_source`) instead of preparing the source again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..checkpoint import atomic_write_text
from .clip import INDEX_NAME, Clip, atomic_write_bytes, read_dataset_index, save_clip, write_dataset_index
from .errors import DataError

if TYPE_CHECKING:
    from .shards import Shard

__all__ = ["DatasetWriter", "check_destination", "clip_file_name", "CLIPS_DIR", "PROGRESS_DIR", "SHARDS_DIR"]

CLIPS_DIR = "clips"
PROGRESS_DIR = "progress"
SHARDS_DIR = "shards"
_SETTINGS = ".settings.json"
_SPLIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def clip_file_name(name: str) -> str:
    """A clip or source name made safe as a file name (characters other than letters, digits, ``._-`` become ``_``;
    a name of dots only gets a leading ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return safe if safe.strip(".") else "_" + safe


def check_destination(out: str | Path, *, replace: bool = False) -> None:
    """Refuse a destination that is not a folder, or that holds a dataset (``dataset.json`` or ``clips/``) unless
    ``replace``. Changes nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    index, clips = out / INDEX_NAME, out / CLIPS_DIR
    if not replace and (index.exists() or clips.exists()):
        held = f"a dataset ({INDEX_NAME})" if index.exists() else f"{CLIPS_DIR}/ from an unfinished build"
        raise DataError(f"{out}: already holds {held}; choose another folder or pass overwrite (--overwrite) to "
                        f"replace it")


class DatasetWriter:
    """Writes one dataset folder (module docstring).

    Args:
        out: the destination folder.
        splits: the index's splits, in order; ``add`` refuses others.
        replace: (new mode) replace a dataset already in ``out``.
        owns: (new mode) names of files besides ``dataset.json`` and ``clips/`` that this kind of dataset keeps in
            its folder (written with :meth:`write_file`); replacing a dataset replaces or removes them too.
        shard: shard mode, for this part of the sources.
        in_place: write into ``out`` itself (e.g. to index clips already there).
        resume: in-place mode with progress records; the run's settings (JSON-compatible), which must equal those of
            the run that started the folder.

    Attributes:
        num_clips, frames: split → number of clips added by this writer, and their frames.
    """

    def __init__(self, out: str | Path, *, splits: Sequence[str], replace: bool = False, owns: Sequence[str] = (),
                 shard: Shard | None = None, in_place: bool = False, resume: dict[str, Any] | None = None) -> None:
        if replace + (shard is not None) + (in_place or resume is not None) > 1:
            raise ValueError("replace, shard and in_place/resume are different modes; give one")
        for split in splits:
            if not _SPLIT.fullmatch(split):
                raise DataError(f"{out}: split name {split!r} is not a plain folder name (letters, digits, ._-)")
        self.out = Path(out)
        self.num_clips = {split: 0 for split in splits}
        self.frames = {split: 0 for split in splits}
        self._listed: dict[str, list[str]] = {split: [] for split in splits}
        self._files: dict[str, dict[str, str]] = {split: {} for split in splits}  # split → file name → clip name
        self._owns = (CLIPS_DIR, *owns)
        self._shard = shard
        self._sources: dict[str, list[tuple[int, list[str]]]] = {split: [] for split in splits}  # shard mode
        self._resume = resume is not None
        self._source: str | None = None  # resume mode: the source being prepared
        self._pending: list[tuple[str, str, int]] = []  # resume mode: its (split, path, frames)
        self._protected: set[str] = set()
        self._committed = False
        if shard is not None:
            self._check_shard_folder()
            self.work = self.out / f".{shard.name}.tmp"
            if self.work.exists():  # a leftover of an interrupted run of the same shard
                shutil.rmtree(self.work)
            self.work.mkdir(parents=True)
        elif in_place or resume is not None:
            self.work = self.out
            if resume is not None:
                self._check_settings(resume)
            elif (self.out / INDEX_NAME).exists():
                raise DataError(f"{self.out}: already holds a dataset ({INDEX_NAME})")
            self._protected = self._listed_by_index()
        else:
            check_destination(self.out, replace=replace)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.work = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))

    def _listed_by_index(self) -> set[str]:
        """The clip paths the destination's current index lists (never written over in place)."""
        path = self.out / INDEX_NAME
        if not path.is_file():
            return set()
        try:
            splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
            return {str(rel) for rels in splits.values() for rel in rels}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise DataError(f"{path}: cannot read the dataset index: {err}") from None

    # --- adding clips ------------------------------------------------------------------------------------------------

    def add(self, split: str, clip: Clip, *, position: int | None = None) -> str:
        """Save ``clip`` (validated) as ``clips/<split>/<clip_file_name(clip.name)>.npz`` and return that path
        (relative to the dataset folder). ``position``: the index of the clip's source among all sources, required
        in shard mode. Raises DataError for an empty name, a file name already used in ``split``, or (in place) a
        clip the destination's index lists."""
        if split not in self._listed:
            raise ValueError(f"split {split!r} was not declared; the writer has {list(self._listed)}")
        if not clip.name.strip():
            raise DataError(f"{self.out}: a clip of split {split} has an empty name")
        file = f"{clip_file_name(clip.name)}.npz"
        if file in self._files[split]:
            raise DataError(f"{self.out}: clips {self._files[split][file]!r} and {clip.name!r} of split {split} "
                            f"would both be saved as {file}")
        rel = f"{CLIPS_DIR}/{split}/{file}"
        if rel in self._protected:
            raise DataError(f"{self.out / rel}: is listed in the dataset's {INDEX_NAME}; it is not overwritten")
        if self._shard is not None and position is None:
            raise ValueError("a shard writer needs the source position of every clip")
        save_clip(self.work / rel, clip)
        self._files[split][file] = clip.name
        self.num_clips[split] += 1
        self.frames[split] += clip.num_frames
        if self._shard is not None:
            entries = self._sources[split]
            if not entries or entries[-1][0] != position:
                entries.append((int(position), []))
            entries[-1][1].append(rel)
        elif self._resume:
            self._pending.append((split, rel, clip.num_frames))
        else:
            self._listed[split].append(rel)
        return rel

    def list_existing(self, split: str, rels: Sequence[str]) -> None:
        """(In place) list clips already in the destination, in order; DataError for a missing file."""
        if self.work != self.out:
            raise ValueError("list_existing is for in-place writers")
        missing = [rel for rel in rels if not (self.out / rel).is_file()]
        if missing:
            raise DataError(f"{self.out}: clip files {missing[:3]} to be listed do not exist")
        self._listed[split].extend(rels)

    def write_file(self, name: str, write: Callable[[Any], None]) -> None:
        """(New mode) write the file ``name`` (one of ``owns``) next to the index: ``write(binary file)``."""
        if name not in self._owns[1:]:
            raise ValueError(f"{name!r} is not among the files this writer owns {self._owns[1:]}")
        atomic_write_bytes(self.work / name, write)

    # --- resumable preparation ---------------------------------------------------------------------------------------

    def start_source(self, name: str) -> dict[str, Any] | None:
        """(Resume) begin source ``name``. Returns its record when an earlier run finished it (``{"clips", "frames",
        ...}``; its clips are listed in this index), else None: the clips added until :meth:`finish_source` are
        this source's (those of a source started before and never finished are left unlisted)."""
        if not self._resume:
            raise ValueError("start_source is for resuming writers (resume=settings)")
        self._drop_pending()
        self._source = name
        record = self._read_record(name)
        if record is not None:
            for rel in record["clips"]:
                split = Path(rel).parent.name
                self._listed[split].append(rel)
                self._files[split][Path(rel).name] = rel
        return record

    def finish_source(self, info: dict[str, Any]) -> dict[str, Any]:
        """(Resume) the source being prepared is done: list its clips and write its record
        ``progress/<source>.json`` = ``{**info, "clips": [...], "frames": n}``, which is returned."""
        if self._source is None:
            raise ValueError("finish_source without start_source")
        record = {**info, "clips": [rel for _, rel, _ in self._pending],
                  "frames": sum(frames for _, _, frames in self._pending)}
        atomic_write_text(self._record_path(self._source), json.dumps(record, indent=2, default=str))
        for split, rel, _ in self._pending:
            self._listed[split].append(rel)
        self._source, self._pending = None, []
        return record

    def _drop_pending(self) -> None:
        """Forget the clips of a source that was started and not finished (their files stay, unlisted)."""
        for split, rel, _ in self._pending:
            del self._files[split][Path(rel).name]
        self._source, self._pending = None, []

    @property
    def progress_dir(self) -> Path:
        """(Resume) the folder of the progress records, where a caller may keep its own resume state too."""
        return self.out / PROGRESS_DIR

    def _record_path(self, name: str) -> Path:
        return self.progress_dir / f"{clip_file_name(name)}.json"

    def _read_record(self, name: str) -> dict[str, Any] | None:
        """The record of a finished source, or None when there is none, it is unreadable, or a clip is gone."""
        path = self._record_path(name)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("clips"), list):
            return None
        if not all(isinstance(rel, str) and Path(rel).parent.name in self._listed and (self.out / rel).is_file()
                   for rel in record["clips"]):
            return None
        return record

    def _check_settings(self, settings: dict[str, Any]) -> None:
        if (self.out / INDEX_NAME).exists() and not self.progress_dir.is_dir():
            raise DataError(f"{self.out}: already holds a dataset not made by this command; choose another folder")
        path = self.progress_dir / _SETTINGS
        if path.is_file() and json.loads(path.read_text()) != settings:
            raise DataError(f"{self.out}: was prepared with other settings ({path.read_text().strip()}); resume with "
                            f"the same ones or choose another folder")
        atomic_write_text(path, json.dumps(settings))

    # --- committing --------------------------------------------------------------------------------------------------

    def commit(self, *, name: str, fps: float, skeleton: str, license: str | None, extra: dict[str, Any],
               statistics: dict[str, dict[str, int]] | None = None) -> Path:
        """Write the index (shard mode: the partial index) last and put the dataset in place; returns the index path.

        ``statistics`` (split → counts) is stored as ``extra["statistics"]``; shards keep theirs apart, to be summed
        by the merge. (Resume) the clips of a source started and not finished are not listed.
        """
        self._drop_pending()
        if self._shard is not None:
            path = self._publish_shard({"name": name, "fps": fps, "skeleton": skeleton, "license": license,
                                        "extra": extra, "statistics": statistics})
        else:
            path = write_dataset_index(self.work, name=name, fps=fps, skeleton=skeleton, splits=self._listed,
                                       license=license,
                                       extra=extra if statistics is None else {**extra, "statistics": statistics})
            if self.work == self.out:
                read_dataset_index(self.out)  # every listed clip exists
            else:
                self._swap_in()
                path = self.out / INDEX_NAME
        self._committed = True
        return path

    def _swap_in(self) -> None:
        """Move the finished dataset from the work folder to the destination (module docstring, new mode). On
        failure the destination is restored and the new dataset stays in the work folder."""
        out, work = self.out, self.work
        if not out.exists():
            os.replace(work, out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        moved: list[str] = []
        placed: list[str] = []
        try:
            for entry in (INDEX_NAME, *self._owns):  # index first: the destination is 'unfinished' from here on
                if (out / entry).exists():
                    os.replace(out / entry, old / entry)
                    moved.append(entry)
            for entry in (*self._owns, INDEX_NAME):  # index last
                if (work / entry).exists():
                    os.replace(work / entry, out / entry)
                    placed.append(entry)
        except BaseException:
            for entry in reversed(placed):
                os.replace(out / entry, work / entry)
            for entry in reversed(moved):
                os.replace(old / entry, out / entry)
            old.rmdir()
            raise
        shutil.rmtree(old)
        shutil.rmtree(work)

    def _check_shard_folder(self) -> None:
        """Refuse a shard run into a folder that holds a merged dataset or this shard's partial index."""
        check_destination(self.out, replace=True)
        shard = self._shard
        if (self.out / INDEX_NAME).exists():
            raise DataError(f"{self.out}: already holds a dataset ({INDEX_NAME}); shards are prepared into a folder "
                            f"that is merged only after every shard is done")
        done = self.out / SHARDS_DIR / f"{shard.name}.json"
        if done.exists():
            raise DataError(f"{self.out}: shard {shard.index}/{shard.count} is already done ({done}); delete that "
                            f"file and the clips it lists to prepare it again")

    def _publish_shard(self, meta: dict[str, Any]) -> Path:
        """Hard-link the shard's clips into ``out/clips`` (every destination checked first; a link never replaces a
        file) and write its partial index. On failure the links made are removed and the work folder is kept."""
        out, shard = self.out, self._shard
        rels = [rel for entries in self._sources.values() for _, paths in entries for rel in paths]
        taken = [rel for rel in rels if (out / rel).exists()]
        if taken:
            shown = ", ".join(taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
            raise DataError(f"{out}: shard {shard.index}/{shard.count} would overwrite existing clip files ({shown}); "
                            f"they come from another shard with the same clip names or an earlier preparation; "
                            f"nothing of this shard was published (its files are in {self.work})")
        placed: list[Path] = []
        try:
            for rel in rels:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.work / rel, out / rel)
                except FileExistsError:
                    raise DataError(f"{out / rel}: written by another run meanwhile; shard {shard.index}/"
                                    f"{shard.count} is not published") from None
                placed.append(out / rel)
            record = {"shard": [shard.index, shard.count], **meta,
                      "sources": {split: [[position, paths] for position, paths in entries]
                                  for split, entries in self._sources.items()}}
            path = out / SHARDS_DIR / f"{shard.name}.json"
            atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")
        except BaseException:
            for file in placed:
                file.unlink(missing_ok=True)
            raise
        shutil.rmtree(self.work)
        return path

    # --- context manager ---------------------------------------------------------------------------------------------

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        """Without a commit, a new dataset's temporary folder is removed (a shard's is kept for inspection and
        replaced by the next run of that shard; an in-place writer leaves its files, which no index lists)."""
        if not self._committed and self._shard is None and self.work != self.out:
            shutil.rmtree(self.work, ignore_errors=True)
