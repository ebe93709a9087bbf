"""Clip transforms. Spatial transforms are split in two: *sample* parameters once, then *apply* them
to the frames and, identically, to an optical-flow field (vectors rescaled with the resize and x
negated on a horizontal flip), so the repeated-augmentation crops of one video share one flow
computation (docs/design.md, section 3: where flow is computed).

Frames enter as ``uint8 (T, H, W, 3)`` (what decoders give) and leave as ImageNet-normalized
``float32 (C, T, H, W)``.
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# the one definition; the model (denormalize) and the motion-guided masker (flow input) import it
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


def as_frames(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Decoded frames as a tensor, checked to be ``(T, H, W, 3)``."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    return frames


def to_float_frames(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``uint8 (T, H, W, 3) -> float (T, 3, H, W)`` in ``[0, 1]``."""
    return as_frames(frames).permute(0, 3, 1, 2).float().div_(255.0)


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


def random_resized_crop_params(height: int, width: int, out_size: int | tuple[int, int],
                               scale: Sequence[float] = (0.08, 1.0),
                               ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = False,
                               rng: np.random.Generator | None = None) -> CropParams:
    """The random resized crop of the official VideoMAE / MGMAE fine-tuning (Inception's): a box
    of area ``scale`` x the frame's and aspect ``ratio`` (log-uniform), 10 tries, else the
    largest centred box within ``ratio``; then resized to ``out_size``, flipped with probability
    0.5 if ``flip``. The same box for every frame of the clip."""
    rng = rng or np.random.default_rng()
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"random resized crop: scale {tuple(scale)} must be in (0, 1] and ordered, "
                         f"ratio {tuple(ratio)} positive and ordered")
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:  # the largest centred box whose aspect is within ratio
        aspect = width / height
        if aspect < ratio[0]:
            w, h = width, int(round(width / ratio[0]))
        elif aspect > ratio[1]:
            h, w = height, int(round(height * ratio[1]))
        else:
            h, w = height, width
        top, left = (height - h) // 2, (width - w) // 2
    do_flip = bool(flip and rng.random() < 0.5)
    return CropParams(top, left, h, w, out_h, out_w, do_flip)


def scale_crop_params(p: CropParams, sy: float, sx: float, height: int, width: int) -> CropParams:
    """The crop box of ``p`` on a frame resized by ``(sy, sx)`` to ``height x width`` (rounded to whole
    pixels, kept inside the frame); the output size is unchanged."""
    top, left = min(int(round(p.top * sy)), height - 1), min(int(round(p.left * sx)), width - 1)
    h = max(1, min(int(round(p.height * sy)), height - top))
    w = max(1, min(int(round(p.width * sx)), width - left))
    return CropParams(top, left, h, w, p.out_h, p.out_w, p.flip)


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


