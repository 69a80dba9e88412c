"""What the two evaluators share: their error type, the device choice, motion lists and batched feature encoding.

A motion is world joints ``(T, J, 3)`` in metres; a batch of them is ``(N, T, J, 3)`` or a list of ``(T_i, J, 3)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..representation import Normalizer, encode
from ..skeleton import Skeleton

__all__ = ["EvaluatorError", "resolve_device", "as_motion_list", "encode_many", "load_state"]


class EvaluatorError(RuntimeError):
    """An evaluator that cannot be trained, loaded or used as asked; the message names the files involved."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else the CPU; any other name as given (``"cpu"``, ``"cuda:0"``)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_motion_list(joints: Any) -> list[np.ndarray]:
    """``(N, T, J, 3)`` array/tensor or a sequence of ``(T_i, J, 3)`` → list of float32 numpy arrays."""
    if isinstance(joints, (np.ndarray, Tensor)):
        array = joints.detach().cpu().numpy() if isinstance(joints, Tensor) else joints
        if array.ndim != 4:
            raise ValueError(f"expected joints (N, T, J, 3) or a list of (T, J, 3), got shape {array.shape}")
        return [np.asarray(m, dtype=np.float32) for m in array]
    out = []
    for m in joints:
        m = m.detach().cpu().numpy() if isinstance(m, Tensor) else np.asarray(m)
        if m.ndim != 3:
            raise ValueError(f"each motion must be (T, J, 3), got shape {m.shape}")
        out.append(m.astype(np.float32))
    return out


def encode_many(motions: Sequence[np.ndarray], skeleton: Skeleton, *, contact_threshold: float,
                 facing_sigma: float, normalizer: Normalizer | None = None, chunk: int = 128) -> list[Tensor]:
    """Encode motions ``(T_i, J, 3)`` one by one (each canonicalized at its own first frame), batching equal lengths.

    Returns ``(T_i, D)`` float32 CPU tensors in input order, normalized when a ``normalizer`` is given.
    """
    out: list[Tensor | None] = [None] * len(motions)
    by_length: dict[int, list[int]] = {}
    for i, m in enumerate(motions):
        by_length.setdefault(int(m.shape[0]), []).append(i)
    kwargs = {"contact_threshold": contact_threshold, "facing_sigma": facing_sigma}
    with torch.no_grad():
        for items in by_length.values():
            for start in range(0, len(items), chunk):
                part = items[start:start + chunk]
                batch = torch.from_numpy(np.stack([motions[i] for i in part])).float()  # (G, T, J, 3)
                features = encode(batch, skeleton, **kwargs)  # (G, T, D)
                if normalizer is not None:
                    features = normalizer.normalize(features)
                for i, f in zip(part, features):
                    out[i] = f
    return out  # type: ignore[return-value]


def load_state(module: nn.Module, state: dict[str, Tensor], where: str) -> None:
    """``module.load_state_dict(state)`` with one :class:`EvaluatorError` naming ``where`` and every bad key."""
    expected = module.state_dict()
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise EvaluatorError(f"{where}: entries that are not tensors {not_tensors[:6]}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} instead of {tuple(expected[k].shape)}" for k in sorted(expected)
             if k in state and state[k].shape != expected[k].shape]
    problems = [f"{what} {items[:6]}{' ...' if len(items) > 6 else ''}" for what, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)) if items]
    if problems:
        raise EvaluatorError(f"{where}: " + "; ".join(problems))
    module.load_state_dict(state)
