"""MotionDenoiser: the MDM-style transformer that predicts clean motion x0 from a noised motion x_t.

Design (Tevet et al. 2023, "Human Motion Diffusion Model", Sec. 3 and Fig. 2), encoder-only variant:

    tokens = [cond_token, W_in x_t^1, ..., W_in x_t^T] + positional encoding       (B, 1 + T, width)
    cond_token = MLP(sinusoid(t)) + W_c c          (c: condition vector, e.g. a text embedding)
    h = TransformerEncoder(tokens, key padding mask)                                (B, 1 + T, width)
    x0_hat = W_out h[:, 1:]                                                         (B, T, features)

The model predicts x0 (not the noise), as MDM does, so that geometric losses can act on its output. Other
parameterizations (v) wrap the network and turn its output into x0 (``parameterization.py``).

Differences from the reference implementation, on purpose:

* padded frames are masked out as attention *keys* (the reference attends to padding, so its outputs on real
  frames change with the amount of padding); the condition token is always a valid key, so no attention row is
  ever empty. Outputs on real frames are therefore independent of how much padding follows them.
* temporal patching (``frames_per_token = k``, default 1 = the design above): k consecutive frames form one
  token, ``W_in`` maps their concatenated features ``(k·D)`` to the width and ``W_out`` maps each token back to k
  frames, as a ViT patch embedding does for image patches (Dosovitskiy et al. 2021, eq. 1) and as video diffusion
  transformers do along time. A T-frame window becomes ``ceil(T / k)`` tokens (the window is zero-padded to a
  multiple of k inside the model; a token is a valid key if any of its frames is real), so attention costs ~k² and
  every linear layer ~k less per step. The positional encoding indexes tokens, not frames.
* the transformer is written here (nanoGPT style: pre-LayerNorm blocks, ``scaled_dot_product_attention``,
  a final LayerNorm) rather than ``nn.TransformerEncoder``. Parameters keep PyTorch's default initialization (as
  MDM), so the timestep and condition embeddings start at the same scale as the positional encoding.

This module knows tensors and conditioning only: nothing about skeletons, cameras, data or diffusion schedules.
Tensors follow the project conventions: features ``(B, T, D)``, frame mask ``(B, T)`` bool with True = real frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MotionDenoiser", "sinusoidal_embedding"]


def sinusoidal_embedding(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) positions (Vaswani et al. 2017, Sec. 3.5).

    ``emb[n] = [sin(p_n w_0), ..., sin(p_n w_{h-1}), cos(p_n w_0), ..., cos(p_n w_{h-1})]`` with
    ``w_i = max_period ** (-i / h)`` and ``h = dim / 2``.

    Args:
        positions: (N,) positions or diffusion timesteps, any numeric dtype.
        dim: embedding size, even.
        max_period: longest wavelength (in position units).

    Returns:
        (N, dim) float32 embeddings on ``positions.device``.
    """
    if dim % 2 != 0:
        raise ValueError(f"sinusoidal embedding size must be even, got {dim}")
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=positions.device) / half  # (h,)
    frequencies = torch.exp(-math.log(max_period) * exponents)  # (h,)
    angles = positions.to(torch.float32)[:, None] * frequencies[None, :]  # (N, h)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (N, dim)


def _activation(name: str) -> nn.Module:
    """The feed-forward non-linearity by name ("gelu" or "relu")."""
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; expected 'gelu' or 'relu'")


def _attention_written_out(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, dropout: float) -> Tensor:
    """``dropout(softmax(q kᵀ / √d + mask)) v`` with a key padding mask, written out.

    On the CPU, ``F.scaled_dot_product_attention`` with dropout runs this same sequence of operations (its math
    path: the same scaling, product, softmax and dropout draw, so the same numbers in fp32), plus a pass that zeroes
    fully masked rows, which never occur here (the condition token is always a valid key) and which costs a tenth of
    a training step of the ``small`` model. Without dropout it runs its fused (flash) CPU kernel instead, whose
    backward pass under bf16 autocast takes 4× as long as this one's (README, "Training throughput"); the result
    differs from it by float rounding only (~1e-6 in fp32).

    Args:
        q, k, v: (B, H, S, d). key_mask: (B, S) bool, True = valid key, at least one per row. dropout: probability.
    Returns:
        (B, H, S, d).
    """
    scale = q.shape[-1] ** -0.25  # applied to q and k each, as the math path does
    scores = (q * scale) @ (k * scale).transpose(-1, -2)  # (B, H, S, S)
    # (B, S) -> (B, 1, 1, S): 0 for a valid key, −inf for padding, broadcast over heads and queries.
    bias = torch.zeros(key_mask.shape, dtype=scores.dtype, device=scores.device).masked_fill(~key_mask, -math.inf)
    weights = torch.softmax(scores + bias[:, None, None, :], dim=-1)
    return (F.dropout(weights, dropout) if dropout > 0.0 else weights) @ v