def crop_resize_frames(frames: torch.Tensor | np.ndarray, p: CropParams) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` -> cropped, resized, flipped ``float (T, 3, h, w)`` in ``[0, 1]``.

    The crop is taken first and the resize runs on the uint8 pixels (channels-last, antialiased
    when shrinking), as torchvision's ``v2.Resize`` does for uint8 tensors: ~3x less CPU than
    resizing the float frames, and within one grey level of it."""
    frames = as_frames(frames)
    if frames.dtype != torch.uint8:
        return _crop_resize(to_float_frames(frames), p).clamp_(0, 1)
    x = frames[:, p.top:p.top + p.height, p.left:p.left + p.width].permute(0, 3, 1, 2)  # [T, 3, h, w]
    if (p.height, p.width) != (p.out_h, p.out_w):
        x = F.interpolate(x, size=(p.out_h, p.out_w), mode="bilinear", align_corners=False,
                          antialias=p.height > p.out_h or p.width > p.out_w)
    x = x.float().div_(255.0)
    return x.flip(-1) if p.flip else x


def apply_frames(frames: torch.Tensor | np.ndarray, p: CropParams) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` -> cropped, resized, flipped, normalized ``float (3, T, h, w)``."""
    return normalize(crop_resize_frames(frames, p))


def apply_flow(flow: torch.Tensor, p: CropParams) -> torch.Tensor:
    """The same crop/resize/flip on a flow field ``(N, 2, H, W)`` (pixels, x then y): vectors are
    scaled by the resize factors and x is negated on a horizontal flip."""
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (N, 2, H, W), got {tuple(flow.shape)}")
    flow = flow.float()
    sx, sy = p.out_w / p.width, p.out_h / p.height
    if (flow.device.type == "cpu" and p.height <= p.out_h and p.width <= p.out_w
            and (p.height, p.width) != (p.out_h, p.out_w) and flow.shape[0] * p.out_h * p.out_w <= _SMALL
            and not (torch.is_grad_enabled() and flow.requires_grad)):
        # a small upsampling (the loader's coarse flows, e.g. codec cells -> map cells): one
        # compiled pass, torch's formula (equal within float32 rounding) without its dispatch
        from mgmae.kernels import crop_resize_flow

        return torch.from_numpy(crop_resize_flow(
            flow.numpy(), p.top, p.left, p.height, p.width, p.out_h, p.out_w, p.flip,
            np.float32(-sx if p.flip else sx), np.float32(sy)))
    out = _crop_resize(flow, p)  # [N, 2, h, w]
    scale = out.new_tensor([-sx if p.flip else sx, sy]).view(1, 2, 1, 1)
    return out * scale


_SMALL = 1 << 18  # output positions x frames up to which apply_flow's compiled path is used


# ------------------------------------------------------------------ test-time views (added for data)
def spatial_crop_params(height: int, width: int, out_size: int | tuple[int, int],
                        num_crops: int = 1, short_side: int | None = None) -> list[CropParams]:
    """Multi-view test crops: resize the short side to ``short_side`` (default: the output size)
    and take ``num_crops`` crops of the output size spread evenly along the long side (3:
    left/centre/right or top/middle/bottom, VideoMAE's three-crop test); one crop is the centre
    crop. Expressed as crop boxes on the original frame (crop, then resize), which is the same
    thing as resize-then-crop."""
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    center = center_crop_params(height, width, out_size)
    out_h, out_w = center.out_h, center.out_w
    if short_side is not None and short_side != min(out_h, out_w):
        if short_side < max(out_h, out_w):
            raise ValueError(f"data.short_side_size={short_side} is smaller than the crop "
                             f"{out_h}x{out_w}")
        f = min(height, width) / short_side  # original pixels per resized pixel
        ch, cw = min(height, int(round(out_h * f))), min(width, int(round(out_w * f)))
        center = CropParams((height - ch) // 2, (width - cw) // 2, ch, cw, out_h, out_w)
    if num_crops == 1:
        return [center]
    slack_y, slack_x = height - center.height, width - center.width
    out = []
    for i in range(num_crops):
        f = i / (num_crops - 1)
        top = int(round(f * slack_y)) if slack_y > slack_x else center.top
        left = int(round(f * slack_x)) if slack_x >= slack_y else center.left
        out.append(CropParams(top, left, center.height, center.width, center.out_h, center.out_w))
    return out


# ---------------------------------------------------------------- fine-tuning augmentation hook
class VideoAugment:
    """Fine-tuning augmentation, a hook for ``VideoDataset(augment=...)``: ``(frames uint8 (T, H, W, 3),
    crop, rng) -> float (3, T, h, w)``. Crop/resize/flip as :func:`apply_frames`, then

    * RandAugment (torchvision ``v2.RandAugment``), the *same* operations for every frame of the
      view; ``rand_augment`` takes timm's notation ``"rand-m7-n4-mstd0.5-inc1"`` (``m``: magnitude
      0..10, ``n``: operations; ``mstd``/``inc`` are accepted and ignored) or None;
    * random erasing with probability ``erase_prob`` of one box (area 2%..33%, aspect 0.3..3.3) at
      the same place in every frame, filled with per-pixel normal noise (``erase_mode="pixel"``),
      per-channel noise (``"rand"``) or zeros, i.e. the mean (``"const"``), after normalization.

    Randomness comes only from ``rng``, so a sample's augmentation is reproducible.
    """

    def __init__(self, rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1", erase_prob: float = 0.25,
                 erase_mode: str = "pixel"):
        if erase_mode not in ("pixel", "rand", "const"):
            raise ValueError(f"erase_mode must be pixel, rand or const, got {erase_mode!r}")
        self.rand_augment = rand_augment
        self.erase_prob = float(erase_prob)
        self.erase_mode = erase_mode
        self._ra = None
        if rand_augment:
            from torchvision.transforms import v2

            magnitude, num_ops = parse_rand_augment(rand_augment)
            self._ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=11)

    def __repr__(self) -> str:
        return (f"VideoAugment(rand_augment={self.rand_augment!r}, erase_prob={self.erase_prob}, "
                f"erase_mode={self.erase_mode!r})")

    def __call__(self, frames: torch.Tensor | np.ndarray, p: CropParams,
                 rng: np.random.Generator) -> torch.Tensor:
        x = crop_resize_frames(frames, p)  # [T, 3, h, w]
        if self._ra is not None:
            x8 = x.mul(255).round_().to(torch.uint8)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**62)))
                x8 = self._ra(x8)  # one draw of operations for the whole [T, 3, h, w] stack
            x = x8.float().div_(255)
        x = normalize(x)  # [3, T, h, w]
        if self.erase_prob > 0 and rng.random() < self.erase_prob:
            x = random_erase(x, rng, mode=self.erase_mode)
        return x


def parse_rand_augment(spec: str) -> tuple[int, int]:
    """timm-style ``"rand-m9-n2-..."`` -> ``(magnitude, num_ops)`` (defaults 9 and 2)."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"rand_augment must look like 'rand-m7-n4', got {spec!r}")
    magnitude, num_ops = 9, 2
    for part in parts[1:]:
        key = part.rstrip("0123456789.")
        value = part[len(key):]
        if key == "m":
            magnitude = int(float(value))
        elif key == "n":
            num_ops = int(value)
        elif key not in ("mstd", "mmax", "inc", "w", "p"):
            raise ValueError(f"unknown RandAugment option {part!r} in {spec!r}")
    if not 0 <= magnitude <= 10:
        raise ValueError(f"RandAugment magnitude must be in 0..10, got {magnitude} in {spec!r}")
    return magnitude, num_ops


def random_erase(x: torch.Tensor, rng: np.random.Generator, mode: str = "pixel",
                 area: tuple[float, float] = (0.02, 1 / 3),
                 aspect: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Erase one random box of a normalized clip ``(C, T, H, W)``, the same box in every frame."""
    C, T, H, W = x.shape
    for _ in range(10):
        target = rng.uniform(*area) * H * W
        ratio = float(np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]))))
        h, w = int(round((target * ratio) ** 0.5)), int(round((target / ratio) ** 0.5))
        if 0 < h < H and 0 < w < W:
            top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            if mode == "pixel":
                fill = torch.from_numpy(rng.standard_normal((C, T, h, w), dtype=np.float32))
            elif mode == "rand":
                fill = torch.from_numpy(rng.standard_normal((C, 1, 1, 1), dtype=np.float32))
            else:
                fill = torch.zeros(())
            x = x.clone()
            x[:, :, top:top + h, left:left + w] = fill.to(x.dtype)
            return x
    return x
