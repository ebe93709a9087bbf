"""``mgmae masks``: draw what a masker does to real or synthetic clips.

::

    mgmae masks VIDEO_OR_DATASET [-c RECIPE] [key=value ...] [--masker motion_guided|tube|random]
                [--flow dis|farneback|raft_small|raft_large|zero|gt|codec] [--num-frames 16] [--img-size 64]
                [--patch-size 8] [--mask-ratio 0.9] [--base-frame middle] [--init-map mix_gauss]
                [--clips 4] [--stride 2] [-o out/] [--quiet]

The masker and its clips are described by a config like every command's (``-c RECIPE`` then
``key=value``: ``masking.*``, ``flow.*``, ``data.num_frames``, ``data.img_size``, ``model.name``
for the patch size ...), so ``-c pretrain_vit_base_ssv2_cpu_flow`` draws that recipe's masks;
each flag is an alias of one key (:data:`ALIASES`) and wins over both. Without ``-c`` the clips
are the demo's, the defaults of :mod:`mgmae.config` (``configs/demo.yaml``): 16 frames of 64 px,
8-pixel patches (``mae_vit_nano_patch8``); ``-c pretrain_vit_base_ssv2`` (or ``data.img_size=224
model.name=mae_vit_base_patch16``) draws ViT-B/16's 224 px clips.

``VIDEO_OR_DATASET`` is a video file, a frame folder, a folder of videos, a folder-per-class tree,
a list file (the formats of :func:`mgmae.data.datasets.parse_list`), or the word ``synthetic``
(the built-in moving shapes, where ``--flow gt`` uses their exact optical flow). ``--flow codec``
uses the motion vectors of the video files (``flow.name=codec``).

For every clip it writes ``<name>.png`` (a strip of every ``--frame-step``-th frame per row) and
``<name>.gif`` (all frames, the rows side by side) and prints their paths (a progress bar on a
terminal; ``--quiet``: the paths alone). Rows, for the
motion-guided masker:

1. the input clip (centre crop, resized to ``--img-size``), the base frame marked;
2. motion-guided masking: hidden cubes darkened, visible cubes bright;
3. the propagated mask map (what the cube scores are summed from), as a heat map normalised per clip;
4. the optical flow ``flow(t, t+1)`` as a colour wheel (hue = direction, saturation = speed);
5. tube masking of the same clip for comparison, drawn from the same random numbers, so its visible
   set equals the motion-guided one on the base frame (with ``mix_gauss`` / ``token_rand``).

Also usable from Python: :func:`render_clip` returns the rows for frames you already have.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mgmae.commands import add_common_flags, add_config_args, command, show_progress, split_positionals
from mgmae.config import DATA_FLOWS
from mgmae.flow import list_flows
from mgmae.masking import MOTION_GUIDED_CHOICES, list_maskers


__all__ = ["cli_main", "build_parser", "render_clip", "load_clips", "Clip"]


@dataclass
class Clip:
    name: str  # used for the file names
    frames: np.ndarray  # uint8 (T, H, W, 3), any size (cropped and resized by render_clip)
    label: str  # shown in the first row's title
    flow_fn: Callable | None = None  # ground truth (src, dst) -> (2, H, W) on the original grid


# ---------------------------------------------------------------------------------- input
def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.strip("._") or "clip"


def _codec_flow_fn(motion, idx) -> Callable:
    """The codec flow of one clip as ``(src, dst) -> (2, H, W)`` in pixels on the frames' grid (for
    the pictures; training never expands it to full resolution)."""
    from mgmae.flow.codec import CELL, ClipCodecFlow

    cells = ClipCodecFlow(motion, idx)
    H, W = motion.size

    def flow_fn(s: int, d: int) -> torch.Tensor:
        f = cells(s, d).repeat_interleave(CELL, 1).repeat_interleave(CELL, 2)
        return f[:, :H, :W] * CELL

    return flow_fn


def _video_clips(path: str, num_frames: int, stride: int, clips: int, backend: str,
                 codec: bool = False) -> list[Clip]:
    """``clips`` clips spread uniformly over one video (the first starts at frame 0, the last ends
    at the last frame). ``codec``: with the codec flow of each clip (``flow.name=codec``)."""
    from mgmae.data.sampling import clip_indices, test_clip_starts
    from mgmae.data.video import open_video

    out = []
    with open_video(path, backend, export_mvs=codec) as reader:
        n = len(reader)
        starts = sorted(set(test_clip_starts(n, num_frames, stride, clips)))
        stem = _safe(Path(path).stem if not os.path.isdir(path) else Path(path).name)
        for s in starts:
            idx = clip_indices(s, n, num_frames, stride, pad="loop")
            frames = reader.get_frames(idx)
            looped = bool((np.diff(idx) < 0).any())
            flow_fn = None
            if codec:
                motion = getattr(reader, "motion", None)
                if motion is None or motion.num_vectors == 0:
                    raise ValueError(f"{path}: flow.name=codec needs motion vectors, but this video gives "
                                     f"none (a frame folder, an all-intra or MJPEG stream, or a backend "
                                     f"other than pyav)")
                flow_fn = _codec_flow_fn(motion, idx)
            out.append(Clip(f"{stem}_f{s:05d}", frames,
                            f"{Path(path).name} frames {s}..{int(idx[-1])} every {stride}"
                            + (f" (looped: the video has {n} frames)" if looped else ""), flow_fn))
    return out


def _dataset_videos(source: str, root: str | None) -> list[str]:
    """Video paths of a folder of videos, a folder-per-class tree or a list file."""
    from mgmae.data.datasets import load_entries
    from mgmae.data.video import VIDEO_EXTENSIONS

    if os.path.isdir(source):
        files = sorted(e.path for e in os.scandir(source)
                       if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(VIDEO_EXTENSIONS))
        if files:
            return files
    entries, _ = load_entries(source, root=root)
    return [e.path for e in entries]


def _is_frame_folder(path: str) -> bool:
    from mgmae.data.video import IMAGE_EXTENSIONS

    return os.path.isdir(path) and any(e.name.lower().endswith(IMAGE_EXTENSIONS) for e in os.scandir(path))


def load_clips(source: str, *, num_frames: int = 16, stride: int = 2, clips: int = 4, img_size: int = 224,
               seed: int = 0, root: str | None = None, backend: str = "pyav", codec: bool = False,
               speed: float = 1.0) -> list[Clip]:
    """The clips ``mgmae masks`` draws: ``clips`` clips of one video, or one centred clip from each of
    ``clips`` videos spread evenly over a dataset, or ``clips`` synthetic videos. ``codec``: each
    video clip carries its codec flow (``Clip.flow_fn``)."""
    from mgmae.data.video import VIDEO_EXTENSIONS, VideoError

    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    if source == "synthetic":
        from mgmae.data.synthetic import MOTION_CLASSES, SyntheticVideos

        videos = SyntheticVideos(num_videos=clips, num_frames=num_frames, img_size=img_size, seed=seed,
                                 speed=speed)
        out = []
        for i in range(clips):
            c = videos[i]
            out.append(Clip(f"synthetic_{i:03d}", c.frames, f"synthetic #{i} ({MOTION_CLASSES[c.motion_label]})",
                            flow_fn=c.flow))
        return out
    if not os.path.exists(source):
        raise FileNotFoundError(f"no such video, folder or list file: {source!r} (or use the word 'synthetic')")
    if (os.path.isfile(source) and source.lower().endswith(VIDEO_EXTENSIONS)) or _is_frame_folder(source):
        return _video_clips(source, num_frames, stride, clips, backend, codec)
    from mgmae.data.video import IMAGE_EXTENSIONS

    if os.path.isfile(source) and source.lower().endswith(IMAGE_EXTENSIONS):
        raise ValueError(f"{source} is a single image; mgmae masks takes a video, a frame folder "
                         f"(a directory of the video's images), a folder of videos, a list file or "
                         f"'synthetic'")
    paths = _dataset_videos(source, root)
    if not paths:
        raise ValueError(f"{source!r}: no videos found")
    pick = sorted(set(np.linspace(0, len(paths) - 1, min(clips, len(paths))).round().astype(int).tolist()))
    out = []
    for i in pick:
        try:
            out += _video_clips(paths[i], num_frames, stride, 1, backend, codec)
        except (VideoError, OSError) as e:
            print(f"mgmae masks: skipping {paths[i]}: {e}", file=sys.stderr)
    if not out:
        raise ValueError(f"{source!r}: none of the chosen videos could be read")
    return out


# ---------------------------------------------------------------------------------- pictures
def _prepare(frames: np.ndarray, size: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``uint8 (T, H, W, 3)`` -> float ``(T, 3, size, size)`` in [0, 1] (largest centred square,
    resized) and the crop box ``(top, left, side, side)``."""
    from mgmae.data.transforms import center_crop_params, to_float_frames

    x = to_float_frames(frames)  # [T, 3, H, W]
    p = center_crop_params(x.shape[-2], x.shape[-1], size)
    x = x[..., p.top:p.top + p.height, p.left:p.left + p.width]
    if (p.height, p.width) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=p.height > size).clamp_(0, 1)
    return x, (p.top, p.left, p.height, p.width)


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """float ``(T, 3, H, W)`` in [0, 1] -> uint8 ``(T, H, W, 3)``."""
    return (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _heat(maps: torch.Tensor, cmap: str = "inferno") -> np.ndarray:
    """``(T, H, W)`` -> uint8 ``(T, H, W, 3)``, normalised by the clip's maximum."""
    import matplotlib

    m = maps.float()
    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
    rgb = matplotlib.colormaps[cmap](m.numpy())[..., :3]
    return (rgb * 255 + 0.5).astype(np.uint8)


def _masked(frames_u8: np.ndarray, mask: torch.Tensor, grid, patch: int, tubelet: int,
            outline: bool = True) -> np.ndarray:
    """Darken hidden cubes; outline visible ones in white so they read at a glance."""
    from mgmae.viz import darken, mask_to_pixels

    pm = mask_to_pixels(mask.cpu(), grid, patch, tubelet).numpy()  # [T, H, W] True = hidden
    out = darken(frames_u8, pm, 0.22)
    if outline:
        vis = ~pm
        edge = np.zeros_like(vis)
        edge[:, :, 1:] |= vis[:, :, 1:] != vis[:, :, :-1]
        edge[:, :, :-1] |= vis[:, :, 1:] != vis[:, :, :-1]
        edge[:, 1:, :] |= vis[:, 1:, :] != vis[:, :-1, :]
        edge[:, :-1, :] |= vis[:, 1:, :] != vis[:, :-1, :]
        out[edge & vis] = (255, 255, 255)
    return out


def _resize_tiles(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(T, h, w, 3)`` tiles to ``size`` px: integer factors up with nearest neighbours (crisp
    patch borders), anything else with a Lanczos filter."""
    from PIL import Image

    h = frames.shape[1]
    if size == h:
        return frames
    if size % h == 0:
        k = size // h
        return frames.repeat(k, 1).repeat(k, 2)
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in frames])


def _stamp(frames: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Write a short text in the top-left corner of each tile (white on a dark box)."""
    from PIL import Image, ImageDraw

    out = []
    for f, text in zip(frames, texts):
        if not text:
            out.append(f)
            continue
        im = Image.fromarray(f)
        d = ImageDraw.Draw(im)
        _, _, x1, y1 = d.textbbox((2, 1), text)
        d.rectangle((0, 0, x1 + 2, y1 + 2), fill=(0, 0, 0))
        d.text((2, 1), text, fill=(255, 255, 255))
        out.append(np.asarray(im))
    return np.stack(out)


def render_clip(frames: np.ndarray, *, masker: str = "motion_guided", flow: str | Callable = "dis",
                flow_size: int | None = None, flow_options: dict | None = None, gt_flow: Callable | None = None,
                num_frames: int | None = None, img_size: int = 224, patch_size: int = 16, tubelet_size: int = 2,
                mask_ratio: float = 0.9, base_frame: str = "middle", init_map: str = "mix_gauss",
                warp: str = "backward", official_compat: bool = False, direction: str | None = None,
                seed: int = 0,
                display_size: int | None = None, label: str = "", estimator=None) -> tuple[list, list, dict]:
    """Rows for one clip: ``(long_rows, short_rows, info)``, each row ``(title, uint8 (T, S, S, 3))``
    (``long_rows`` titled for the PNG strip, ``short_rows`` for the narrower GIF columns).

    ``frames``: uint8 ``(T, H, W, 3)``, centre-cropped to a square and resized to ``img_size``.
    ``gt_flow(src, dst) -> (2, H, W)``: exact flow on the original grid (used instead of ``flow``).
    ``info``: numbers about the clip (``base``, ``visible_per_slice``, ``max_flow``, ...).
    """
    from mgmae.flow import build_flow, flow_to_color
    from mgmae.flow.warp import resize_flow
    from mgmae.masking import build_masker

    T = frames.shape[0] if num_frames is None else num_frames
    if frames.shape[0] != T:
        raise ValueError(f"expected {T} frames, got {frames.shape[0]}")
    x, (top, left, side, _) = _prepare(frames, img_size)  # [T, 3, S, S]
    S = img_size
    rgb = _to_u8(x)
    common = dict(input_size=(T, S, S), patch_size=patch_size, tubelet_size=tubelet_size, mask_ratio=mask_ratio)
    info: dict = {}
    long_rows, short_rows = [], []
    stamps = [f"t={t}" for t in range(T)]

    def add(title_long, title_short, imgs):
        if display_size:
            imgs = _resize_tiles(imgs, display_size)
        long_rows.append((title_long, imgs))
        short_rows.append((title_short, imgs))

    if masker != "motion_guided":
        m = build_masker(masker, **common)
        g = torch.Generator().manual_seed(seed)
        mask = m(batch_size=1, generator=g)[0]
        vis = int((~mask).sum())
        inp = _stamp(_resize_tiles(rgb, display_size) if display_size else rgb, stamps)
        long_rows.append((f"input: {label}" if label else "input", inp))
        short_rows.append(("input", inp))
        add(f"{masker} masking, ratio {mask_ratio}: {vis} of {mask.numel()} cubes visible",
            f"{masker} masking", _masked(rgb, mask, m.grid, patch_size, tubelet_size))
        info.update(visible=vis)
        return long_rows, short_rows, info

    from mgmae.masking.motion_guided import MotionGuidedMasker

    mg = MotionGuidedMasker(**common, flow=None, base_frame=base_frame, init_map=init_map, warp=warp,
                            official_compat=official_compat, direction=direction)
    g = torch.Generator().manual_seed(seed)
    base = mg.base_index(g)
    pairs = mg.flow_pairs(base)
    needed = sorted(set(pairs) | {(t, t + 1) for t in range(T - 1)})
    with torch.no_grad():
        if gt_flow is not None:
            f = torch.stack([gt_flow(s, d) for s, d in needed]).float()  # [P, 2, H0, W0]
            f = f[..., top:top + side, left:left + side]
            if side != S:
                f = resize_flow(f, (S, S))
            flow_name = "codec" if flow == "codec" else "ground truth"
        else:
            est = estimator or build_flow(flow, size=flow_size, **(flow_options or {}))
            f = est(x[[s for s, _ in needed]], x[[d for _, d in needed]])  # [P, 2, S, S]
            flow_name = flow if isinstance(flow, str) else "custom"
            if flow_size:
                flow_name += f" @{flow_size}px"
        by_pair = {p: f[i] for i, p in enumerate(needed)}
        flows = torch.stack([by_pair[p] for p in pairs]).unsqueeze(0)  # [1, P, 2, S, S]
        init = mg.initial_map(1, S, S, g)  # [1, S, S]
        maps = mg.propagate(init, flows, base)  # [1, T, S, S]
        mask = mg.select(maps, g)[0]  # [N]
    tube = build_masker("tube", **common)
    tube_mask = tube(batch_size=1, generator=torch.Generator().manual_seed(seed))[0]

    fwd = torch.stack([by_pair[(t, t + 1)] for t in range(T - 1)])  # [T-1, 2, S, S]
    mag = fwd.norm(dim=1)
    # colours saturate at the clip's 99th-percentile speed, so one outlier (a scene cut, a flow
    # failure) does not wash everything else out; a tiny anchor vector fixes the scale
    sat = max(float(torch.quantile(mag.flatten()[::max(1, mag.numel() // 200_000)], 0.99)), 1e-3)
    clipped = fwd * (sat / mag.clamp_min(sat)).unsqueeze(1)
    anchor = torch.zeros(1, 2, S, S)
    anchor[0, 0, 0, 0] = sat
    colors = flow_to_color(torch.cat([clipped, anchor]))[:-1].permute(0, 2, 3, 1).numpy()  # [T-1, S, S, 3]
    colors = np.concatenate([colors, np.full_like(colors[:1], 255)])  # last frame: no t+1
    k = mg.k
    hw = mg.grid[1] * mg.grid[2]
    # how far the visible set moves away from tube masking: share of visible cubes not at the base's places
    vis = (~mask).reshape(mg.grid)
    moved = float((vis & ~vis[base // tubelet_size]).sum()) / float(vis.sum())
    info.update(base=base, visible_per_slice=k, tokens_per_slice=hw, max_flow=float(mag.max()),
                mean_flow=float(mag.mean()), moved_share=moved)

    base_stamps = [s + (" base" if t == base else "") for t, s in enumerate(stamps)]
    inp = rgb.copy()
    if display_size:
        inp = _resize_tiles(inp, display_size)
    inp = _stamp(inp, base_stamps)
    long_rows.append((f"input: {label}" if label else "input", inp))
    short_rows.append(("input", inp))
    compat = (", official masks" if official_compat else "") + (
        f", {mg.direction} direction" if official_compat == (mg.direction == "corrected") else "")
    add(f"motion-guided masking ({flow_name} flow{compat}): {k} of {hw} cubes visible per "
        f"{tubelet_size}-frame slice, {moved:.0%} of them moved off the base frame's places",
        "motion-guided", _masked(rgb, mask, mg.grid, patch_size, tubelet_size))
    add(f"mask map warped from base frame t={base} ({init_map}, {warp} warp), normalised per clip "
        f"(bright = visible)", "mask map", _heat(maps[0]))
    add(f"flow(t, t+1), {flow_name}: hue = direction, saturation = speed (full at {sat:.1f} px/frame; "
        f"max {float(mag.max()):.1f})", "flow(t, t+1)", colors)
    add("tube masking of the same clip (same random draw: equals motion-guided on the base frame)",
        "tube", _masked(rgb, tube_mask, tube.grid, patch_size, tubelet_size))
    return long_rows, short_rows, info


# ---------------------------------------------------------------------------------- command
# Flags that are aliases of config keys: -c RECIPE and key=value set them too, a flag wins. Without
# -c the base is the defaults: the demo's clips and model (configs/demo.yaml).
ALIASES = {"masker": "masking.name", "flow": "flow.name", "flow_size": "flow.size",
           "dis_preset": "flow.preset", "weights": "flow.weights", "num_frames": "data.num_frames",
           "img_size": "data.img_size", "tubelet_size": "model.tubelet_size",
           "mask_ratio": "masking.mask_ratio", "base_frame": "masking.base_frame",
           "init_map": "masking.init_map", "warp": "masking.warp",
           "official_compat": "masking.official_compat", "direction": "masking.direction",
           "stride": "data.sampling_rate",
           "seed": "train.seed", "root": "data.root"}

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae masks",
        description="Draw a masker's masks on clips of a video / dataset / the built-in synthetic data "
                    "(PNG strip + GIF per clip). The masker is the config's (-c RECIPE, key=value: "
                    "masking.*, flow.*, data.num_frames, data.img_size, ...); the flags below set "
                    "the same keys.")
    add_config_args(p, positionals="SOURCE")

    def alias(flag, key, **kw):
        p.add_argument(flag, default=None, help=f"= {key}" + (f": {kw.pop('help')}" if "help" in kw else ""),
                       **kw)

    alias("--masker", "masking.name", choices=list_maskers())
    alias("--flow", "flow.name", choices=[*list_flows(), *DATA_FLOWS],
          help="flow backend for motion-guided masking; 'gt' = exact flow (synthetic only)")
    alias("--flow-size", "flow.size", type=int, help="compute the flow at this short side")
    alias("--dis-preset", "flow.preset", choices=("ultrafast", "fast", "medium"))
    alias("--weights", "flow.weights", help="RAFT weight file (raft_small / raft_large)")
    alias("--num-frames", "data.num_frames", type=int)
    alias("--img-size", "data.img_size", type=int, help="default 64 without -c (the demo's)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="default: the patch size of model.name (8 without -c: the demo's nano model)")
    alias("--tubelet-size", "model.tubelet_size", type=int)
    alias("--mask-ratio", "masking.mask_ratio", type=float)
    alias("--base-frame", "masking.base_frame", choices=MOTION_GUIDED_CHOICES["base_frame"])
    alias("--init-map", "masking.init_map", choices=MOTION_GUIDED_CHOICES["init_map"])
    alias("--warp", "masking.warp", choices=MOTION_GUIDED_CHOICES["warp"])
    alias("--official-compat", "masking.official_compat", action="store_true",
          help="the official MGMAE code's masks (docs/design.md section 3)")
    alias("--direction", "masking.direction", choices=MOTION_GUIDED_CHOICES["direction"],
          help="the flow direction before the base frame alone: official = the official code's "
               "(to see its effect)")
    p.add_argument("--clips", type=int, default=4, help="clips per video (or videos of a dataset)")
    alias("--stride", "data.sampling_rate", type=int, help="frame sampling rate")
    alias("--seed", "train.seed", type=int)
    alias("--root", "data.root", help="root for relative paths in a list file")
    p.add_argument("--backend", default="pyav", help="video decoder (pyav, torchcodec, decord)")
    p.add_argument("--display-size", type=int, default=None,
                   help="tile size in the pictures (default: the clip size, at least 128 px)")
    p.add_argument("--frame-step", type=int, default=2, help="PNG: show every n-th frame")
    p.add_argument("--fps", type=int, default=4, help="GIF frames per second")
    p.add_argument("--no-gif", action="store_true")
    p.add_argument("-o", "--out", default="masks_out", help="output folder (default: masks_out/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; print the files written and nothing else")
    add_common_flags(p, checkpoints=False)
    return p


def resolve_args(a: argparse.Namespace, overrides: Sequence[str] = ()) -> argparse.Namespace:
    """Fill the alias flags from the config (``-c``, ``key=value``; a flag given wins)."""
    from mgmae.config import load_config, set_key, validate
    from mgmae.models import parse_name

    cfg = load_config(a.config, list(overrides))
    given = {dest for dest in ALIASES if getattr(a, dest) is not None}
    for dest in given:
        set_key(cfg, ALIASES[dest], getattr(a, dest))
    validate(cfg)
    for dest, key in ALIASES.items():
        section, name = key.split(".")
        setattr(a, dest, getattr(getattr(cfg, section), name))
    # a preset / weights file applies to its own backend: given as a flag for another, run() says so
    if "dis_preset" not in given and a.flow != "dis":
        a.dis_preset = None
    if "weights" not in given and not a.flow.startswith("raft"):
        a.weights = None
    if a.patch_size is None:
        a.patch_size = parse_name(cfg.model.name)[2]
    a.synthetic_speed = cfg.data.synthetic_speed  # (the 'synthetic' source's speeds; no flag)
    return a


def _check_args(a) -> None:
    if a.flow == "gt" and a.source != "synthetic" and a.masker == "motion_guided":
        raise ValueError("--flow gt needs ground-truth motion: only the 'synthetic' source has it")
    if a.flow == "codec" and a.source == "synthetic" and a.masker == "motion_guided":
        raise ValueError("--flow codec needs compressed video files; the 'synthetic' source has none")
    for name in ("num_frames", "img_size", "patch_size", "tubelet_size", "stride", "frame_step", "fps"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.img_size % a.patch_size:
        raise ValueError(f"--img-size {a.img_size} is not divisible by --patch-size {a.patch_size}")
    if a.num_frames % a.tubelet_size:
        raise ValueError(f"--num-frames {a.num_frames} is not divisible by --tubelet-size {a.tubelet_size}")
    if not 0 < a.mask_ratio < 1:
        raise ValueError(f"--mask-ratio must be in (0, 1), got {a.mask_ratio}")
    if a.display_size is not None and a.display_size < 8:
        raise ValueError(f"--display-size must be >= 8, got {a.display_size}")


def run(a) -> list[Path]:
    from mgmae.flow import build_flow
    from mgmae.viz import save_panels

    _check_args(a)
    clips = load_clips(a.source, num_frames=a.num_frames, stride=a.stride, clips=a.clips, img_size=a.img_size,
                       seed=a.seed, root=a.root, backend=a.backend,
                       codec=a.masker == "motion_guided" and a.flow == "codec",
                       speed=getattr(a, "synthetic_speed", 1.0))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    estimator = None
    if a.masker == "motion_guided" and a.flow not in ("gt", "codec"):
        opts = {}
        if a.dis_preset:
            if a.flow != "dis":
                raise ValueError("--dis-preset applies to --flow dis only")
            opts["preset"] = a.dis_preset
        if a.weights:
            if not a.flow.startswith("raft"):
                raise ValueError("--weights applies to --flow raft_small / raft_large only")
            opts["weights"] = a.weights
        estimator = build_flow(a.flow, size=a.flow_size, **opts)
    from tqdm.auto import tqdm

    quiet = getattr(a, "quiet", False)
    bar = tqdm(total=len(clips), desc="masks", unit="clip", leave=False, dynamic_ncols=True,
               disable=not getattr(a, "progress", False))
    written = []
    for i, clip in enumerate(clips):
        bar.set_postfix_str(clip.name)
        long_rows, short_rows, info = render_clip(
            clip.frames, masker=a.masker, flow=a.flow, estimator=estimator,
            gt_flow=clip.flow_fn if a.flow in ("gt", "codec") else None, num_frames=a.num_frames, img_size=a.img_size,
            patch_size=a.patch_size, tubelet_size=a.tubelet_size, mask_ratio=a.mask_ratio,
            base_frame=a.base_frame, init_map=a.init_map, warp=a.warp, official_compat=a.official_compat,
            direction=a.direction,
            seed=a.seed * 100003 + i, display_size=a.display_size, label=clip.label)
        png = out / f"{clip.name}.png"
        save_panels(long_rows, png, None, frame_step=a.frame_step)
        written.append(png)
        msg = f"{png}"
        if not a.no_gif:
            gif = out / f"{clip.name}.gif"
            with tempfile.TemporaryDirectory() as tmp:  # save_panels always writes a PNG too
                save_panels(short_rows, Path(tmp) / "unused.png", gif, frame_step=a.frame_step, fps=a.fps)
            written.append(gif)
            msg += f"  {gif}"
        if "moved_share" in info and not quiet:
            msg += (f"  (base frame {info['base']}, mean |flow| {info['mean_flow']:.2f} px, "
                    f"{info['moved_share']:.0%} of visible cubes off the base frame's places)")
        bar.write(msg, file=sys.stdout)  # above the bar, which goes on below it
        bar.update(1)
    bar.close()
    return written


@command("masks")
def cli_main(argv: list[str]) -> int:
    """``mgmae masks SOURCE [-c CONFIG] [key=value ...] [--flag ...] [-o out/]``."""
    parser = build_parser()
    a = parser.parse_intermixed_args(argv)
    pos, overrides = split_positionals(a.args, 1)
    if not pos:
        parser.error("give a video, a folder, a list file or 'synthetic'")
    a.source = pos[0]
    a.progress = show_progress(a.quiet)
    run(resolve_args(a, overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main())