def use_fused_cpu_attention(network: nn.Module) -> None:
    """Train ``network``'s attention through ``F.scaled_dot_product_attention`` on the CPU too, unless it has
    dropout: the reference training step (``train.fast=false``), kept to benchmark the written-out path against."""
    for module in network.modules():
        if isinstance(module, SelfAttention):
            module.written_out_on_cpu = False


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask, through ``F.scaled_dot_product_attention`` (written out,
    :func:`_attention_written_out`, when training on the CPU)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads != 0:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.resid_dropout = nn.Dropout(dropout)
        self.written_out_on_cpu = True  # training on the CPU: :func:`_attention_written_out` (see there)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """Attend every token to the valid tokens.

        Args:
            x: (B, S, W) tokens.
            key_mask: (B, S) bool, True = the token may be attended to (is a valid key).

        Returns:
            (B, S, W) attention output (after the output projection and residual dropout).
        """
        batch, seq, width = x.shape
        head_dim = width // self.heads
        q, k, v = self.qkv(x).split(width, dim=-1)  # 3 x (B, S, W)
        # (B, S, W) -> (B, S, H, W/H) -> (B, H, S, W/H): one attention problem per head.
        q = q.view(batch, seq, self.heads, head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.heads, head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.heads, head_dim).transpose(1, 2)
        if self.training and x.device.type == "cpu" and (self.written_out_on_cpu or self.dropout > 0.0):
            y = _attention_written_out(q, k, v, key_mask, self.dropout)  # (B, H, S, W/H)
        else:
            # (B, S) -> (B, 1, 1, S): broadcast over heads and queries; True = take part in attention.
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])  # (B, H, S, W/H)
        # (B, H, S, W/H) -> (B, S, H, W/H) -> (B, S, W): heads side by side again.
        y = y.transpose(1, 2).reshape(batch, seq, width)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(width, ff) - activation - Linear(ff, width) - dropout."""

    def __init__(self, width: int, ff_size: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.fc = nn.Linear(width, ff_size)
        self.act = _activation(activation)
        self.proj = nn.Linear(ff_size, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, S, W) -> (B, S, W)."""
        return self.dropout(self.proj(self.act(self.fc(x))))


class TemporalConv(nn.Module):
    """Depthwise convolution along the frame tokens: ``Linear(GELU(DWConv_k(x)))`` (the convolution module of a
    Conformer block, Gulati et al. 2020, Sec. 2.2, without its gating).

    Each channel is filtered over its ``kernel`` neighbouring tokens, so a low-pass (smoothing) or high-pass
    (noise-finding) filter in time is one weight vector per channel rather than something attention has to learn.
    Invalid tokens enter as zeros, exactly like the convolution's own zero padding at the window's end, so outputs on
    real frames stay independent of how much padding follows them.
    """

    def __init__(self, width: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.act = nn.GELU()
        self.proj = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x: (B, N, W) frame tokens, valid: (B, N) bool. Returns (B, N, W)."""
        x = x.masked_fill(~valid[..., None], 0.0)
        filtered = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, W, N) convolved along N, back to (B, N, W)
        return self.dropout(self.proj(self.act(filtered)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + Attn(LN(x))``, then (with ``temporal_kernel > 0``) on the frame tokens
    ``x + TemporalConv(LN(x))``, then ``x + FF(LN(x))``. Token 0 is the condition token, never convolved."""

    def __init__(self, width: int, heads: int, ff_size: int, dropout: float, activation: str,
                 temporal_kernel: int = 0) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        if temporal_kernel > 0:
            self.ln_conv = nn.LayerNorm(width)
            self.conv = TemporalConv(width, temporal_kernel, dropout)
        else:
            self.conv = None
        self.ln_ff = nn.LayerNorm(width)
        self.ff = FeedForward(width, ff_size, dropout, activation)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """x: (B, S, W), key_mask: (B, S) bool True = valid key. Returns (B, S, W)."""
        x = x + self.attn(self.ln_attn(x), key_mask)
        if self.conv is not None:
            frames = x[:, 1:]
            x = torch.cat([x[:, :1], frames + self.conv(self.ln_conv(frames), key_mask[:, 1:])], dim=1)
        x = x + self.ff(self.ln_ff(x))
        return x


class TimestepEmbedder(nn.Module):
    """Diffusion timestep -> width: sinusoidal embedding followed by Linear-SiLU-Linear (as MDM)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        """t: (B,) integer timesteps. Returns (B, width)."""
        return self.mlp(sinusoidal_embedding(t, self.width))


class MotionDenoiser(nn.Module):
    """MDM-style transformer denoiser predicting x0 (or v, wrapped in :class:`~videomdm.parameterization.Parameterized`)
    from x_t, the timestep and an optional condition vector.

    Args:
        feature_dim: D, per-frame motion feature size (263 for HumanML3D's 22-joint representation).
        cond_dim: size of the condition vector (e.g. 384 for MiniLM text embeddings); 0 = unconditional model.
        width: transformer width (MDM's ``latent_dim``).
        layers: number of transformer blocks.
        heads: attention heads; must divide ``width``.
        ff_size: hidden size of the feed-forward MLP.
        dropout: dropout on tokens, attention weights, and residual branches.
        activation: feed-forward non-linearity, "gelu" or "relu".
        cond_dropout: probability, in training mode, of zeroing a sample's condition vector
            (classifier-free guidance training, Ho & Salimans 2022).
        max_frames: longest sequence accepted, in frames (the positional table has ``ceil(max_frames / k)`` token
            positions, plus one for the condition token).
        frames_per_token: k, consecutive frames per transformer token (temporal patching, module docstring); 1 =
            one token per frame (MDM).
        temporal_kernel: odd size, in tokens, of a depthwise temporal convolution added to every block
            (:class:`TemporalConv`); 0 = none (MDM).
    """

    def __init__(
        self,
        feature_dim: int,
        cond_dim: int = 0,
        width: int = 512,
        layers: int = 8,
        heads: int = 4,
        ff_size: int = 1024,
        dropout: float = 0.1,
        activation: str = "gelu",
        cond_dropout: float = 0.1,
        max_frames: int = 1024,
        frames_per_token: int = 1,
        temporal_kernel: int = 0,
        zero_init_output: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1], got {cond_dropout}")
        if frames_per_token < 1:
            raise ValueError(f"frames_per_token must be at least 1, got {frames_per_token}")
        if temporal_kernel < 0 or (temporal_kernel > 0 and temporal_kernel % 2 == 0):
            raise ValueError(f"temporal kernel must be 0 (none) or a positive odd number, got {temporal_kernel}")
        self.feature_dim = feature_dim
        self.cond_dim = cond_dim
        self.width = width
        self.cond_dropout = cond_dropout
        self.max_frames = max_frames
        self.frames_per_token = frames_per_token

        self.input_proj = nn.Linear(frames_per_token * feature_dim, width)
        self.timestep_embedder = TimestepEmbedder(width)
        self.cond_proj = nn.Linear(cond_dim, width) if cond_dim > 0 else None
        self.token_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, ff_size, dropout, activation, temporal_kernel)
                                    for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.output_proj = nn.Linear(width, frames_per_token * feature_dim)
        if zero_init_output:
            nn.init.zeros_(self.output_proj.weight)
            nn.init.zeros_(self.output_proj.bias)
        # Position 0 is the condition token, positions 1..N the frame tokens. Deterministic, so not saved.
        positions = torch.arange(math.ceil(max_frames / frames_per_token) + 1)
        self.register_buffer("positional", sinusoidal_embedding(positions, width), persistent=False)

    def condition_token(self, t: Tensor, cond: Tensor | None, uncond: Tensor | None) -> Tensor:
        """The token prepended to the frames: timestep embedding + projected condition vector.

        The condition vector of a sample is zeroed (the unconditional branch) where ``uncond`` is True and, in
        training mode, independently with probability ``cond_dropout``. A missing ``cond`` on a conditional model
        means unconditional for the whole batch.

        Args:
            t: (B,) integer timesteps.
            cond: (B, cond_dim) condition vectors, or None.
            uncond: (B,) bool, True = force the unconditional branch, or None.

        Returns:
            (B, 1, width) condition token.
        """
        token = self.timestep_embedder(t)  # (B, W)
        if self.cond_proj is None:
            if cond is not None:
                raise ValueError("this model has cond_dim == 0: cond must be None")
            return token[:, None, :]
        batch = t.shape[0]
        if cond is None:
            cond = torch.zeros(batch, self.cond_dim, device=t.device, dtype=token.dtype)
        if cond.shape != (batch, self.cond_dim):
            raise ValueError(f"cond must have shape {(batch, self.cond_dim)}, got {tuple(cond.shape)}")
        drop = torch.zeros(batch, dtype=torch.bool, device=cond.device)
        if uncond is not None:
            drop = drop | uncond.to(device=cond.device, dtype=torch.bool)
        if self.training and self.cond_dropout > 0.0:
            drop = drop | (torch.rand(batch, device=cond.device) < self.cond_dropout)
        cond = cond.masked_fill(drop[:, None], 0.0)  # (B, cond_dim), zero rows = unconditional
        return (token + self.cond_proj(cond))[:, None, :]  # (B, 1, W)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        mask: Tensor,
        cond: Tensor | None = None,
        uncond: Tensor | None = None,
    ) -> Tensor:
        """Predict the clean motion x0 (or v, see the class docstring) from the noised motion x_t.

        Args:
            x: (B, T, D) noised features x_t. Values on padded frames are ignored (they may be anything,
                NaN included).
            t: (B,) LongTensor diffusion timesteps.
            mask: (B, T) bool, True = real frame. Padded frames are never attended to (with k > 1: a token whose
                frames are all padding is never attended to; padded frames inside a token enter it as zeros).
            cond: (B, cond_dim) condition vectors, or None (required None when ``cond_dim == 0``).
            uncond: (B,) bool, True = force the unconditional branch for that sample (in any mode).

        Returns:
            (B, T, D) prediction; exactly 0 on padded frames.
        """
        batch, frames, features = x.shape
        if features != self.feature_dim:
            raise ValueError(f"expected {self.feature_dim} features per frame, got {features}")
        if frames > self.max_frames:
            raise ValueError(f"sequence of {frames} frames exceeds max_frames={self.max_frames}")
        if mask.shape != (batch, frames) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool of shape {(batch, frames)}, got {mask.dtype} {tuple(mask.shape)}")
        if t.shape != (batch,):
            raise ValueError(f"t must have shape {(batch,)}, got {tuple(t.shape)}")

        x = x.masked_fill(~mask[..., None], 0.0)  # padding garbage (even NaN) never reaches the network
        k = self.frames_per_token
        num_tokens = math.ceil(frames / k)  # N
        pad = num_tokens * k - frames  # frames added so that k divides the window
        # (B, T, D) -> (B, N·k, D) -> (B, N, k·D): k consecutive frames side by side in one token.
        patches = F.pad(x, (0, 0, 0, pad)).reshape(batch, num_tokens, k * features)
        frame_tokens = self.input_proj(patches)  # (B, N, W)
        cond_token = self.condition_token(t, cond, uncond).to(frame_tokens.dtype)  # (B, 1, W)
        tokens = torch.cat([cond_token, frame_tokens], dim=1)  # (B, 1 + N, W)
        tokens = self.token_dropout(tokens + self.positional[: num_tokens + 1])

        # A token is a valid key if any of its frames is real; (B, T) -> (B, N·k) -> (B, N, k) -> (B, N).
        token_mask = F.pad(mask, (0, pad), value=False).reshape(batch, num_tokens, k).any(dim=-1)
        # The condition token (position 0) is always a valid key, so no attention row is empty.
        always = torch.ones(batch, 1, dtype=torch.bool, device=mask.device)
        key_mask = torch.cat([always, token_mask], dim=1)  # (B, 1 + N)
        for block in self.blocks:
            tokens = block(tokens, key_mask)

        out = self.output_proj(self.ln_final(tokens[:, 1:]))  # (B, N, k·D): drop the condition token
        out = out.reshape(batch, num_tokens * k, features)[:, :frames]  # (B, T, D): back to frames
        return out.masked_fill(~mask[..., None], 0.0)
