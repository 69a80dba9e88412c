"""Run folders and checkpoints: atomic writes, safe loads, config checks.

Layout of a run folder::

    RUN/
      config.json              the fully resolved config
      normalizer.safetensors   feature mean/std of the training data
      metrics.jsonl            one JSON object per logged step
      checkpoints/step_0000400/
          model.safetensors    raw weights
          ema.safetensors      EMA weights (used for sampling)
          state.pt             step, optimizer state (loaded with weights_only=True)
          config.json          the config this checkpoint was trained with

Every file is written to a temporary name and renamed into place; a checkpoint folder is assembled under a temporary
name and renamed as a whole, so a crash never leaves a half-written checkpoint under its final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config, ConfigError, config_from_dict, config_to_dict, model_defining_values

__all__ = [
    "CheckpointError",
    "atomic_path",
    "atomic_write_text",
    "save_tensors",
    "load_tensors",
    "read_description",
    "save_config",
    "load_run_config",
    "check_compatible",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "Checkpoint",
]

_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A run folder or checkpoint that cannot be used; the message names the file and the problem."""


def _default_file_mode() -> int:
    """The mode ``open`` gives a new file: 0o666 minus the process umask (read without changing it for good)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write to; renamed to ``path`` (``os.replace``) when the block
    succeeds, removed when it fails, so no reader ever sees half a file and nothing partial keeps the final name.

    The renamed file gets the permissions a plain ``open`` would give, not the owner-only mode of ``mkstemp``.
    ``suffix`` matters to writers that choose a format by extension (``.gif``, ``.mp4``, ``.npy``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write a safetensors file (tensors made contiguous and moved to the CPU)."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def read_description(path: Path, *, format_tag: str, what: str,
                     error: type[Exception] = CheckpointError) -> dict[str, Any]:
    """Read a JSON description file (a lifter's, an evaluator's) whose ``"format"`` field must be ``format_tag``.

    Raises ``error`` naming the file when it is missing, unreadable, not JSON, or of another format.
    """
    path = Path(path)
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: file not found (an unfinished or foreign {what} folder)") from None
    except (OSError, ValueError) as err:
        raise error(f"{path}: not a readable {what} description ({err})") from None
    if not isinstance(description, dict) or description.get("format") != format_tag:
        raise error(f"{path}: not a {what} description (format {format_tag!r} expected)")
    return description


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None


def save_config(path: Path, config: Config) -> None:
    atomic_write_text(path, json.dumps(config_to_dict(config), indent=2) + "\n")


def _read_config(path: Path) -> Config:
    try:
        values = json.loads(Path(path).read_text())
        return config_from_dict(values)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (ValueError, ConfigError) as err:
        raise CheckpointError(f"{path}: not a valid config ({err})") from None


def load_run_config(run_dir: Path) -> Config:
    """The config saved in a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    return _read_config(run_dir / "config.json")


def check_compatible(expected: Config, found: Config, where: str) -> None:
    """Refuse a checkpoint whose model-defining settings differ from ``expected`` (never silently override)."""
    a, b = model_defining_values(expected), model_defining_values(found)
    diffs = [f"{k}: {a[k]!r} vs {b.get(k)!r}" for k in a if a[k] != b.get(k)]
    if diffs:
        raise CheckpointError(f"{where} was trained with other model settings: " + "; ".join(diffs))


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    state: dict[str, Any]
    config: Config
    path: Path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: Path, step: int, config: Config, model: dict[str, torch.Tensor],
                    ema: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``checkpoints/step_XXXXXXX`` atomically and keep only the newest ``keep`` checkpoints."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=folder))
    try:
        save_tensors(tmp / "model.safetensors", model)
        save_tensors(tmp / "ema.safetensors", ema)
        torch.save({**state, "step": step}, tmp / "state.pt")
        save_config(tmp / "config.json", config)
        if final.exists():  # the same step saved again (resume at a save point): replace as a whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint folder; every problem raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint folder not found")
    config = _read_config(path / "config.json")
    model = load_tensors(path / "model.safetensors")
    ema = load_tensors(path / "ema.safetensors")
    state_file = path / "state.pt"
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{state_file}: file not found") from None
    except Exception as err:  # torch raises many types for corrupt pickles/zips
        raise CheckpointError(f"{state_file}: not a readable training state ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{state_file}: training state has no step")
    return Checkpoint(step=int(state["step"]), model=model, ema=ema, state=state, config=config, path=path)
