"""Built-in synthetic videos: textured shapes moving over a textured, possibly moving background.

Everything is analytic and seeded, so each clip comes with exact ground-truth optical flow for any
frame pair and an exact per-pixel layer map (which object is on top), and two labels:

* ``motion_label`` (8 classes): the main object's direction (right, down, left, up) x speed
  (slow, fast). Appearance says nothing about it.
* ``appearance_label`` (4 classes): the main object's shape (disc, square, triangle, ring).
  Motion says nothing about it.

Objects move with constant velocity, so the flow from frame ``s`` to frame ``d`` at pixel ``p`` of
frame ``s`` is ``(d - s) * v(layer on top at p in frame s)`` (docs/design.md, flow convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MOTION_CLASSES = [f"{d}-{s}" for d in ("right", "down", "left", "up") for s in ("slow", "fast")]
APPEARANCE_CLASSES = ["disc", "square", "triangle", "ring"]


@dataclass
class Layer:
    shape: int  # index into APPEARANCE_CLASSES
    center: np.ndarray  # (2,) x, y at frame 0, pixels
    velocity: np.ndarray  # (2,) vx, vy in pixels per frame
    radius: float
    colors: np.ndarray  # (2, 3) stripe colours in [0, 1]
    freq: float  # stripe frequency (cycles per pixel)
    angle: float  # stripe orientation


@dataclass
class SyntheticClip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    layers: np.ndarray  # int8 (T, H, W): 0 = background, i >= 1 = object i (top-most)
    velocities: np.ndarray  # float32 (num_layers + 1, 2): background first, in px/frame
    motion_label: int
    appearance_label: int
    # with SyntheticVideos(encode="h264"): the frames are the decoded ones and this holds the
    # codec's motion vectors (mgmae.flow.codec.CodecMotion), for flow.name=codec
    codec_motion: Any = None

    def flow(self, src: int, dst: int) -> torch.Tensor:
        """Ground-truth flow ``(2, H, W)`` from frame ``src`` to frame ``dst`` on ``src``'s grid."""
        v = torch.from_numpy(self.velocities)[torch.from_numpy(self.layers[src]).long()]  # [H, W, 2]
        return (v * float(dst - src)).permute(2, 0, 1).contiguous()  # [2, H, W]


def _encoded(clip: SyntheticClip) -> SyntheticClip:
    """``clip`` through H.264 (libx264's defaults) and back, with the decoder's motion vectors."""
    import os
    import tempfile
    from dataclasses import replace

    from mgmae.data.video import open_video, write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(os.path.join(tmp, "clip.mp4"), clip.frames)
        with open_video(path, export_mvs=True) as v:
            frames = v.get_frames(range(len(clip.frames)))
            motion = v.motion
    motion.path = "synthetic clip (H.264)"
    return replace(clip, frames=frames, codec_motion=motion)


