"""The HumanML3D standard evaluator (:func:`load_guo_evaluator`, :class:`GuoEvaluator`).

Faithful re-implementations of the text–motion matching modules of Guo et al., "Generating Diverse and Natural 3D
Human Motions from Text" (CVPR 2022), the evaluator of published HumanML3D tables, loaded from the user's
``text_mot_match/model/finest.tar``.

Module layouts follow those networks so that their released ``finest.tar`` state dicts load unchanged: Sequential
indices (main.0 / main.3, output_net.0 / .1 / .3) and the learned initial GRU state ``hidden (2, 1, H)`` are part of
the key names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..data.mocap import resample
from ..skeleton import get_skeleton
from .common import EvaluatorError, as_motion_list, encode_many, load_state, resolve_device

__all__ = ["MovementConvEncoder", "MotionEncoderBiGRUCo", "TextEncoderBiGRUCo", "GuoEvaluator", "load_guo_evaluator"]


class MovementConvEncoder(nn.Module):
    """Per-4-frame movement features: ``(B, T, 259) → (B, T/4, 512)``.

    Conv1d(259→512, k4, s2, p1), Dropout(0.2), LeakyReLU(0.2), Conv1d(512→512, k4, s2, p1), Dropout(0.2),
    LeakyReLU(0.2), then Linear(512→512) per step.
    """

    def __init__(self, input_size: int = 259, hidden_size: int = 512, output_size: int = 512) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.out_net(self.main(inputs.transpose(1, 2)).transpose(1, 2))


class MotionEncoderBiGRUCo(nn.Module):
    """Movement sequence ``(B, T', 512)`` with lengths ``(B,)`` → motion co-embedding ``(B, 512)``.

    Linear(512→1024), bidirectional GRU(1024) from the learned state ``hidden (2, 1, 1024)``, the two final states
    concatenated (2048) → Linear(2048→1024), LayerNorm, LeakyReLU(0.2), Linear(1024→512).
    """

    def __init__(self, input_size: int = 512, hidden_size: int = 1024, output_size: int = 512) -> None:
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                        nn.LeakyReLU(0.2), nn.Linear(hidden_size, output_size))
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        embedded = self.input_emb(inputs)  # (B, T', H)
        hidden = self.hidden.repeat(1, inputs.shape[0], 1)  # (2, B, H)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, hidden)  # (2, B, H), in input order
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


class TextEncoderBiGRUCo(nn.Module):
    """Word vectors ``(B, L, 300)`` + POS one-hots ``(B, L, 15)`` with lengths ``(B,)`` → text co-embedding
    ``(B, 512)``.

    pos_emb Linear(15→300) added to the word vectors, Linear(300→512), bidirectional GRU(512) from the learned state
    ``hidden (2, 1, 512)``, final states concatenated (1024) → Linear(1024→512), LayerNorm, LeakyReLU(0.2),
    Linear(512→512).
    """

    def __init__(self, word_size: int = 300, pos_size: int = 15, hidden_size: int = 512,
                 output_size: int = 512) -> None:
        super().__init__()
        self.pos_emb = nn.Linear(pos_size, word_size)
        self.input_emb = nn.Linear(word_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                        nn.LeakyReLU(0.2), nn.Linear(hidden_size, output_size))
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, word_embs: Tensor, pos_onehot: Tensor, lengths: Tensor) -> Tensor:
        embedded = self.input_emb(word_embs + self.pos_emb(pos_onehot))  # (B, L, H)
        hidden = self.hidden.repeat(1, word_embs.shape[0], 1)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, hidden)
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


class GuoEvaluator:
    """The HumanML3D text–motion matching evaluator (Guo et al. 2022) with its feature statistics.

    Motion pipeline (as the published evaluation's ground-truth loader): HumanML3D features ``(T, 263)`` → the first
    ``T`` rounded down to a multiple of ``unit_length`` (4) frames, at most ``max_frames`` → normalize with
    ``mean``/``std`` → zero-pad to ``max_frames`` (196; the convolutions see the padding at the end of each motion,
    so the padded length is part of the definition) → drop the 4 foot-contact channels (259) →
    :class:`MovementConvEncoder` → :class:`MotionEncoderBiGRUCo` over ``T // 4`` steps → ``(512,)``. Unlike the
    original wrapper, results come back in input order (it returned them sorted by length).

    Attributes:
        mean, std: ``(263,)`` feature statistics the evaluator's inputs are normalized with.
    """

    unit_length = 4

    def __init__(self, movement: MovementConvEncoder, motion: MotionEncoderBiGRUCo, text: TextEncoderBiGRUCo,
                 mean: Tensor, std: Tensor, device: str | torch.device = "cpu", max_frames: int = 196) -> None:
        self.device = resolve_device(device)
        self.movement_encoder = movement.to(self.device).eval()
        self.motion_encoder = motion.to(self.device).eval()
        self.text_encoder = text.to(self.device).eval()
        self.mean, self.std = mean.float().to(self.device), std.float().to(self.device)
        self.max_frames = max_frames

    @property
    def feature_dim(self) -> int:
        return int(self.mean.shape[0])

    def embed_features(self, features: Sequence[Tensor | np.ndarray], *, batch_size: int = 256) -> np.ndarray:
        """HumanML3D features, a list of ``(T_i, 263)`` (unnormalized), each ≥ 4 frames → ``(N, 512)`` float32."""
        items = []
        for f in features:
            f = torch.as_tensor(np.asarray(f), dtype=torch.float32)
            if f.ndim != 2 or f.shape[1] != self.feature_dim:
                raise ValueError(f"expected features (T, {self.feature_dim}), got {tuple(f.shape)}")
            length = min(f.shape[0], self.max_frames) // self.unit_length * self.unit_length
            if length < self.unit_length:
                raise ValueError(f"a motion needs at least {self.unit_length} frames, got {f.shape[0]}")
            items.append(f[:length])
        out = np.zeros((len(items), 512), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                part = items[start:start + batch_size]
                lengths = torch.tensor([p.shape[0] for p in part])
                x = torch.zeros(len(part), self.max_frames, self.feature_dim, device=self.device)
                for i, p in enumerate(part):
                    x[i, :p.shape[0]] = (p.to(self.device) - self.mean) / self.std
                movements = self.movement_encoder(x[..., :-4])  # (B, T/4, 512)
                z = self.motion_encoder(movements, lengths // self.unit_length)
                out[start:start + len(part)] = z.cpu().numpy()
        return out

    def embed_joints(self, joints: Any, fps: float, *, skeleton: str = "smpl22", batch_size: int = 256) -> np.ndarray:
        """World joints (``(N, T, 22, 3)`` or a list of ``(T_i, 22, 3)``, metres) → ``(N, 512)``.

        Resampled to 20 fps and encoded with :func:`videomdm.representation.encode` (HumanML3D's features up to the
        documented deviations of that module: same within float rounding except frame 0's facing and the last frame),
        so the numbers are close to, not identical with, features from HumanML3D's own script.
        """
        sk = get_skeleton(skeleton)
        motions = [resample(m, float(fps), 20.0).astype(np.float32) for m in as_motion_list(joints)]
        features = encode_many(motions, sk, contact_threshold=0.002, facing_sigma=20.0)  # HumanML3D's settings
        return self.embed_features(features, batch_size=batch_size)

    def embed_texts(self, word_embs: Tensor | np.ndarray, pos_onehot: Tensor | np.ndarray,
                    lengths: Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
        """Text co-embeddings from PRE-COMPUTED inputs: ``word_embs (N, L, 300)`` GloVe vectors, ``pos_onehot
        (N, L, 15)`` part-of-speech one-hots (HumanML3D's ``POS_enumerator`` order) and ``lengths (N,)`` (tokens
        including the sos/eos tokens, as HumanML3D's loader makes them) → ``(N, 512)`` float32.

        This project does not tokenize, tag or look up GloVe vectors: prepare those inputs with HumanML3D's own
        ``WordVectorizer`` (``glove/our_vab_*``) tools.
        """
        words = torch.as_tensor(np.asarray(word_embs), dtype=torch.float32, device=self.device)
        pos = torch.as_tensor(np.asarray(pos_onehot), dtype=torch.float32, device=self.device)
        lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        if words.ndim != 3 or pos.shape[:2] != words.shape[:2] or lengths.shape != words.shape[:1]:
            raise ValueError(f"expected word_embs (N, L, 300), pos_onehot (N, L, 15), lengths (N,), got "
                             f"{tuple(words.shape)}, {tuple(pos.shape)}, {tuple(lengths.shape)}")
        with torch.no_grad():
            return self.text_encoder(words, pos, lengths).cpu().numpy()


def _find_guo_checkpoint(checkpoint_dir: Path) -> Path:
    for candidate in (checkpoint_dir, checkpoint_dir / "text_mot_match" / "model" / "finest.tar",
                      checkpoint_dir / "model" / "finest.tar", checkpoint_dir / "finest.tar"):
        if candidate.is_file():
            return candidate
    raise EvaluatorError(f"{checkpoint_dir}: no text_mot_match/model/finest.tar (the HumanML3D evaluator "
                         f"checkpoint) found; pass the folder that holds text_mot_match/ or the finest.tar file")


def _load_stat(value: Any, name: str, default: Path) -> Tensor:
    if value is None:
        if not default.is_file():
            raise EvaluatorError(f"{default}: not found; pass {name}= (the HumanML3D feature {name} the evaluator's "
                                 f"inputs are normalized with: t2m_{name}.npy in published evaluations) as a path "
                                 f"or an array")
        value = default
    if isinstance(value, (str, Path)):
        try:
            value = np.load(Path(value), allow_pickle=False)
        except (OSError, ValueError) as err:
            raise EvaluatorError(f"{value}: cannot read {name} ({err})") from None
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def load_guo_evaluator(checkpoint_dir: str | Path, *, mean: Any = None, std: Any = None,
                       device: str | torch.device = "auto", max_frames: int = 196) -> GuoEvaluator:
    """Load the HumanML3D standard evaluator from the user's files.

    Args:
        checkpoint_dir: the folder holding ``text_mot_match/model/finest.tar`` (HumanML3D's ``checkpoints/t2m``),
            or the ``text_mot_match`` folder, or the ``finest.tar`` file itself. Loaded with
            ``torch.load(weights_only=True)``; it must hold the state dicts ``movement_encoder``, ``motion_encoder``
            and ``text_encoder``.
        mean, std: ``(263,)`` feature statistics (arrays or ``.npy`` paths) the evaluator's inputs are normalized
            with. Published evaluations use ``t2m_mean.npy`` / ``t2m_std.npy``. Default: ``mean.npy`` / ``std.npy`` in
            ``text_mot_match/meta`` next to the model folder.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``, ...
        max_frames: longer motions are cropped to their first ``max_frames`` frames (the evaluator saw ≤ 196).

    Raises:
        EvaluatorError: a missing/unreadable file, a missing state dict, missing keys or wrong shapes (the message
            names the file and the keys).
    """
    checkpoint_dir = Path(checkpoint_dir)
    path = _find_guo_checkpoint(checkpoint_dir)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or non-weights files
        raise EvaluatorError(f"{path}: not a readable weights-only torch checkpoint ({type(err).__name__}: {err})") \
            from None
    if not isinstance(checkpoint, dict):
        raise EvaluatorError(f"{path}: expected a dict of state dicts, got {type(checkpoint).__name__}")
    missing = [k for k in ("movement_encoder", "motion_encoder", "text_encoder") if k not in checkpoint]
    if missing:
        raise EvaluatorError(f"{path}: missing {missing}; found keys {sorted(map(str, checkpoint))}")
    movement_state = checkpoint["movement_encoder"]
    try:
        input_size = int(movement_state["main.0.weight"].shape[1])  # 259 for HumanML3D (263 − 4 contacts)
    except (KeyError, TypeError, AttributeError, IndexError):
        raise EvaluatorError(f"{path}: movement_encoder lacks main.0.weight (the first Conv1d)") from None
    modules = {"movement_encoder": MovementConvEncoder(input_size), "motion_encoder": MotionEncoderBiGRUCo(),
               "text_encoder": TextEncoderBiGRUCo()}
    for name, module in modules.items():
        state = checkpoint[name]
        if not isinstance(state, dict):
            raise EvaluatorError(f"{path}: {name} is not a state dict")
        load_state(module, state, f"{path} ({name})")
    meta_dir = path.parent.parent / "meta"
    mean_t = _load_stat(mean, "mean", meta_dir / "mean.npy")
    std_t = _load_stat(std, "std", meta_dir / "std.npy")
    if mean_t.shape != (input_size + 4,) or std_t.shape != (input_size + 4,):
        raise EvaluatorError(f"{path}: the evaluator reads {input_size} + 4 features, but mean/std have shapes "
                             f"{tuple(mean_t.shape)}, {tuple(std_t.shape)}")
    if not bool((std_t > 0).all()):
        raise EvaluatorError("std must be positive everywhere")
    movement, motion, text = modules["movement_encoder"], modules["motion_encoder"], modules["text_encoder"]
    return GuoEvaluator(movement, motion, text, mean_t, std_t, device, max_frames)  # type: ignore[arg-type]
