"""Tests for videomdm.evaluator: the project's contrastive evaluator and the HumanML3D (Guo et al.) evaluator loader."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_motion_dataset
from synthetic import walk
from videomdm.data.clip import load_clip, save_clip
from videomdm.evaluator import (
    META_NAME,
    WEIGHTS_NAME,
    EvaluatorConfig,
    EvaluatorError,
    MotionEncoder,
    dataset_identity,
    jitter_joints,
    load_evaluator,
    load_guo_evaluator,
    reverse_joints,
    sanity_table,
    slide_joints,
    train_evaluator,
)
from videomdm.metrics import fid

TINY = EvaluatorConfig(steps=8, batch_size=4, hidden=16, embed_dim=16, num_blocks=2, pool_size=24, min_frames=16,
                       max_frames=48, refresh_every=4, text_encoder="none")


class HashTextEncoder:
    """A deterministic stand-in for a sentence encoder: each caption → a fixed random unit vector (8-d)."""

    dim = 8

    def encode(self, captions: list[str]) -> torch.Tensor:
        rows = []
        for caption in captions:
            seed = int.from_bytes(hashlib.sha256(caption.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return torch.tensor(np.array(rows), dtype=torch.float32).reshape(len(captions), self.dim)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one intra-op thread is faster than a pool (and far faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_motion_dataset(tmp_path_factory.mktemp("evaluator") / "data")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    """An evaluator trained a little longer than TINY (used for the embedding-property tests)."""
    out = tmp_path_factory.mktemp("evaluator") / "ev"
    return train_evaluator(dataset, out, config=replace(TINY, steps=40, lr=3e-3), device="cpu", progress=False)


def motions(count: int = 4, frames: int = 40, seed: int = 100) -> list[np.ndarray]:
    return [walk(frames, seed=seed + i) for i in range(count)]


# --- training, saving, loading ---------------------------------------------------------------------------------------


def test_training_is_deterministic(dataset, tmp_path):
    a = train_evaluator(dataset, tmp_path / "a", config=TINY, device="cpu", progress=False)
    b = train_evaluator(dataset, tmp_path / "b", config=TINY, device="cpu", progress=False)
    c = train_evaluator(dataset, tmp_path / "c", config=replace(TINY, seed=1), device="cpu", progress=False)
    wa, wb, wc = (load_file(str(p / WEIGHTS_NAME)) for p in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / META_NAME).is_file()


def test_saved_evaluator_embeds_identically(trained, tmp_path):
    evaluator = load_evaluator(trained, device="cpu")
    batch = motions()
    z = evaluator.embed_joints(batch, fps=20.0)
    assert z.shape == (4, TINY.embed_dim) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    copy = load_evaluator(evaluator.save(tmp_path / "copy"), device="cpu")
    np.testing.assert_array_equal(copy.embed_joints(batch, fps=20.0), z)
    np.testing.assert_array_equal(evaluator.embed_joints(np.stack(batch), fps=20.0), z)  # (N, T, J, 3) input


def test_variable_lengths_do_not_depend_on_padding(trained):
    evaluator = load_evaluator(trained, device="cpu")
    batch = [walk(n, seed=7 + n) for n in (23, 40, 57)]
    together = evaluator.embed_joints(batch, fps=20.0)
    alone = np.concatenate([evaluator.embed_joints([m], fps=20.0) for m in batch])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_other_fps_is_resampled(trained):
    evaluator = load_evaluator(trained, device="cpu")
    motion = walk(80, fps=40.0, seed=3)
    z40 = evaluator.embed_joints([motion], fps=40.0)
    z20 = evaluator.embed_joints([motion[::2]], fps=20.0)
    np.testing.assert_allclose(z40, z20, atol=1e-5)


def test_masked_features_match_list_input(trained):
    evaluator = load_evaluator(trained, device="cpu")
    from videomdm.representation import encode

    feats = [encode(torch.from_numpy(m), evaluator.skeleton) for m in (walk(30, seed=1), walk(44, seed=2))]
    padded = torch.zeros(2, 44, feats[0].shape[1])
    mask = torch.zeros(2, 44, dtype=torch.bool)
    for i, f in enumerate(feats):
        padded[i, :len(f)], mask[i, :len(f)] = f, True
    np.testing.assert_allclose(evaluator.embed_features(padded, mask), evaluator.embed_features(feats), atol=1e-6)


def test_existing_evaluator_is_not_overwritten(trained, dataset):
    before = (trained / WEIGHTS_NAME).read_bytes()
    with pytest.raises(EvaluatorError, match="already holds an evaluator"):
        train_evaluator(dataset, trained, config=TINY, device="cpu", progress=False)
    assert (trained / WEIGHTS_NAME).read_bytes() == before


def test_overwrite_replaces(dataset, tmp_path):
    out = train_evaluator(dataset, tmp_path / "ev", config=TINY, device="cpu", progress=False)
    train_evaluator(dataset, out, config=replace(TINY, seed=3), device="cpu", progress=False, overwrite=True)
    assert load_evaluator(out, device="cpu").config.seed == 3


# --- dataset identity ------------------------------------------------------------------------------------------------


def test_accepts_its_dataset_and_an_identical_rebuild(trained, dataset, tmp_path):
    load_evaluator(trained, dataset_dir=dataset, device="cpu")  # no error
    rebuilt = make_motion_dataset(tmp_path / "rebuilt")  # same clips, new files (other timestamps, other folder)
    assert dataset_identity(rebuilt)["fingerprint"] == dataset_identity(dataset)["fingerprint"]
    load_evaluator(trained, device="cpu").check_dataset(rebuilt)


def test_refuses_another_dataset(trained, tmp_path):
    other = make_motion_dataset(tmp_path / "other", num_train=5)
    with pytest.raises(EvaluatorError) as info:
        load_evaluator(trained, dataset_dir=other, device="cpu")
    message = str(info.value)
    assert str(trained / META_NAME) in message and str(other / "dataset.json") in message
    assert "clips/train/walk_05.npz" in message  # names the clip it lacks


def test_refuses_a_changed_clip(trained, tmp_path):
    other = make_motion_dataset(tmp_path / "changed")
    path = other / "clips/train/walk_02.npz"
    clip = load_clip(path)
    clip.gt_3d = clip.gt_3d + np.float32(0.01)
    save_clip(path, clip)
    with pytest.raises(EvaluatorError, match=r"changed: clips/train/walk_02\.npz"):
        load_evaluator(trained, device="cpu").check_dataset(other)


def test_corrupt_weights_name_the_file(dataset, tmp_path):
    out = train_evaluator(dataset, tmp_path / "ev", config=TINY, device="cpu", progress=False)
    weights = out / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(EvaluatorError, match=str(weights)):
        load_evaluator(out, device="cpu")
    weights.unlink()
    with pytest.raises(EvaluatorError, match=str(weights)):
        load_evaluator(out, device="cpu")
    (out / META_NAME).write_text("{not json")
    with pytest.raises(EvaluatorError, match=str(out / META_NAME)):
        load_evaluator(out, device="cpu")


# --- what the embedding measures -------------------------------------------------------------------------------------


def test_jitter_moves_embeddings_away(trained):
    evaluator = load_evaluator(trained, device="cpu")
    clean = motions(count=8, frames=48, seed=200)
    rng = np.random.default_rng(0)
    z = evaluator.embed_joints(clean, fps=20.0)
    z_jit = evaluator.embed_joints([jitter_joints(m, 0.05, rng) for m in clean], fps=20.0)
    moved = np.linalg.norm(z_jit - z, axis=1).mean()  # each motion vs its own jittered copy
    spread = np.linalg.norm(z[:, None] - z[None], axis=-1)[np.triu_indices(len(z), 1)].mean()  # clean vs clean
    print(f"jittered vs own clean {moved:.3f}, clean vs clean {spread:.3f}, FID jittered vs clean "
          f"{fid(z_jit, z):.3f}, clean half vs half {fid(z[::2], z[1::2]):.3f}")
    assert moved > 1.2 * spread
    assert fid(z_jit, z) > 2.0 * fid(z[::2], z[1::2])


def test_sanity_table_runs(trained, dataset):
    table = sanity_table(load_evaluator(trained, device="cpu"), dataset, window_seconds=1.5, stride_seconds=1.0)
    assert set(table["fid"]) == {"clean", "jitter 2 cm", "jitter 5 cm", "reversed", "sliding 0.5 m/s"}
    assert all(np.isfinite(v) and v >= -1e-6 for v in table["fid"].values())
    assert table["num_eval"] >= 2 and table["window_frames"] == 30


def test_degradations():
    rng = np.random.default_rng(0)
    m = walk(30)
    assert np.std(jitter_joints(m, 0.02, rng) - m) == pytest.approx(0.02, rel=0.1)
    slid = slide_joints(m, 20.0, 0.5, rng)
    step = slid[1:] - m[1:] - (slid[:-1] - m[:-1])  # extra displacement per frame
    np.testing.assert_allclose(np.linalg.norm(step, axis=-1), 0.5 / 20.0, rtol=1e-4)
    assert np.all(step[..., 1] == 0)
    np.testing.assert_array_equal(reverse_joints(m)[0], m[-1])


def test_encoder_shapes_and_mask():
    encoder = MotionEncoder(263, 16, 8, 2, 5)
    x = torch.randn(3, 21, 263)
    mask = torch.ones(3, 21, dtype=torch.bool)
    mask[1, 9:] = False
    z = encoder(x, mask)
    assert z.shape == (3, 8)
    x2 = x.clone()
    x2[1, 9:] = 100.0  # padded frames are ignored
    torch.testing.assert_close(encoder(x2, mask), z)


# --- text head -------------------------------------------------------------------------------------------------------


def test_text_head_with_captions(tmp_path):
    data = make_motion_dataset(tmp_path / "text", texts=True)
    config = replace(TINY, text_encoder="minilm")  # recorded; the stand-in encoder is used instead
    out = train_evaluator(data, tmp_path / "ev", config=config, device="cpu", progress=False,
                          text_encoder=HashTextEncoder())
    evaluator = load_evaluator(out, device="cpu")
    assert evaluator.has_text and evaluator.meta["text_dim"] == HashTextEncoder.dim
    z = evaluator.embed_texts(["a person walks forward", "someone strolls and turns"], text_encoder=HashTextEncoder())
    assert z.shape == (2, TINY.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_captioned_data_trains_without_text_when_no_encoder_is_asked_for(tmp_path):
    data = make_motion_dataset(tmp_path / "text", texts=True)
    out = train_evaluator(data, tmp_path / "ev", config=TINY, device="cpu", progress=False)  # text_encoder="none"
    assert not load_evaluator(out, device="cpu").has_text


def test_no_text_head_without_captions(trained):
    evaluator = load_evaluator(trained, device="cpu")
    assert not evaluator.has_text
    with pytest.raises(EvaluatorError, match="no text head"):
        evaluator.embed_texts(["a person walks"])


# --- HumanML3D evaluator (Guo et al. 2022) ---------------------------------------------------------------------------

# The published text_mot_match layout, written out independently of the module classes.
GUO_SHAPES = {
    "movement_encoder": {
        "main.0.weight": (512, 259, 4), "main.0.bias": (512,), "main.3.weight": (512, 512, 4), "main.3.bias": (512,),
        "out_net.weight": (512, 512), "out_net.bias": (512,),
    },
    "motion_encoder": {
        "hidden": (2, 1, 1024), "input_emb.weight": (1024, 512), "input_emb.bias": (1024,),
        **{f"gru.{kind}_{part}_l0{suffix}": (3072, 1024) if kind == "weight" else (3072,)
           for kind in ("weight", "bias") for part in ("ih", "hh") for suffix in ("", "_reverse")},
        "output_net.0.weight": (1024, 2048), "output_net.0.bias": (1024,), "output_net.1.weight": (1024,),
        "output_net.1.bias": (1024,), "output_net.3.weight": (512, 1024), "output_net.3.bias": (512,),
    },
    "text_encoder": {
        "hidden": (2, 1, 512), "pos_emb.weight": (300, 15), "pos_emb.bias": (300,), "input_emb.weight": (512, 300),
        "input_emb.bias": (512,),
        **{f"gru.{kind}_{part}_l0{suffix}": (1536, 512) if kind == "weight" else (1536,)
           for kind in ("weight", "bias") for part in ("ih", "hh") for suffix in ("", "_reverse")},
        "output_net.0.weight": (512, 1024), "output_net.0.bias": (512,), "output_net.1.weight": (512,),
        "output_net.1.bias": (512,), "output_net.3.weight": (512, 512), "output_net.3.bias": (512,),
    },
}


def guo_checkpoint(root: Path, *, drop: str | None = None, reshape: tuple[str, str] | None = None) -> Path:
    """Write ``root/text_mot_match/model/finest.tar`` with random weights of the published shapes."""
    generator = torch.Generator().manual_seed(0)
    checkpoint: dict = {"epoch": 7}
    for name, shapes in GUO_SHAPES.items():
        state = {}
        for key, shape in shapes.items():
            fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=generator) / fan_in**0.5
        checkpoint[name] = state
    if drop:
        del checkpoint[drop]
    if reshape:
        part, key = reshape
        checkpoint[part][key] = torch.zeros(3, 3)
    path = root / "text_mot_match" / "model" / "finest.tar"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def guo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("t2m")
    guo_checkpoint(root)
    meta = root / "text_mot_match" / "meta"
    meta.mkdir()
    np.save(meta / "mean.npy", np.zeros(263, np.float32))
    np.save(meta / "std.npy", np.ones(263, np.float32))
    return root


def test_guo_evaluator_embeds(guo_dir):
    evaluator = load_guo_evaluator(guo_dir, device="cpu")  # mean/std from text_mot_match/meta
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, 263)).astype(np.float32) for n in (40, 53, 64)]
    z = evaluator.embed_features(feats)
    assert z.shape == (3, 512) and np.isfinite(z).all()
    np.testing.assert_array_equal(evaluator.embed_features(feats), z)  # deterministic (dropout off)
    alone = np.concatenate([evaluator.embed_features([f]) for f in feats])
    np.testing.assert_allclose(alone, z, atol=1e-5)  # input order kept; always padded to 196 frames
    np.testing.assert_allclose(evaluator.embed_features([feats[1][:52]]), z[1:2], atol=1e-5)  # 53 → 52 frames
    z_joints = evaluator.embed_joints(np.stack([walk(48, seed=1), walk(48, seed=2)]), fps=20.0)
    assert z_joints.shape == (2, 512)
    words, pos = rng.normal(size=(2, 7, 300)), np.eye(15)[rng.integers(0, 15, size=(2, 7))]
    zt = evaluator.embed_texts(words, pos, [7, 5])
    assert zt.shape == (2, 512)
    np.testing.assert_allclose(evaluator.embed_texts(words[1:], pos[1:], [5]), zt[1:], atol=1e-5)


def test_guo_explicit_statistics_and_paths(guo_dir):
    finest = guo_dir / "text_mot_match" / "model" / "finest.tar"
    mean, std = np.full(263, 0.5, np.float32), np.full(263, 2.0, np.float32)
    a = load_guo_evaluator(finest, mean=mean, std=std, device="cpu")
    b = load_guo_evaluator(guo_dir / "text_mot_match", mean=mean, std=std, device="cpu")
    feats = [np.random.default_rng(1).normal(size=(32, 263)).astype(np.float32)]
    np.testing.assert_array_equal(a.embed_features(feats), b.embed_features(feats))
    c = load_guo_evaluator(guo_dir, device="cpu")  # zero mean, unit std: other inputs to the network
    assert not np.allclose(c.embed_features(feats), a.embed_features(feats))


def test_guo_errors_name_the_file(tmp_path):
    missing = guo_checkpoint(tmp_path / "a", drop="text_encoder")
    with pytest.raises(EvaluatorError, match=f"{missing}.*text_encoder"):
        load_guo_evaluator(tmp_path / "a", mean=np.zeros(263), std=np.ones(263), device="cpu")
    guo_checkpoint(tmp_path / "b", reshape=("motion_encoder", "output_net.3.weight"))
    with pytest.raises(EvaluatorError, match=r"motion_encoder.*output_net\.3\.weight"):
        load_guo_evaluator(tmp_path / "b", mean=np.zeros(263), std=np.ones(263), device="cpu")
    guo_checkpoint(tmp_path / "d")  # valid, but no mean/std next to it
    with pytest.raises(EvaluatorError, match=r"meta/mean\.npy.*pass mean="):
        load_guo_evaluator(tmp_path / "d", device="cpu")
    with pytest.raises(EvaluatorError, match="finest.tar"):
        load_guo_evaluator(tmp_path / "nowhere", device="cpu")
    garbage = tmp_path / "c" / "finest.tar"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(EvaluatorError, match=str(garbage)):
        load_guo_evaluator(garbage, device="cpu")
