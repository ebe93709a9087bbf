"""Which frames make a clip.

* **dense** (Kinetics, pre-training): ``num_frames`` frames ``rate`` apart from a start drawn at
  random for training (:func:`dense_indices`), or from ``num_clips`` uniformly spaced starts for
  multi-view testing (:func:`test_clip_starts` + :func:`clip_indices`).
* **segment** (Something-Something V2, TSN style): the video is cut into ``num_frames`` equal
  segments and one frame is taken from each, at a random place for training and at the centre
  for testing (:func:`segment_indices`); temporal test views shift that place within the segment.

Videos shorter than a dense clip are padded by looping (``pad="loop"``: 0 2 4 6 8 0 2 4) or by
repeating the last frame (``pad="repeat_last"``: 0 2 4 6 8 9 9 9, what VideoMAE does);
``pad="error"`` makes such a video an error instead (the dataset checks it with
:func:`frames_needed` before sampling). Segment sampling needs no padding: segments shorter than
one frame simply repeat frames (the dataset still counts such videos as short).

All functions return ``int64`` arrays of 0-based indices, each in ``[0, num_total)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PADS", "clip_indices", "dense_indices", "frames_needed", "segment_indices",
           "test_clip_starts", "window_starts"]

PADS = ("loop", "repeat_last", "error")


def frames_needed(num_frames: int, rate: int = 1, sampling: str = "dense") -> int:
    """The frames a video needs for one clip without padding or repeated frames: the span of a
    dense clip, ``(num_frames - 1) * rate + 1`` (16 frames at stride 2: 31), or ``num_frames``
    for segment sampling (one frame per segment)."""
    return num_frames if sampling == "segment" else (num_frames - 1) * rate + 1


def _check(num_total: int, num_frames: int, rate: int = 1) -> None:
    if num_total < 1:
        raise ValueError(f"a video needs at least one frame, got num_total={num_total}")
    if num_frames < 1 or rate < 1:
        raise ValueError(f"num_frames and rate must be >= 1, got {num_frames} and {rate}")


def clip_indices(start: int, num_total: int, num_frames: int, rate: int = 1,
                 pad: str = "loop") -> np.ndarray:
    """``start, start + rate, ...`` (``num_frames`` of them); indices past the end are padded."""
    _check(num_total, num_frames, rate)
    if pad not in PADS:
        raise ValueError(f"pad must be one of {PADS}, got {pad!r}")
    idx = int(start) + np.arange(num_frames, dtype=np.int64) * rate
    if idx[-1] < num_total:
        return idx
    if pad == "error":
        raise ValueError(f"a clip of {num_frames} frames {rate} apart needs "
                         f"{frames_needed(num_frames, rate)} frames, the video has {num_total} (pad='error')")
    if pad == "loop":
        return idx % num_total
    return np.minimum(idx, num_total - 1)


def dense_indices(num_total: int, num_frames: int, rate: int, rng: np.random.Generator | None = None,
                  pad: str = "loop") -> np.ndarray:
    """A dense clip spanning ``num_frames * rate`` frames, starting uniformly at random in
    ``[0, num_total - span]`` (``rng=None``: the centred clip, for validation). A video shorter
    than the span starts at 0 and is padded (``pad``)."""
    _check(num_total, num_frames, rate)
    span = (num_frames - 1) * rate + 1  # frames from the first index to the last, inclusive
    max_start = num_total - span
    if max_start <= 0:
        start = 0
    elif rng is None:
        start = max_start // 2
    else:
        start = int(rng.integers(0, max_start + 1))
    return clip_indices(start, num_total, num_frames, rate, pad)


def segment_indices(num_total: int, num_frames: int, rng: np.random.Generator | None = None,
                    train: bool = True, clip: int = 0, num_clips: int = 1) -> np.ndarray:
    """TSN sampling: segment ``i`` covers ``[i * L, (i + 1) * L)`` with ``L = num_total / num_frames``.

    Training (``train=True`` with an ``rng``): a uniformly random frame of each segment. Testing:
    the frame at ``(clip + 0.5) / num_clips`` of each segment, i.e. the centre for one clip, and
    ``num_clips`` evenly offset clips for multi-view testing."""
    _check(num_total, num_frames)
    length = num_total / num_frames
    starts = np.arange(num_frames) * length
    if train and rng is not None:
        offsets = rng.random(num_frames) * length
    else:
        if not 0 <= clip < num_clips:
            raise ValueError(f"clip must be in [0, {num_clips}), got {clip}")
        offsets = np.full(num_frames, (clip + 0.5) / num_clips * length)
    idx = np.floor(starts + offsets).astype(np.int64)
    return np.clip(idx, 0, num_total - 1)


def test_clip_starts(num_total: int, num_frames: int, rate: int, num_clips: int) -> list[int]:
    """Starts of ``num_clips`` dense clips spread uniformly over the video: the first starts at 0,
    the last ends at the last frame (one clip: the centred one). As in VideoMAE's multi-view test
    (``int(i * (num_total - span) / (num_clips - 1))``). Short videos: all start at 0."""
    _check(num_total, num_frames, rate)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    span = (num_frames - 1) * rate + 1
    max_start = max(num_total - span, 0)
    if num_clips == 1:
        return [max_start // 2]
    return [int(i * max_start / (num_clips - 1)) for i in range(num_clips)]


def window_starts(num_total: int, num_frames: int, rate: int, stride: int) -> list[int]:
    """Sliding windows (temporal action detection, as VideoMAE V2's feature extraction): clips of
    ``num_frames`` frames ``rate`` apart starting every ``stride`` frames, each inside the video
    (40 frames, 16 x 1, stride 4: 0, 4, ..., 24). A video shorter than one window: one window at 0,
    padded by :func:`clip_indices`."""
    _check(num_total, num_frames, rate)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    span = (num_frames - 1) * rate + 1
    return list(range(0, max(num_total - span, 0) + 1, stride))


test_clip_starts.__test__ = False  # a name pytest would otherwise collect where imported