def _inside(shape: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == 0:  # disc
        return dx**2 + dy**2 <= r**2
    if shape == 1:  # square
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == 2:  # upward triangle
        return (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    d2 = dx**2 + dy**2  # ring
    return (d2 <= r**2) & (d2 >= (0.5 * r) ** 2)


def _stripes(dx: np.ndarray, dy: np.ndarray, layer: Layer) -> np.ndarray:
    u = dx * math.cos(layer.angle) + dy * math.sin(layer.angle)
    s = 0.5 + 0.5 * np.sin(2 * math.pi * layer.freq * u)  # [H, W] in [0, 1]
    return layer.colors[0] * s[..., None] + layer.colors[1] * (1 - s[..., None])  # [H, W, 3]


_RENDERED: dict[tuple, list[SyntheticClip]] = {}  # process-wide, see SyntheticVideos.cache_all
_RENDERED_KEEP = 4


class SyntheticVideos:
    """Deterministic generator: ``videos[i]`` is the same :class:`SyntheticClip` for the same seed."""

    def __init__(self, num_videos: int = 256, num_frames: int = 16, img_size: int = 64,
                 seed: int = 0, num_distractors: tuple[int, int] = (0, 1),
                 background_motion: float = 0.5, encode: str | None = None, speed: float = 1.0):
        if not speed > 0:
            raise ValueError(f"speed (data.synthetic_speed) must be > 0, got {speed}")
        self.speed = float(speed)  # every velocity (objects, background) x this; 1: the built-in speeds
        self.num_videos = num_videos
        self.num_frames = num_frames
        self.img_size = img_size
        self.seed = seed
        self.num_distractors = num_distractors
        self.background_motion = background_motion  # probability that the background moves
        if encode not in (None, "h264"):
            raise ValueError(f"encode must be None or 'h264', got {encode!r}")
        # "h264": each clip goes through libx264 (its default settings) and back, as a real video
        # would: the frames are the decoded ones and clip.codec_motion holds the motion vectors
        self.encode = encode

    def __len__(self) -> int:
        return self.num_videos

    def cache_all(self, max_bytes: int = 1 << 30, progress: bool = False) -> bool:
        """Render every clip once and keep it (forked loader workers share the memory), when the
        whole set fits in ``max_bytes``; rendering costs ~10 ms per 16x64x64 clip, every epoch
        otherwise. The last few rendered sets are also kept per process, so a process that runs many
        short jobs on the same videos (``mgmae study``) renders them once. Returns whether the
        cache was built."""
        per_clip = self.num_frames * self.img_size**2 * 4  # uint8 RGB frames + int8 layer map
        if self.num_videos * per_clip > max_bytes:
            return False
        key = (self.num_videos, self.num_frames, self.img_size, self.seed, tuple(self.num_distractors),
               self.background_motion, self.encode, self.speed)
        if key not in _RENDERED:  # a process running many short jobs (mgmae study) renders once
            from tqdm.auto import tqdm

            clips = [self._render(i) for i in tqdm(range(self.num_videos), desc="rendering synthetic videos",
                                                   disable=not progress, leave=False)]
            while len(_RENDERED) >= _RENDERED_KEEP:
                _RENDERED.pop(next(iter(_RENDERED)))
            _RENDERED[key] = clips
        self._cache = _RENDERED[key]
        return True

    def _layer(self, rng: np.random.Generator, shape: int, velocity: np.ndarray, radius: float) -> Layer:
        S, T = self.img_size, self.num_frames
        lo, hi = [], []
        for k in range(2):  # keep the centre inside the frame for the whole clip
            travel = velocity[k] * (T - 1)
            a, b = max(radius * 0.6, radius * 0.6 - travel), min(S - radius * 0.6, S - radius * 0.6 - travel)
            lo.append(a)
            hi.append(max(a, b))
        center = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])])
        colors = rng.uniform(0.05, 0.95, size=(2, 3))
        colors[1] = 1.0 - colors[0] * rng.uniform(0.3, 0.8)  # contrasting stripes
        return Layer(shape, center, velocity, radius, colors.clip(0, 1),
                     freq=rng.uniform(0.04, 0.08) * 64 / S,  # stripes of 12-25 px at 64x64
                     angle=rng.uniform(0, math.pi))

    def __getitem__(self, index: int) -> SyntheticClip:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"synthetic video index {index} out of range [0, {self.num_videos})")
        cache = getattr(self, "_cache", None)
        return cache[index] if cache is not None else self._render(index)

    def _render(self, index: int) -> SyntheticClip:
        clip = self._draw(index)
        return _encoded(clip) if self.encode else clip

    def _draw(self, index: int) -> SyntheticClip:
        rng = np.random.default_rng([self.seed, index])
        S, T = self.img_size, self.num_frames
        scale = S / 64.0
        move = scale * self.speed  # (the random draws do not depend on speed: speed 1 is as before)
        # main object: the labels
        motion = int(rng.integers(len(MOTION_CLASSES)))
        shape = int(rng.integers(len(APPEARANCE_CLASSES)))
        direction, fast = divmod(motion, 2)
        speed = (rng.uniform(1.6, 2.2) if fast else rng.uniform(0.5, 1.0)) * move
        angle = direction * math.pi / 2 + rng.uniform(-0.25, 0.25)  # right, down, left, up
        v_main = np.array([math.cos(angle), math.sin(angle)]) * speed
        layers = []
        for _ in range(int(rng.integers(self.num_distractors[0], self.num_distractors[1] + 1))):
            v = rng.uniform(-1.0, 1.0, size=2) * move
            layers.append(self._layer(rng, int(rng.integers(4)), v, rng.uniform(7, 10) * scale))
        layers.append(self._layer(rng, shape, v_main, rng.uniform(12, 17) * scale))  # on top
        # background: two smooth coloured gratings (periods of 33-100 px at 64x64, longer than the
        # ~24 px between visible cubes at 90% masking, so hidden cubes are predictable from visible
        # ones), moving with probability background_motion
        vb = rng.uniform(-0.6, 0.6, size=2) * move if rng.random() < self.background_motion else np.zeros(2)
        g_freq = rng.uniform(0.01, 0.03, size=2) * 64 / S
        g_angle = rng.uniform(0, math.pi, size=2)
        g_col = rng.uniform(0.1, 0.9, size=(3, 3))

        ys, xs = np.mgrid[0:S, 0:S].astype(np.float64) + 0.5  # pixel centres
        frames = np.empty((T, S, S, 3), dtype=np.uint8)
        layer_map = np.zeros((T, S, S), dtype=np.int8)
        for t in range(T):
            bx, by = xs - vb[0] * t, ys - vb[1] * t
            img = np.broadcast_to(g_col[0], (S, S, 3)).copy()
            for k in range(2):
                u = bx * math.cos(g_angle[k]) + by * math.sin(g_angle[k])
                img += (g_col[k + 1] - 0.5) * np.sin(2 * math.pi * g_freq[k] * u)[..., None] * 0.6
            for i, layer in enumerate(layers, start=1):
                c = layer.center + layer.velocity * t
                dx, dy = xs - c[0], ys - c[1]
                inside = _inside(layer.shape, dx, dy, layer.radius)
                img[inside] = _stripes(dx, dy, layer)[inside]
                layer_map[t][inside] = i
            frames[t] = (img.clip(0, 1) * 255 + 0.5).astype(np.uint8)
        velocities = np.stack([vb] + [layer.velocity for layer in layers]).astype(np.float32)
        return SyntheticClip(frames, layer_map, velocities, motion, shape)


