"""Training objectives: one per supervision mode (DESIGN.md, "Supervision modes").

An objective is called as ``objective(model, diffusion, normalizer, batch, random) → (loss, terms)``:

* ``model``: the x0 denoiser ``(x_t (B, T, D), t (B,), mask (B, T), cond=, uncond=) → x0_hat (B, T, D)``
  (:func:`videomdm.factory.build_denoiser`, or the DDP wrapper around it);
* ``diffusion``: the :class:`~videomdm.diffusion.GaussianDiffusion` on the batch's device;
* ``normalizer``: the run's feature :class:`~videomdm.representation.Normalizer`;
* ``batch``: one micro-batch (:class:`~videomdm.data.dataset.Batch`) on the device;
* ``random``: the items' random streams (:class:`ItemNoise`), so every timestep and noise draw is reproducible;
* ``loss``: the weighted total (0-d, with gradient); ``terms``: each unweighted term by name (0-d, detached, on the
  device: reading them is left to the caller, so no step waits for the device).

Everything else an objective needs (its config sections, skeleton, text encoder, device, autocast) is bound when it
is built (:func:`build_objective`). Its ``with_keypoints`` says whether its batches must carry keypoints and
cameras. A new supervision mode is a new entry of :data:`OBJECTIVES`; the training loop does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.profiler import record_function

from .config import Config
from .data.dataset import Batch
from .diffusion import GaussianDiffusion
from .losses import (foot_contact_loss, joint_position_loss, joint_velocity_loss, masked_mse, reprojection_loss,
                     velocity_2d_loss)
from .placement import solve_placement
from .representation import FeatureLayout, Normalizer, decode, encode
from .skeleton import get_skeleton
from .text import TextEncoder
from .views import nearest_point_to_rays, view_weight, views_as_frames, views_as_items

__all__ = ["Objective", "ItemNoise", "Denoise", "FeatureObjective", "ReprojectionObjective", "OBJECTIVES",
           "build_objective"]

Terms = dict[str, Tensor]


class ItemNoise(Protocol):
    """The random draws of one micro-batch's items (``videomdm.train.ItemRandom``: one stream per item)."""

    def timesteps(self, num_steps: int, device: torch.device) -> Tensor:
        """(B,) int64 diffusion levels, uniform in ``[0, num_steps)``."""

    def noise(self, frames: int, dim: int, device: torch.device, items: list[int] | None = None) -> Tensor:
        """(B', frames, dim) standard normal noise for ``items`` (default all) of the micro-batch."""


class Objective(Protocol):
    """A training objective (module docstring)."""

    with_keypoints: bool

    def __call__(self, model: torch.nn.Module, diffusion: GaussianDiffusion, normalizer: Normalizer, batch: Batch,
                 random: ItemNoise) -> tuple[Tensor, Terms]: ...


