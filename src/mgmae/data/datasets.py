"""Datasets of real videos: list files, folder-per-class trees, and a robust ``VideoDataset``.

List files (one video per line, ``#`` comments and blank lines ignored; see docs/data.md)::

    path                        # pre-training, no label (label -1)
    path label                  # Kinetics / UCF101 / HMDB51 (space- or comma-separated)
    path num_frames label       # frame folders (SSv2 / VideoMAE lists)
    path,label                  # csv; a header line names the columns instead, e.g.
    video,label                 #   (columns: path|video|filename|file, label|class|target,
    a.mp4,abseiling             #    num_frames|frames); string labels -> sorted class names

Paths may contain spaces (the label fields are split off the right). Relative paths are joined
to ``root``. A folder-per-class tree ``root/<class>/<video file or frame folder>`` gets labels
from the sorted class folder names.

``VideoDataset`` decodes a clip, samples its frames (dense or segment), makes the augmented views
and masks through :func:`mgmae.data.pipeline.make_views`, and survives bad files: a missing,
unreadable, empty or truncated video is replaced by another (deterministically chosen) one,
logged once and counted (``dataset.failures``; see :meth:`VideoDataset.failure_report`). A
truncated file whose first part decodes is not replaced: the clip is sampled again within the
frames that exist.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from mgmae.errors import MgmaeError
from mgmae.data.pipeline import make_views, sample_seed
from mgmae.data.sampling import (PADS, clip_indices, dense_indices, frames_needed, segment_indices,
                                 test_clip_starts, window_starts)
from mgmae.data.transforms import (CropParams, multiscale_crop_params, random_resized_crop_params,
                                   spatial_crop_params)
from mgmae.data.video import (BACKENDS, VIDEO_EXTENSIONS, TruncatedVideoError, VideoError,
                              open_video)

__all__ = ["VideoEntry", "ListFileError", "DatasetFailureError", "CodecFlowError", "ShortVideoError",
           "parse_list", "scan_folder",
           "load_entries", "VideoDataset", "build_dataset", "skipped_from_batch"]

log = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "video", "video_path", "filename", "file", "file_name", "clip")
LABEL_COLUMNS = ("label", "labels", "label_id", "class", "class_id", "class_index", "target",
                 "category")
FRAMES_COLUMNS = ("num_frames", "frames", "n_frames", "total_frames", "length")


@dataclass(frozen=True)
class VideoEntry:
    path: str
    label: int = -1  # -1: unlabelled (pre-training)
    num_frames: int | None = None  # frame folders: frame count from the list (skips listing)
    start: int | None = None  # frame folders: the number of the first frame file (path_start_frames)


LIST_FORMATS = ("auto", "path", "path_label", "path_frames_label", "path_start_frames")


class ListFileError(ValueError):
    """A malformed list file; the message names the file and the line."""

    def __init__(self, path, lineno: int, reason: str, line: str | None = None):
        self.path, self.lineno, self.reason = str(path), lineno, reason
        where = f"{self.path}:{lineno}" if lineno else self.path
        super().__init__(f"{where}: {reason}" + (f": {line!r}" if line is not None else ""))


class DatasetFailureError(MgmaeError, RuntimeError):
    """Too many videos of a dataset could not be read."""


class CodecFlowError(MgmaeError, RuntimeError):
    """``flow.name=codec`` met a video without motion vectors and no ``flow.fallback`` is set."""


class ShortVideoError(MgmaeError, ValueError):
    """A video too short for one clip while ``data.pad=error``."""


# ----------------------------------------------------------------------------------- list files
def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _join(root: str | None, p: str) -> str:
    p = os.path.expanduser(p)
    return os.path.join(os.path.expanduser(root), p) if root and not os.path.isabs(p) else p


def parse_list(path, root: str | None = None, fmt: str = "auto",
               info: dict | None = None) -> tuple[list[VideoEntry], list[str] | None]:
    """Read a list file. Returns ``(entries, class_names)``; ``class_names`` is None unless a csv
    with a header gives string labels (then labels index the sorted names).

    ``fmt`` (``data.list_format``): ``auto`` infers the format from the first line (a header line,
    or the number of trailing integer fields: ``path``, ``path label``, ``path num_frames label``);
    or one of ``path``, ``path_label``, ``path_frames_label``, ``path_start_frames`` (VideoMAE V2 /
    MGMAE pre-training lists, ``path start_idx total_frames``: ``video.mp4 0 -1`` (every frame),
    ``folder 1 58`` (58 frames, the first file numbered 1)). ``info``, if given, receives
    ``{"format": the format used, "inferred": bool}``."""
    if fmt not in LIST_FORMATS:
        raise ValueError(f"data.list_format={fmt!r}; allowed: {', '.join(LIST_FORMATS)}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            rows = [(n, line.strip()) for n, line in enumerate(f, 1)]
    except UnicodeDecodeError:
        from mgmae.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

        kind = ("an image" if path.lower().endswith(IMAGE_EXTENSIONS) else "not a text file")
        raise ListFileError(path, 0, f"{kind}, so not a list file (one video per line); videos are "
                            f"files ending in {', '.join(VIDEO_EXTENSIONS)}, frame folders are "
                            f"directories of images") from None
    rows = [(n, s) for n, s in rows if s and not s.startswith("#")]
    if not rows:
        raise ListFileError(path, 0, "no entries (empty list file)")
    first_no, first = rows[0]
    comma = "," in first

    def split(s: str) -> list[str]:
        return [f.strip() for f in next(csv.reader([s]))] if comma else s.split()

    head = [f.lower() for f in split(first)]
    info = info if info is not None else {}
    if any(h in PATH_COLUMNS for h in head) and not _is_int(head[-1]):
        if fmt != "auto":
            raise ListFileError(path, first_no, f"a header line names the columns; data.list_format="
                                f"{fmt} is for lists without one (use auto)", first)
        info.update(format="csv with a header", inferred=True)
        return _parse_with_header(path, root, rows, head, split)
    mode = None if fmt == "auto" else ("path", "path_label", "path_frames_label",
                                       "path_start_frames").index(fmt)
    if comma:
        entries, mode = _parse_comma(path, root, rows, split, mode)
    else:
        entries, mode = _parse_spaces(path, root, rows, mode)
    chosen = ("path", "path_label", "path_frames_label", "path_start_frames")[mode]
    info.update(format=chosen, inferred=fmt == "auto")
    if fmt == "auto" and chosen == "path_frames_label" and all((e.num_frames or 0) <= 1 for e in entries):
        log.warning("%s: read as 'path num_frames label', but every num_frames is 0 or 1: if this is a "
                    "VideoMAE V2 / MGMAE pre-training list ('path start_idx total_frames'), set "
                    "data.list_format=path_start_frames", path)
    return entries, None


def _start_entry(path, root, lineno, raw, p: str, start: str, total: str) -> VideoEntry:
    """``path start_idx total_frames`` (VideoMAE V2): a video file ``0 -1``; a frame folder
    ``first_file_number count``."""
    if not p:
        raise ListFileError(path, lineno, "empty path", raw)
    if not _is_int(start) or int(start) < 0:
        raise ListFileError(path, lineno, f"start_idx {start!r} is not an integer >= 0", raw)
    if not _is_int(total) or int(total) < -1 or int(total) == 0:
        raise ListFileError(path, lineno, f"total_frames {total!r} is not a count (or -1: all)", raw)
    n = int(total)
    return VideoEntry(_join(root, p), -1, None if n == -1 else n, int(start))


def _entry(path, root, lineno, raw, p: str, frames: str | None, label: str | None,
           start_format: bool = False) -> VideoEntry:
    if start_format:
        return _start_entry(path, root, lineno, raw, p, frames, label)
    if not p:
        raise ListFileError(path, lineno, "empty path", raw)
    n = lab = None
    if frames is not None:
        if not _is_int(frames) or int(frames) < 0:
            raise ListFileError(path, lineno, f"num_frames {frames!r} is not a count", raw)
        n = int(frames)
    if label is not None:
        if not _is_int(label) or int(label) < -1:
            raise ListFileError(path, lineno, f"label {label!r} is not an integer >= -1", raw)
        lab = int(label)
    return VideoEntry(_join(root, p), -1 if lab is None else lab, n)


_WANT = ("path", "path label", "path num_frames label", "path start_idx total_frames")


def _parse_spaces(path, root, rows, mode: int | None = None) -> tuple[list[VideoEntry], int]:
    """``mode``: 0 path | 1 path label | 2 path num_frames label | 3 path start_idx total_frames;
    None: inferred from the first line's trailing integer fields (0 to 2)."""
    lineno, first = rows[0]
    tokens = first.split()
    if mode is None:
        mode = 0
        while mode < 2 and len(tokens) - mode > 1 and _is_int(tokens[-1 - mode]):
            mode += 1
        if mode == 0 and len(tokens) > 1 and not os.path.exists(_join(root, first)):
            raise ListFileError(path, lineno, f"label {tokens[-1]!r} is not an integer (expected "
                                "'path', 'path label' or 'path num_frames label')", first)
    fields = min(mode, 2)  # integer fields after the path
    out = []
    for lineno, raw in rows:
        parts = raw.rsplit(maxsplit=fields) if fields else [raw]
        if len(parts) != fields + 1 or (fields and not all(_is_int(t) for t in parts[1:])):
            raise ListFileError(path, lineno, f"expected '{_WANT[mode]}' like line {rows[0][0]}", raw)
        frames = parts[1] if fields == 2 else None
        label = parts[-1] if fields else None
        out.append(_entry(path, root, lineno, raw, parts[0], frames, label, start_format=mode == 3))
    return out, mode


