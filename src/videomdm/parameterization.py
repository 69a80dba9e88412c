"""Parameterizations: what the network's raw output means, and the x0 prediction made from it.

A parameterization wraps the network instead of living inside it (EDM's ``EDMPrecond``, Karras et al. 2022,
Sec. 5). The network maps ``(x_t, t, mask, cond, uncond)`` to a raw output ``F`` of the shape of ``x_t``;
:class:`Parameterized` returns the x0 prediction that losses and samplers use:

    x0:  x0_hat = F                                          (MDM: the network predicts x0)
    v:   x0_hat = sqrt(abar_t) x_t − sqrt(1 − abar_t) F      (the network predicts v, Salimans & Ho 2022, eq. 8)

    edm: x0_hat = c_skip x_t − c_out F, per feature with its data std s_d (EDM's preconditioning, Karras et al.
         2022, eq. 7 and Table 1, written for the variance-preserving x_t = sqrt(abar) x0 + sqrt(1 − abar) eps):
         c_skip = s_d² sqrt(abar) / (s_d² abar + 1 − abar),  c_out = s_d sqrt(1 − abar) / sqrt(s_d² abar + 1 − abar)

With v, the prediction starts from its input at low noise; v is edm with s_d = 1 everywhere (unit-variance data).
Under 2D supervision, where a single view leaves depth unconstrained, this keeps what the views cannot see close to
the (noised) input instead of arbitrary. ``edm`` takes each feature's own std: with group normalization the root
features have std ``data.root_emphasis`` (5), not 1, and under v their target grows with the noise (v = sqrt(abar)
eps − sqrt(1 − abar) x0) to 5× the others', so a short-trained network's error on them, which integrates into the
whole trajectory, is 5× larger too. With a zero network, c_skip x_t is the best linear estimate of zero-mean
Gaussian data of std s_d (the Wiener filter), and the network's target has unit variance at every level.

Optionally the x0 prediction is band-limited in time (``max_cycles_per_frame > 0``): projected onto its DCT
frequencies up to the cut-off (:mod:`videomdm.bandlimit`), so that every prediction, in training and in sampling,
is a smooth motion whatever the network has learned so far.

The wrapper has no parameters and its schedule is a buffer that is not saved (it is derived from the config): what
a run saves is the network's own state dict, the same as when the conversion lived inside the network.
"""

from __future__ import annotations

from torch import Tensor, nn

from .bandlimit import bandlimit

__all__ = ["Parameterized", "PREDICTIONS"]

PREDICTIONS = ("x0", "v", "edm")


class Parameterized(nn.Module):
    """The x0 denoiser ``(x_t, t, mask, cond, uncond) → x0_hat``: ``net`` read under the ``prediction``
    parameterization (module docstring).

    Args:
        net: the network; called as ``net(x (B, T, D), t (B,), mask (B, T), cond=, uncond=) → (B, T, D)``, exactly 0
            on padded frames.
        prediction: what ``net`` predicts, one of :data:`PREDICTIONS`.
        alphas_cumprod: ``(N,)`` cumulative alpha-bar of the diffusion; required for ``v``.
        max_cycles_per_frame: cut-off of the band limit on x0_hat (Hz / fps); 0 = none.
        data_std: ``(D,)`` std of each (normalized) feature; required for ``edm``.
    """

    def __init__(self, net: nn.Module, prediction: str, alphas_cumprod: Tensor | None = None,
                 max_cycles_per_frame: float = 0.0, data_std: Tensor | None = None) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
        if prediction != "x0" and alphas_cumprod is None:
            raise ValueError(f"{prediction} prediction needs the diffusion's alphas_cumprod")
        if (prediction == "edm") != (data_std is not None):
            raise ValueError("edm prediction needs the features' data_std, and only edm takes one")
        self.net = net
        self.prediction = prediction
        if max_cycles_per_frame < 0:
            raise ValueError(f"max_cycles_per_frame must be ≥ 0 (0 = no band limit), got {max_cycles_per_frame}")
        self.max_cycles_per_frame = max_cycles_per_frame
        schedule = None if alphas_cumprod is None else alphas_cumprod.float()
        self.register_buffer("alphas_cumprod", schedule, persistent=False)
        self.register_buffer("data_std", None if data_std is None else data_std.float(), persistent=False)

    def forward(self, x: Tensor, t: Tensor, mask: Tensor, cond: Tensor | None = None,
                uncond: Tensor | None = None) -> Tensor:
        """x0 prediction ``(B, T, D)`` from x_t ``(B, T, D)`` at levels ``t`` ``(B,)``; exactly 0 on padded frames
        (``mask`` ``(B, T)`` bool, True = real frame; values of ``x`` there may be anything, NaN included). Under
        autocast, ``v`` and ``edm`` predictions combine input and output in float32 and return float32."""
        out = self.net(x, t, mask, cond=cond, uncond=uncond)  # (B, T, D)
        if self.prediction == "x0":
            x0 = out
        else:
            # x0 = c_skip x_t − c_out F in float32 whatever the network's dtype: in bf16, abar_0 = 0.9983 rounds to 1,
            # so sqrt(1 − abar) = 0 and the lowest level would ignore the network (and give it no gradient) while
            # float32 sampling does not; the other low levels' coefficients would be off by up to 15 %.
            abar = self.alphas_cumprod[t][:, None, None]  # (B, 1, 1) float32
            if self.data_std is None:  # v: unit data std
                c_skip, c_out = abar.sqrt(), (1.0 - abar).sqrt()
            else:  # edm: each feature's data std, (B, 1, D)
                sd2 = self.data_std.square()
                scale = (1.0 - abar) + sd2 * abar
                c_skip, c_out = sd2 * abar.sqrt() / scale, self.data_std * (1.0 - abar).sqrt() / scale.sqrt()
            x0 = (c_skip * x.float() - c_out * out.float()).masked_fill(~mask[..., None], 0.0)
        if self.max_cycles_per_frame > 0:
            x0 = bandlimit(x0, mask, self.max_cycles_per_frame)
        return x0
