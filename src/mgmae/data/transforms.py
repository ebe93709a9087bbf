"""Clip transforms. Spatial transforms are split in two: *sample* parameters once, then *apply* them
to the frames and, identically, to an optical-flow field (vectors rescaled with the resize and x
negated on a horizontal flip), so the repeated-augmentation crops of one video share one flow
computation (DESIGN.md section 2).

Frames enter as ``uint8 (T, H, W, 3)`` (what decoders give) and leave as ImageNet-normalized
``float32 (C, T, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropParams:
    top: int
    left: int
    height: int
    width: int
    out_h: int
    out_w: int
    flip: bool = False


def to_float_frames(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``uint8 (T, H, W, 3) -> float (T, 3, H, W)`` in ``[0, 1]``."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``float (T, 3, H, W)`` in ``[0, 1]`` -> ImageNet-normalized ``(3, T, H, W)``."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).transpose(0, 1).contiguous()


def multiscale_crop_params(height: int, width: int, out_size: int | tuple[int, int],
                           scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
                           flip: bool = False, max_distort: int = 1,
                           rng: np.random.Generator | None = None) -> CropParams:
    """VideoMAE's multi-scale crop: crop sides drawn from ``scales`` of the short side (aspect
    distortion of at most ``max_distort`` scale steps), the crop placed at one of 13 fixed
    positions (corners, centre, edge midpoints, quarter points), then resized to ``out_size``."""
    rng = rng or np.random.default_rng()
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [out_h if abs(s - out_h) < 3 else s for s in sizes]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[rng.integers(len(pairs))]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    dy, dx = (height - crop_h) / 4, (width - crop_w) / 4
    positions = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4),
                 (1, 1), (1, 3), (3, 1), (3, 3)]
    qy, qx = positions[rng.integers(len(positions))]
    do_flip = bool(flip and rng.random() < 0.5)
    return CropParams(int(qy * dy), int(qx * dx), crop_h, crop_w, out_h, out_w, do_flip)


def center_crop_params(height: int, width: int, out_size: int | tuple[int, int]) -> CropParams:
    """Largest centred crop with the output's aspect ratio, resized to ``out_size``."""
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    s = min(height / out_h, width / out_w)
    ch, cw = int(round(out_h * s)), int(round(out_w * s))
    return CropParams((height - ch) // 2, (width - cw) // 2, ch, cw, out_h, out_w)


def _crop_resize(x: torch.Tensor, p: CropParams) -> torch.Tensor:
    x = x[..., p.top:p.top + p.height, p.left:p.left + p.width]  # [T, C, h, w]
    if (p.height, p.width) != (p.out_h, p.out_w):
        x = F.interpolate(x, size=(p.out_h, p.out_w), mode="bilinear", align_corners=False,
                          antialias=p.height > p.out_h or p.width > p.out_w)
    return x.flip(-1) if p.flip else x


def apply_frames(frames: torch.Tensor | np.ndarray, p: CropParams) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` -> cropped, resized, flipped, normalized ``float (3, T, h, w)``."""
    x = _crop_resize(to_float_frames(frames), p)  # [T, 3, h, w]
    return normalize(x.clamp_(0, 1))


def apply_flow(flow: torch.Tensor, p: CropParams) -> torch.Tensor:
    """The same crop/resize/flip on a flow field ``(N, 2, H, W)`` (pixels, x then y): vectors are
    scaled by the resize factors and x is negated on a horizontal flip."""
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (N, 2, H, W), got {tuple(flow.shape)}")
    out = _crop_resize(flow.float(), p)  # [N, 2, h, w]
    sx, sy = p.out_w / p.width, p.out_h / p.height
    scale = out.new_tensor([-sx if p.flip else sx, sy]).view(1, 2, 1, 1)
    return out * scale