def _parse_comma(path, root, rows, split, mode: int | None = None) -> tuple[list[VideoEntry], int]:
    width = len(split(rows[0][1]))
    if width > 3:
        raise ListFileError(path, rows[0][0], f"{width} comma-separated fields; expected 'path', "
                            "'path,label' or 'path,num_frames,label' (or a header line)", rows[0][1])
    if mode is None:
        mode = width - 1
    elif min(mode, 2) + 1 != width:
        raise ListFileError(path, rows[0][0], f"{width} comma-separated fields; the list format "
                            f"'{_WANT[mode]}' has {min(mode, 2) + 1}", rows[0][1])
    out = []
    for lineno, raw in rows:
        f = split(raw)
        if len(f) != width:
            raise ListFileError(path, lineno, f"{len(f)} fields, line {rows[0][0]} has {width}", raw)
        frames = f[1] if width == 3 else None
        label = f[-1] if width >= 2 else None
        out.append(_entry(path, root, lineno, raw, f[0], frames, label, start_format=mode == 3))
    return out, mode


def _parse_with_header(path, root, rows, head, split):
    def col(names):
        hits = [i for i, h in enumerate(head) if h in names]
        return hits[0] if hits else None

    ip, il, iframes = col(PATH_COLUMNS), col(LABEL_COLUMNS), col(FRAMES_COLUMNS)
    raw_rows = []
    for lineno, raw in rows[1:]:
        f = split(raw)
        if len(f) != len(head):
            raise ListFileError(path, lineno, f"{len(f)} fields, the header has {len(head)}", raw)
        raw_rows.append((lineno, raw, f))
    if not raw_rows:
        raise ListFileError(path, rows[0][0], "a header line but no entries")
    labels = [f[il] for _, _, f in raw_rows] if il is not None else []
    class_names = None
    if labels and not all(_is_int(v) for v in labels):
        class_names = sorted(set(labels))
        to_id = {c: str(i) for i, c in enumerate(class_names)}
    out = []
    for lineno, raw, f in raw_rows:
        label = None if il is None else (to_id[f[il]] if class_names else f[il])
        out.append(_entry(path, root, lineno, raw, f[ip], None if iframes is None else f[iframes],
                          label))
    return out, class_names