@dataclass(frozen=True)
class Denoise:
    """How objectives call the denoiser: captions to condition tensors, the forward pass under the run's autocast
    (``autocast`` None: fp32), the prediction back in float32 (losses, decoding and projection always run in float32).
    """

    text_encoder: TextEncoder | None
    device: torch.device
    autocast: torch.dtype | None = None

    def condition(self, texts: list[str]) -> tuple[Tensor | None, Tensor | None]:
        """Text embeddings ``(B, C)`` and ``uncond (B,)`` flags for items without a caption; None without a text
        encoder."""
        if self.text_encoder is None:
            return None, None
        uncond = torch.tensor([not t for t in texts], device=self.device)
        emb = self.text_encoder.encode([t or " " for t in texts]).to(self.device)
        return emb, uncond

    def __call__(self, model: torch.nn.Module, x: Tensor, t: Tensor, mask: Tensor, cond: Tensor | None,
                 uncond: Tensor | None) -> Tensor:
        """The x0 prediction ``(B, T, D)`` float32 for x_t ``(B, T, D)`` at levels ``t`` ``(B,)``."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            pred = model(x, t, mask, cond=cond, uncond=uncond)
        return pred.float()


class FeatureObjective:
    """MDM (Tevet et al. 2023): x0-prediction loss on the normalized features (eq. 2) plus the optional geometric
    terms (eqs. 3–5: joint positions, velocities, foot contact), weighted by ``config.loss``.

    Used by the ``3d`` and ``teacher`` supervision modes; they differ only in which motion fills ``batch.features``.
    """

    with_keypoints = False

    def __init__(self, config: Config, denoise: Denoise) -> None:
        self.weights = config.loss
        skeleton = get_skeleton(config.data.skeleton)
        self.layout = FeatureLayout(skeleton.num_joints)
        left, right = skeleton.foot_indices
        self.foot_joints = left + right
        self.denoise = denoise

    def __call__(self, model: torch.nn.Module, diffusion: GaussianDiffusion, normalizer: Normalizer, batch: Batch,
                 random: ItemNoise) -> tuple[Tensor, Terms]:
        w, device = self.weights, self.denoise.device
        x0 = normalizer.normalize(batch.features)  # (B, T, D)
        t = random.timesteps(diffusion.num_steps, device)
        noise = random.noise(x0.shape[1], x0.shape[2], device)
        x_t = diffusion.q_sample(x0, t, noise)
        cond, uncond = self.denoise.condition(batch.texts)
        pred = self.denoise(model, x_t, t, batch.mask, cond, uncond)
        item_weight = diffusion.loss_weights(t, w.time_weighting, w.min_snr_gamma)  # (B,) per level
        terms = {"features": masked_mse(pred, x0, batch.mask, item_weight)}
        if w.positions or w.velocities or w.foot_contact:
            num_joints = self.layout.num_joints
            pred_joints = decode(normalizer.denormalize(pred), num_joints)  # (B, T, J, 3)
            target_joints = decode(batch.features, num_joints)
            if w.positions:
                terms["positions"] = joint_position_loss(pred_joints, target_joints, batch.mask, item_weight)
            if w.velocities:
                terms["velocities"] = joint_velocity_loss(pred_joints, target_joints, batch.mask, item_weight)
            if w.foot_contact:
                contacts = batch.features[..., self.layout.foot_contacts]  # (B, T, 4)
                terms["foot_contact"] = foot_contact_loss(pred_joints, contacts, self.foot_joints, batch.mask,
                                                            item_weight)
        total = sum(getattr(w, name) * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}


class ReprojectionObjective:
    """VideoMDM (DESIGN.md, supervision ``2d``): the noised teacher in, 3D out, supervised by reprojection.

    Terms, weighted by ``config.two_d``: depth-weighted reprojection of the decoded prediction against the keypoints,
    2D velocity consistency, and (optionally) alignment of the prediction's rotation/velocity/contact slices with the
    re-encoded prediction moved onto the keypoint rays; with ``two_d.low_levels = "self"`` the 2D terms score the
    items at t ≥ t* and the feature loss (``loss`` weights) scores the items below t* against the model's own
    estimate (:meth:`noised_own_estimate`). ``batch.features`` hold the teacher; no ground truth is read.
    A clip's views all score the one prediction: the losses average over them and placement uses all of them
    (:mod:`videomdm.views`).
    """

    with_keypoints = True

    def __init__(self, config: Config, denoise: Denoise) -> None:
        self.two_d = config.two_d
        self.loss = config.loss
        self.skeleton = get_skeleton(config.data.skeleton)
        self.layout = FeatureLayout(self.skeleton.num_joints)
        self.contact_threshold = config.data.contact_threshold
        self.facing_sigma = config.data.facing_sigma
        self.denoise = denoise

    def __call__(self, model: torch.nn.Module, diffusion: GaussianDiffusion, normalizer: Normalizer, batch: Batch,
                 random: ItemNoise) -> tuple[Tensor, Terms]:
        cfg = self.two_d
        teacher = normalizer.normalize(batch.features)  # (B, T, D)
        t = random.timesteps(diffusion.num_steps, self.denoise.device)
        cond, uncond = self.denoise.condition(batch.texts)
        self_levels = cfg.low_levels == "self"
        with record_function("videomdm.noised_teacher"):
            if self_levels:
                x_t, own = self.noised_own_estimate(model, diffusion, teacher, t, batch.mask, cond, uncond, random)
            else:
                x_t = self.noised_teacher(model, diffusion, teacher, t, batch.mask, cond, uncond, random)
        pred = self.denoise(model, x_t, t, batch.mask, cond, uncond)
        item_weight = diffusion.loss_weights(t, cfg.time_weighting, self.loss.min_snr_gamma)  # (B,) per level
        if self_levels:  # the 2D terms train t ≥ t*; below, the feature loss against the model's own estimate
            low = t < cfg.teacher_min_t
            item_weight = item_weight * (~low)
        canonical = decode(normalizer.denormalize(pred), self.layout.num_joints)  # (B, T, J, 3) canonical frame
        # The prediction decodes at the teacher window's anchor (root x, z = 0, facing +z); where it stands and which
        # way it faces are solved from the keypoints instead (placement.py; detached: at the optimum the loss has no
        # gradient along a turn or a translation).
        weight = view_weight(batch.confidence, batch.mask, batch.view_mask)  # (B, V, T, J)
        with torch.no_grad():
            placement = solve_placement(*views_as_frames(canonical, batch.keypoints, weight, batch.R, batch.t),
                                        solve_yaw=cfg.solve_yaw)
        joints = placement.apply(canonical)
        observed = views_as_items(joints, batch.keypoints, weight, batch.mask, batch.R, batch.t, item_weight)
        weighting = {"weighting": cfg.depth_weighting, "min_depth": cfg.min_depth}
        terms = {
            "reprojection": reprojection_loss(**observed, **weighting),
            "velocity_2d": velocity_2d_loss(**observed, **weighting),
        }
        if cfg.alignment:
            terms["alignment"] = self.alignment_loss(normalizer, pred, joints, batch)
        weights = {"reprojection": cfg.reprojection, "velocity_2d": cfg.velocity, "alignment": cfg.alignment}
        if self_levels:
            own_weight = diffusion.loss_weights(t, self.loss.time_weighting, self.loss.min_snr_gamma) * low
            terms["self_features"] = masked_mse(pred, own, batch.mask, own_weight)
            weights["self_features"] = self.loss.features
            if self.loss.positions:
                own_joints = decode(normalizer.denormalize(own), self.layout.num_joints)
                terms["self_positions"] = joint_position_loss(canonical, own_joints, batch.mask, own_weight)
                weights["self_positions"] = self.loss.positions
        total = sum(weights[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}

    def noised_teacher(self, model: torch.nn.Module, diffusion: GaussianDiffusion, teacher: Tensor, t: Tensor,
                       mask: Tensor, cond: Tensor | None, uncond: Tensor | None, random: ItemNoise) -> Tensor:
        """The model input at level ``t``; the teacher is only ever noised to levels ≥ t* (``two_d.teacher_min_t``).

        Items with ``t ≥ t*`` get ``q_sample(teacher, t)``. Items with ``t < t*`` start from ``q_sample(teacher, t*)``
        and walk down to ``t`` in ``two_d.chain_steps`` evenly spaced deterministic DDIM steps (eval mode, no
        gradient, low-noise items only): the next level keeps the noise that the input and the model's prediction
        imply, as sampling and lifting do. At low noise the model therefore sees its own denoised motion, never the
        lifter's artifacts, which would otherwise be reproduced almost unchanged.

        Args:
            teacher: (B, T, D) normalized teacher features. t: (B,) target levels. mask: (B, T) bool.
        Returns:
            (B, T, D) the noised input at level ``t`` (no gradient).
        """
        t_star, chain = self.two_d.teacher_min_t, self.two_d.chain_steps
        device = self.denoise.device
        frames, dim = teacher.shape[1:]
        noise = random.noise(frames, dim, device)
        x = diffusion.q_sample(teacher, t.clamp_min(t_star), noise)
        low = torch.nonzero(t < t_star).squeeze(-1)  # (B_low,) items that walk a chain below t*
        if low.numel() == 0:
            return x
        target = t[low]
        x_low, mask_low = x[low], mask[low]
        cond_low = None if cond is None else cond[low]
        uncond_low = None if uncond is None else uncond[low]
        was_training = model.training
        model.eval()  # the chain's predictions are inputs, not training outputs: no dropout
        with torch.no_grad():
            for k in range(1, chain + 1):
                # Levels t* → t in ``chain`` steps: level_k = round(t* + (t − t*)·k/chain).
                current = torch.round(t_star + (target - t_star) * (k - 1) / chain).long().clamp_min(target)
                nxt = torch.round(t_star + (target - t_star) * k / chain).long().clamp_min(target)
                x0_hat = self.denoise(model, x_low, current, mask_low, cond_low, uncond_low)
                x_low = diffusion.q_sample(x0_hat, nxt, diffusion.predict_noise_from_x0(x_low, current, x0_hat))
        model.train(was_training)
        x = x.clone()
        x[low] = x_low
        return x

    def noised_own_estimate(self, model: torch.nn.Module, diffusion: GaussianDiffusion, teacher: Tensor, t: Tensor,
                            mask: Tensor, cond: Tensor | None, uncond: Tensor | None,
                            random: ItemNoise) -> tuple[Tensor, Tensor]:
        """``two_d.low_levels = "self"``: the model input at level ``t`` and, for items below t*, the clean motion
        they are denoised towards.

        Items with ``t ≥ t*`` get ``q_sample(teacher, t)`` (their own estimate is the teacher, unused). Items with
        ``t < t*`` get ``q_sample(ŷ, t)`` with fresh noise, where ŷ is the model's own x0 prediction from
        ``q_sample(teacher, t*)`` (eval mode, no gradient): below t* the model learns to denoise motions of its own
        2D-consistent kind, as a ``3d`` model denoises data, instead of correcting with the keypoints it cannot see.

        Returns:
            ``(x_t, own)``: (B, T, D) the noised input and (B, T, D) the clean motion of each item (no gradient).
        """
        t_star = self.two_d.teacher_min_t
        frames, dim = teacher.shape[1:]
        device = self.denoise.device
        x = diffusion.q_sample(teacher, t.clamp_min(t_star), random.noise(frames, dim, device))
        own = teacher.clone()
        low = torch.nonzero(t < t_star).squeeze(-1)
        if low.numel() == 0:
            return x, own
        was_training = model.training
        model.eval()
        with torch.no_grad():
            star = torch.full_like(t[low], t_star)
            own[low] = self.denoise(model, x[low], star, mask[low], None if cond is None else cond[low],
                                    None if uncond is None else uncond[low])
        model.train(was_training)
        x = x.clone()
        x[low] = diffusion.q_sample(own[low], t[low], random.noise(frames, dim, device, low.tolist()))
        return x, own

    def alignment_loss(self, normalizer: Normalizer, pred: Tensor, joints: Tensor, batch: Batch) -> Tensor:
        """Representation alignment: pull the predicted rotation, local-velocity and foot-contact slices toward the
        features of the predicted joints moved onto their keypoint rays (re-encoded without gradient).

        With several views the target is the point nearest to all of a joint's rays (:func:`nearest_point_to_rays`).
        Joints without a keypoint (confidence 0 in every view) stay where they are. Each item is re-encoded over its
        real frames only.

        Args:
            pred: (B, T, D) normalized prediction. joints: (B, T, J, 3) its decoded joints (metres).
        Returns:
            0-d masked mean squared error over the aligned slices (normalized units).
        """
        layout = self.layout
        with torch.no_grad():
            weight = view_weight(batch.confidence, torch.ones_like(batch.mask), batch.view_mask)  # (B, V, T, J)
            moved = nearest_point_to_rays(joints, batch.keypoints, weight, batch.R, batch.t,
                                          min_depth=self.two_d.min_depth)
            moved = torch.where((weight > 0).any(1)[..., None], moved, joints)
            target = torch.zeros_like(pred)
            for i, length in enumerate(batch.mask.sum(1).tolist()):
                features = encode(moved[i, :length], self.skeleton, contact_threshold=self.contact_threshold,
                                  facing_sigma=self.facing_sigma)
                target[i, :length] = normalizer.normalize(features)
        slots = torch.zeros(layout.dim, dtype=torch.bool, device=pred.device)
        for part in (layout.rot6d, layout.local_velocity, layout.foot_contacts):
            slots[part] = True
        return masked_mse(pred[..., slots], target[..., slots], batch.mask)


OBJECTIVES: dict[str, type[FeatureObjective] | type[ReprojectionObjective]] = {
    "3d": FeatureObjective,
    "teacher": FeatureObjective,
    "2d": ReprojectionObjective,
}
"""The objective class of each supervision mode (``train.supervision``)."""


def build_objective(config: Config, text_encoder: TextEncoder | None, device: torch.device,
                    autocast: torch.dtype | None = None) -> Objective:
    """The objective of ``config.train.supervision``, bound to its config sections, the text encoder, the device and
    the autocast dtype of the forward passes (None: fp32).

    Raises:
        ValueError: no objective for that supervision mode.
    """
    mode = config.train.supervision
    if mode not in OBJECTIVES:
        raise ValueError(f"no objective for supervision {mode!r}; expected one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[mode](config, Denoise(text_encoder, device, autocast))