class SyntheticDataset(torch.utils.data.Dataset):
    """Torch dataset over :class:`SyntheticVideos` through the shared view/mask pipeline.

    Items: ``{"video": (S, C, T, H, W), "mask": (S, N) if a masker is given, "label",
    "motion_label", "appearance_label", "index"}`` with ``S = num_sample`` augmented views.
    ``label`` is the motion or appearance label, as chosen by ``label``.
    """

    def __init__(self, videos: SyntheticVideos, *, masker=None, num_sample: int = 1,
                 scales=(1.0, 0.875, 0.75, 0.66), flip: bool = False, train: bool = True,
                 label: str = "motion", gt_flow: bool = False, codec_flow: bool = False,
                 seed: int = 0):
        self.videos = videos
        self.masker = masker
        self.num_sample = num_sample
        self.scales = scales
        self.flip = flip
        self.train = train
        self.label = label
        self.gt_flow = gt_flow  # give motion-guided maskers the exact flow instead of estimating it
        if codec_flow and getattr(videos, "encode", None) is None:
            raise ValueError("codec_flow needs encoded synthetic videos (SyntheticVideos(encode='h264'), "
                             "data.synthetic_encode=true)")
        self.codec_flow = codec_flow  # ... or the codec's flow of the encoded clips
        self.seed = seed
        self.epoch = 0
        self.num_classes = len(MOTION_CLASSES if label == "motion" else APPEARANCE_CLASSES)
        self.class_names = MOTION_CLASSES if label == "motion" else APPEARANCE_CLASSES

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation and masks of an item are a function of (seed, epoch, index)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        from mgmae.data.pipeline import make_views, sample_seed
        from mgmae.data.transforms import center_crop_params, multiscale_crop_params

        clip = self.videos[index]
        S = self.videos.img_size
        seed = sample_seed(self.seed, self.epoch, index)
        generator = torch.Generator().manual_seed(seed)
        if self.train:
            rng = np.random.default_rng(seed)
            params = [multiscale_crop_params(S, S, S, self.scales, self.flip, rng=rng)
                      for _ in range(self.num_sample)]
        else:
            params = [center_crop_params(S, S, S)] * self.num_sample
        flow_fn = clip.flow if self.gt_flow else None
        if self.codec_flow:
            from mgmae.flow.codec import ClipCodecFlow

            flow_fn = ClipCodecFlow(clip.codec_motion, range(len(clip.frames)))
        video, mask = make_views(clip.frames, params, self.masker, flow_fn=flow_fn, generator=generator)
        item = {"video": video, "label": clip.motion_label if self.label == "motion" else clip.appearance_label,
                "motion_label": clip.motion_label, "appearance_label": clip.appearance_label,
                "index": index}
        if mask is not None:
            item["mask"] = mask
        return item


def synthetic_videos(d, num_videos: int | None = None, seed_offset: int = 0,
                     encode: bool | None = None) -> SyntheticVideos:
    """The built-in videos a ``DataConfig`` names: ``data.synthetic_videos`` (or ``num_videos``)
    videos of seed ``data.synthetic_seed + seed_offset`` (1: the held-out ones), the config's clip
    shape and ``data.synthetic_speed``; ``encode`` (default ``data.synthetic_encode``) passes them
    through H.264. Every command builds its synthetic videos here."""
    enc = getattr(d, "synthetic_encode", False) if encode is None else encode
    return SyntheticVideos(d.synthetic_videos if num_videos is None else num_videos, d.num_frames,
                           d.img_size, seed=d.synthetic_seed + seed_offset,
                           encode="h264" if enc else None, speed=getattr(d, "synthetic_speed", 1.0))