def scan_folder(root, class_names: Sequence[str] | None = None,
                extensions: Sequence[str] = VIDEO_EXTENSIONS) -> tuple[list[VideoEntry], list[str]]:
    """A folder-per-class tree ``root/<class>/<video>``: video files with one of ``extensions``
    and sub-folders (frame folders) become entries, labelled by the index of their class in the
    sorted class folder names (or in ``class_names``, e.g. the training set's, when given)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset folder not found: {root}")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not folders:
        raise ValueError(f"{root}: no class folders (expected {root}/<class_name>/<video>)")
    names = list(class_names) if class_names is not None else folders
    to_id = {c: i for i, c in enumerate(names)}
    unknown = [c for c in folders if c not in to_id]
    if unknown:
        raise ValueError(f"{root}: class folders {unknown[:5]} are not among the {len(names)} "
                         "known classes")
    exts = tuple(e.lower() for e in extensions)
    entries = []
    for c in folders:
        with os.scandir(os.path.join(root, c)) as it:
            items = sorted(it, key=lambda e: e.name)
        for e in items:
            if e.name.startswith("."):
                continue
            if e.is_dir() or (e.is_file() and e.name.lower().endswith(exts)):
                entries.append(VideoEntry(e.path, to_id[c]))
    if not entries:
        raise ValueError(f"{root}: no videos in the class folders (looked for "
                         f"{', '.join(exts)} files and frame folders)")
    return entries, names


def load_entries(source, root: str | None = None, fmt: str = "auto",
                 info: dict | None = None) -> tuple[list[VideoEntry], list[str] | None]:
    """A list file (see :func:`parse_list` for ``fmt`` and ``info``) or a folder-per-class tree
    (a directory)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        if info is not None:
            info.update(format="folder per class", inferred=True)
        return scan_folder(source)
    return parse_list(source, root=root, fmt=fmt, info=info)


def _as_entry(e) -> VideoEntry:
    if isinstance(e, VideoEntry):
        return e
    if isinstance(e, (str, os.PathLike)):
        return VideoEntry(os.fspath(e))
    e = tuple(e)
    if len(e) == 2:
        return VideoEntry(os.fspath(e[0]), int(e[1]))
    if len(e) == 3:
        return VideoEntry(os.fspath(e[0]), int(e[2]), None if e[1] is None else int(e[1]))
    raise ValueError(f"an entry must be a path, (path, label) or (path, num_frames, label), got {e!r}")


# ---------------------------------------------------------------------------------- the dataset
def _path_pairs(items, kind=str) -> dict:
    """``{path: value}`` from nested lists of ``(path, value)`` pairs (``value`` of type ``kind``),
    as collate repeats them once per view."""
    out: dict = {}

    def walk(x):
        if (isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[0], str)
                and isinstance(x[1], kind) and not isinstance(x[1], bool)):
            out.setdefault(x[0], x[1])
        elif isinstance(x, (tuple, list)):
            for v in x:
                walk(v)

    walk(items)
    return out


def skipped_from_batch(batch_or_skipped) -> dict[str, str]:
    """``{path: reason}`` from a collated batch's ``"skipped"`` field (nested lists of
    ``(path, reason)`` pairs, repeated once per view by the collate function)."""
    items = batch_or_skipped.get("skipped", []) if isinstance(batch_or_skipped, dict) else batch_or_skipped
    return _path_pairs(items, str)


class VideoDataset(torch.utils.data.Dataset):
    """Clips from video files or frame folders, as ``make_views`` views (and masks).

    Items: ``{"video": float (S, C, T, H, W), "mask": bool (S, N) (only with a masker), "label": int,
    "index": int, "skipped": [(path, reason), ...]}``. Training: ``S = num_sample`` multi-scale crops
    (flipped at random when ``flip``) of one sampled clip. Testing (``train=False``): ``S = T * S'``
    views for ``test_views=(T, S')``: ``T`` temporal clips (uniform starts for dense sampling,
    offsets within the segments for segment sampling) times ``S'`` spatial crops of the short side
    (1: centre, 3: the three-crop test), temporal-major. ``window_stride`` (testing): one view
    per sliding window instead (:func:`~mgmae.data.sampling.window_starts`; their number varies
    with the video), and the item also carries ``starts`` (each window's first frame) and
    ``padded`` (a video shorter than one window).

    ``index`` is the index of the video actually returned (a replacement's, if the requested one
    failed). ``skipped`` lists the files this call found unreadable, ``replaced`` counts the
    replacements it made and ``short`` lists ``(path, frames)`` of videos too short for one clip
    (padded as ``pad`` says; ``pad="error"`` raises :class:`ShortVideoError` instead), for the main
    process to aggregate from DataLoader workers (:meth:`update_failures`); they are empty (0) on
    healthy data or where this process counted them itself.

    ``augment``: a fine-tuning hook ``(frames uint8 (T, H, W, 3), CropParams, rng) -> (C, T, h, w)``
    used instead of the plain crop (e.g. :class:`mgmae.data.transforms.VideoAugment`); not
    combined with a masker.

    Randomness: after :meth:`set_epoch` (what the training engines do), an item's crops, flips,
    masks and replacement are a pure function of ``(seed, epoch, index)``, whatever the number of
    workers or ranks, and differ across epochs and indices. Without ``set_epoch`` each item draws
    its seed from torch's global generator, which PyTorch seeds per DataLoader worker from the
    loader's generator: reproducible for a loader seed and worker count, different across workers
    and epochs. No ``worker_init_fn`` is needed either way.
    """

    def __init__(self, entries: Iterable, *, num_frames: int = 16, sampling_rate: int = 2,
                 sampling: str = "dense", img_size: int = 224,
                 scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), flip: bool = True,
                 num_sample: int = 1, masker=None, train: bool = True,
                 test_views: tuple[int, int] = (1, 1), pad: str = "loop", backend: str = "pyav",
                 threads: int = 1, template: str = "img_{:05d}.jpg", start_index: int = 1,
                 max_fail_frac: float = 0.05, max_tries: int = 10, seed: int = 0, augment=None,
                 class_names: Sequence[str] | None = None, codec_flow: bool = False,
                 flow_fallback: str | None = None, crop: str = "multiscale",
                 crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), short_side: int | None = None,
                 window_stride: int | None = None):
        self.entries = [_as_entry(e) for e in entries]
        if not self.entries:
            raise ValueError("VideoDataset needs at least one entry")
        if sampling not in ("dense", "segment"):
            raise ValueError(f"sampling must be 'dense' or 'segment', got {sampling!r}")
        if pad not in PADS:
            raise ValueError(f"pad must be one of {PADS}, got {pad!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if len(test_views) != 2 or min(test_views) < 1:
            raise ValueError(f"test_views must be (num_temporal, num_spatial) >= 1, got {test_views}")
        if augment is not None and masker is not None:
            raise ValueError("augment (fine-tuning) and masker (pre-training) cannot be combined")
        if num_sample < 1:
            raise ValueError(f"num_sample must be >= 1, got {num_sample}")
        if window_stride is not None and (train or window_stride < 1):
            raise ValueError(f"window_stride (sliding windows) is for testing and must be >= 1, got "
                             f"{window_stride} with train={train}")
        self.window_stride = window_stride
        self.num_frames, self.sampling_rate, self.sampling = num_frames, sampling_rate, sampling
        self.img_size, self.scales, self.flip = img_size, tuple(scales), flip
        self.num_sample, self.masker, self.train = num_sample, masker, train
        self.test_views = tuple(int(v) for v in test_views)
        self.pad, self.backend, self.threads = pad, backend, threads
        self.template, self.start_index = template, start_index
        self.max_fail_frac, self.max_tries, self.seed = max_fail_frac, max_tries, seed
        self.augment = augment
        if codec_flow and not hasattr(masker, "mask_views"):
            raise ValueError("codec_flow (flow.name=codec) needs a motion-guided masker")
        if flow_fallback not in (None, "dis"):
            raise ValueError(f"flow.fallback must be null or 'dis', got {flow_fallback!r}")
        self.codec_flow, self.flow_fallback = codec_flow, flow_fallback
        if crop not in ("multiscale", "random_resized"):
            raise ValueError(f"crop must be 'multiscale' or 'random_resized', got {crop!r}")
        self.crop, self.crop_scale, self.crop_ratio = crop, tuple(crop_scale), tuple(crop_ratio)
        self.short_side = short_side  # test views: the short side resized to this, then cropped
        self._fallback_logged = False
        self.class_names = list(class_names) if class_names is not None else None
        labels = [e.label for e in self.entries]
        self.num_classes = len(self.class_names) if self.class_names else max(max(labels) + 1, 0)
        self.failures: dict[str, str] = {}  # path -> reason, this process (+ what was merged in)
        self.truncated: dict[str, int] = {}  # path -> decodable frames (recovered, not failures)
        self.short: dict[str, int] = {}  # path -> frames, videos too short for a clip (padded)
        self._new_short: list[tuple[str, int]] = []  # found by this item (a worker's report)
        self.num_skipped = 0  # replacement events (this process + what workers reported)
        self.epoch: int | None = None  # see set_epoch

    def set_epoch(self, epoch: int) -> None:
        """From now on an item's augmentation and mask are a pure function of ``(seed, epoch,
        index)`` (the engine calls this before each epoch; DataLoader workers, re-created per
        epoch, get the new value)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (f"VideoDataset({len(self)} videos, {self.num_frames}x{self.img_size}, "
                f"{self.sampling} sampling, train={self.train}, backend={self.backend!r})")

    @property
    def views_per_video(self) -> int:
        return self.num_sample if self.train else self.test_views[0] * self.test_views[1]

    # ---------------------------------------------------------------- failures
    def _replacement(self, index: int, attempt: int) -> int:
        return int(np.random.default_rng([self.seed, index, attempt]).integers(len(self.entries)))

    def _limit(self) -> float:
        return self.max_fail_frac * len(self.entries)

    def _record(self, path: str, reason: str, announce: bool = True) -> bool:
        if path in self.failures:
            return False
        self.failures[path] = reason
        if announce:
            info = torch.utils.data.get_worker_info()
            who = f"worker {info.id}: " if info is not None else ""
            log.warning("%sskipping unreadable video %s: %s", who, path, reason)
        if len(self.failures) > self._limit():
            raise DatasetFailureError(self._too_many())
        return True

    def _too_many(self) -> str:
        items = list(self.failures.items())
        lines = "\n".join(f"  {p}: {r}" for p, r in items[:10])
        more = f"\n  ... and {len(items) - 10} more" if len(items) > 10 else ""
        return (f"{len(items)} of {len(self.entries)} videos could not be read, more than "
                f"max_fail_frac={self.max_fail_frac:g}. Examples:\n{lines}{more}\n"
                "Run `mgmae data check LIST` for a full report.")

    def update_failures(self, skipped) -> None:
        """Merge failures reported by workers: a batch dict, its ``"skipped"`` field or a
        ``{path: reason}`` dict. Call it in the main process for every batch; it raises
        :class:`DatasetFailureError` once failures exceed ``max_fail_frac`` of the dataset."""
        is_batch = isinstance(skipped, dict) and ("skipped" in skipped or "video" in skipped)
        found = skipped if isinstance(skipped, dict) and not is_batch else skipped_from_batch(skipped)
        for p, r in found.items():
            if self._record(p, r, announce=False):
                log.debug("video reported unreadable by a worker: %s", r)
        if is_batch:
            self.num_skipped += int(skipped.get("replaced", 0))  # (summed over the batch by collate)
            for p, n in _path_pairs(skipped.get("short", []), int).items():
                self._record_short(p, n)

    def _record_short(self, path: str, frames: int) -> bool:
        """Count a video too short for one clip; the first one of the run is said (the rest are in
        :meth:`failure_report` and the end-of-run summary)."""
        if path in self.short:
            return False
        self.short[path] = int(frames)
        if len(self.short) == 1:
            log.warning("%s has %d frames, fewer than one clip needs (%s); its clips are padded "
                        "(data.pad=%s). Such videos are counted in the end-of-run summary; "
                        "data.pad=error makes them an error", path, frames, self._need_text(), self.pad)
        return True

    def _need_text(self) -> str:
        need = frames_needed(self.num_frames, self.sampling_rate, self.sampling)
        if self.sampling == "segment":
            return f"{need}: data.num_frames={self.num_frames} segments"
        return (f"{need}: data.num_frames={self.num_frames} frames data.sampling_rate="
                f"{self.sampling_rate} apart")

    def failure_report(self) -> dict:
        """What this process knows: ``{"num_videos", "num_failed", "fraction", "num_skipped",
        "failures": {path: reason}, "truncated": {path: frames}}``. With DataLoader workers call
        :meth:`update_failures` on each batch first (the engine does), then this at epoch end."""
        n = len(self.failures)
        return {"num_videos": len(self.entries), "num_failed": n, "fraction": n / len(self.entries),
                "num_skipped": self.num_skipped, "failures": dict(self.failures),
                "truncated": dict(self.truncated), "num_short": len(self.short),
                "short": dict(self.short)}

    # ---------------------------------------------------------------- loading
    def _index_lists(self, n: int, rng: np.random.Generator) -> list[np.ndarray]:
        T, rate = self.num_frames, self.sampling_rate
        if self.train:
            if self.sampling == "segment":
                return [segment_indices(n, T, rng, train=True)]
            return [dense_indices(n, T, rate, rng, pad=self.pad)]
        if self.window_stride is not None:
            return [clip_indices(s, n, T, rate, self.pad) for s in window_starts(n, T, rate, self.window_stride)]
        nt = self.test_views[0]
        if self.sampling == "segment":
            return [segment_indices(n, T, train=False, clip=c, num_clips=nt) for c in range(nt)]
        return [clip_indices(s, n, T, rate, self.pad) for s in test_clip_starts(n, T, rate, nt)]

    def _open(self, entry: VideoEntry):
        return open_video(entry.path, self.backend, threads=self.threads, template=self.template,
                          start_index=self.start_index if entry.start is None else entry.start,
                          num_frames=entry.num_frames, export_mvs=self.codec_flow)

    def load_clips(self, entry: VideoEntry, rng: np.random.Generator) -> list[np.ndarray]:
        """Decode the clip(s) of one video: a list (1 for training, ``test_views[0]`` for testing)
        of ``uint8 (num_frames, H, W, 3)``. Raises :class:`VideoError`."""
        return self._load(entry, rng)[0]

    def _load(self, entry: VideoEntry, rng: np.random.Generator):
        """``(clips, flow_fns, index_lists)``: the clips of :meth:`load_clips`, with ``codec_flow``
        each clip's codec flow (:class:`mgmae.flow.codec.ClipCodecFlow`; None where the fallback
        computes flow from pixels), and each clip's frame indices."""
        with self._open(entry) as video:
            for attempt in range(2):
                self._check_length(entry.path, video.num_frames)
                lists = self._index_lists(video.num_frames, rng)
                try:
                    frames = video.get_frames(np.concatenate(lists))
                except TruncatedVideoError as e:
                    if attempt or e.available < 1:
                        raise
                    video.num_frames = e.available  # sample again within the frames that exist
                    if entry.path not in self.truncated:
                        self.truncated[entry.path] = e.available
                        log.warning("%s; using its first %d frames", e, e.available)
                    continue
                clips = np.split(frames, len(lists))
                if not self.codec_flow:
                    return clips, [None] * len(clips), lists
                return clips, self._codec_flows(entry, video, lists), lists
        raise AssertionError("unreachable")

    def _check_length(self, path: str, n: int) -> None:
        """A video too short for one clip: an error with ``pad="error"``, else counted (said at the
        first one; from a loader worker, through the item's ``short`` field)."""
        if n >= frames_needed(self.num_frames, self.sampling_rate, self.sampling):
            return
        if self.pad == "error":
            raise ShortVideoError(f"{path}: {n} frames, fewer than one clip needs ({self._need_text()}) "
                                  f"and data.pad=error; data.pad=loop or repeat_last pads such videos")
        if torch.utils.data.get_worker_info() is None:
            self._record_short(path, n)
        elif path not in self.short:  # the training process counts and says it (update_failures)
            self.short[path] = n
            self._new_short.append((path, n))

    def check_codec_flow(self, tries: int = 3) -> None:
        """Decode the first frames of the first readable video (of ``tries``) and raise
        :class:`CodecFlowError` naming it when it gives no motion vectors (``codec_flow`` without a
        fallback): the error comes at the start of a run, not from a loader worker."""
        for entry in self.entries[:tries]:
            try:
                with self._open(entry) as video:
                    n = min(video.num_frames, 2 * self.num_frames)
                    lists = [np.arange(n)]
                    video.get_frames(lists[0])
                    self._codec_flows(entry, video, lists)
                    return
            except (VideoError, OSError):
                continue  # unreadable: the loader skips and counts it

    def _codec_flows(self, entry: VideoEntry, video, lists) -> list:
        from mgmae.flow.codec import ClipCodecFlow

        motion = getattr(video, "motion", None)
        if motion is not None and motion.num_vectors > 0:
            return [ClipCodecFlow(motion, idx) for idx in lists]
        short = video.num_frames < frames_needed(self.num_frames, self.sampling_rate, self.sampling)
        why = ("is a frame folder" if video.__class__.__name__ == "FrameFolderReader" else
               f"has only {video.num_frames} frames (one clip needs {self._need_text()}) and its "
               f"codec stored no motion vectors in them (e.g. an intra frame and a copy)"
               if motion is not None and short else
               "gives no motion vectors (an all-intra or MJPEG stream, or a codec FFmpeg exports "
               "none for)" if motion is not None else
               f"is read by the {self.backend!r} backend, which exports no motion vectors (use pyav)")
        if self.flow_fallback is None:
            raise CodecFlowError(f"{entry.path}: flow.name=codec needs motion vectors, but this video "
                                 f"{why}; set flow.fallback=dis to compute DIS flow for such videos")
        if not self._fallback_logged:
            log.warning("%s %s: DIS flow for it and any other such video (flow.fallback=dis; logged "
                        "once)", entry.path, why)
            self._fallback_logged = True
        return [None] * len(lists)

    def __getitem__(self, index: int) -> dict:
        if self.epoch is None:  # no set_epoch(): a fresh draw from torch's (per-worker) generator
            rng = np.random.default_rng([self.seed, int(torch.randint(0, 2**62, (1,)).item())])
        else:  # a pure function of (seed, epoch, index): independent of workers, ranks, resume
            rng = np.random.default_rng(sample_seed(self.seed, self.epoch, int(index)))
        skipped: list[tuple[str, str]] = []
        self._new_short: list[tuple[str, int]] = []
        replaced = 0
        i = int(index)
        for attempt in range(self.max_tries + 1):
            entry = self.entries[i]
            if entry.path not in self.failures:
                try:
                    clips, flow_fns, lists = self._load(entry, rng)
                    break
                except (VideoError, OSError) as e:
                    reason = e.reason if isinstance(e, VideoError) else f"{type(e).__name__}: {e}"
                    if self._record(entry.path, reason):
                        skipped.append((entry.path, reason))
            replaced += 1
            i = self._replacement(int(index), attempt)
        else:
            raise DatasetFailureError(f"no readable video after {self.max_tries + 1} tries starting "
                                      f"at index {index}.\n{self._too_many()}")
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        video, mask = self._views(clips, rng, gen, flow_fns)
        item = {"video": video}
        if mask is not None:
            item["mask"] = mask
        if torch.utils.data.get_worker_info() is None:
            self.num_skipped += replaced
            replaced = 0  # (counted here; a worker's count travels with the item)
        item.update(label=entry.label, index=i, skipped=skipped, replaced=replaced,
                    short=self._new_short)
        if self.window_stride is not None:  # one view per window: its start frame, and padding
            item.update(starts=[int(ix[0]) for ix in lists],
                        padded=bool((np.diff(lists[0]) != self.sampling_rate).any()))
        return item

    def _views(self, clips: list[np.ndarray], rng: np.random.Generator, gen: torch.Generator,
               flow_fns: list | None = None):
        H, W = clips[0].shape[1:3]
        if self.train and self.crop == "random_resized":
            params = [random_resized_crop_params(H, W, self.img_size, self.crop_scale, self.crop_ratio,
                                                 self.flip, rng=rng) for _ in range(self.num_sample)]
        elif self.train:
            params = [multiscale_crop_params(H, W, self.img_size, self.scales, self.flip, rng=rng)
                      for _ in range(self.num_sample)]
        else:
            params = spatial_crop_params(H, W, self.img_size, self.test_views[1], self.short_side)
        if not hasattr(self.masker, "mask_views") or (flow_fns and all(flow_fns)):
            # (motion-guided flow from pixels sees the whole frame; codec flow knows the offset)
            clips, params, (y0, x0) = precrop(clips, params)
            for f in flow_fns or []:
                if f is not None:
                    f.offset = (y0, x0)
        if self.augment is not None:
            video = torch.stack([self.augment(c, p, rng) for c in clips for p in params])
            return video, None
        flow_fns = flow_fns or [None] * len(clips)
        views, masks = zip(*(make_views(c, params, self.masker, flow_fn=f, generator=gen)
                             for c, f in zip(clips, flow_fns)))
        video = torch.cat(views)  # [T*S, C, T, H, W] temporal-major
        return video, (torch.cat(masks) if masks[0] is not None else None)


def precrop(clips: list[np.ndarray], params: list[CropParams]):
    """Cut the ``uint8`` clips down to the union of the crop boxes and shift the boxes: the views
    are identical, the float conversion and resize touch fewer pixels (~30% faster at 640x272).
    Returns ``(clips, params, (top, left))``: where the cut starts in the original frames."""
    y0, x0 = min(p.top for p in params), min(p.left for p in params)
    y1 = max(p.top + p.height for p in params)
    x1 = max(p.left + p.width for p in params)
    H, W = clips[0].shape[1:3]
    if (y0, x0, y1, x1) == (0, 0, H, W):
        return clips, params, (0, 0)
    clips = [np.ascontiguousarray(c[:, y0:y1, x0:x1]) for c in clips]
    return clips, [replace(p, top=p.top - y0, left=p.left - x0) for p in params], (y0, x0)


# ---------------------------------------------------------------------------------- from config
def build_dataset(cfg_data, masker=None, train: bool = True, *, split: str | None = None,
                  **overrides) -> tuple[VideoDataset, list[str] | None]:
    """The dataset named by a ``DataConfig``: ``split`` is ``"train"`` (``train_list``), ``"val"``
    (``val_list``, else ``test_list``) or ``"test"`` (``test_list``, else ``val_list``); default
    ``"train"`` if ``train`` else ``"val"``. A directory is a folder-per-class tree (validation
    trees use the training tree's class names when ``train_list`` is a tree too), a file a list.
    Returns ``(dataset, class_names)``; ``class_names`` (None for integer-labelled lists) is for
    the caller to save in the run dir. ``overrides`` go to :class:`VideoDataset` (``test_views``,
    ``backend``, ``max_fail_frac``, ``pad``, ``seed`` ...)."""
    d = cfg_data
    split = split or ("train" if train else "val")
    sources = {"train": (d.train_list, "train_list"),
               "val": (d.val_list or d.test_list, "val_list"),
               "test": (d.test_list or d.val_list, "test_list")}
    if split not in sources:
        raise ValueError(f"split must be train, val or test, got {split!r}")
    source, key = sources[split]
    if not source:
        raise ValueError(f"data.{key} is not set (a list file or a folder-per-class directory)")
    kind = getattr(d, "dataset", "auto")
    if kind == "synthetic":
        raise ValueError("data.dataset=synthetic has no list files; use the synthetic dataset")
    is_dir = os.path.isdir(source)
    if kind == "folder" and not is_dir:
        raise ValueError(f"data.dataset=folder but data.{key}={source!r} is not a directory")
    if kind == "list" and is_dir:
        raise ValueError(f"data.dataset=list but data.{key}={source!r} is a directory")
    if not is_dir and not os.path.isfile(source):
        raise FileNotFoundError(f"data.{key}: {source} does not exist")
    if is_dir:
        known = None
        if split != "train" and d.train_list and os.path.isdir(d.train_list):
            known = sorted(e.name for e in os.scandir(d.train_list)
                           if e.is_dir() and not e.name.startswith("."))
        entries, class_names = scan_folder(source, class_names=known)
    else:
        info: dict = {}
        entries, class_names = parse_list(source, root=d.root, fmt=getattr(d, "list_format", "auto"),
                                          info=info)
        log.info("%s: %d entries, list format %s%s", source, len(entries), info["format"],
                 " (inferred)" if info["inferred"] else "")
    kwargs = dict(num_frames=d.num_frames, sampling_rate=d.sampling_rate, sampling=d.sampling,
                  img_size=d.img_size, scales=d.scales, flip=d.flip and train,
                  num_sample=d.num_sample if train else 1, masker=masker, train=train,
                  class_names=class_names)
    # DataConfig key -> VideoDataset argument
    for key, opt in (("test_views", "test_views"), ("backend", "backend"), ("pad", "pad"),
                     ("max_fail_frac", "max_fail_frac"), ("max_tries", "max_tries"),
                     ("frame_template", "template"), ("frame_start_index", "start_index"),
                     ("short_side_size", "short_side")):
        if getattr(d, key, None) is not None:
            kwargs[opt] = getattr(d, key)
    kwargs.update(overrides)
    ds = VideoDataset(entries, **kwargs)
    ds.list_format = "folder per class" if is_dir else info["format"]
    return ds, class_names
