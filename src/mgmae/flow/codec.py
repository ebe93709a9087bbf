"""Optical flow from the codec's motion vectors (``flow.name=codec``): motion guidance for free.

The encoder of every H.264 / MPEG-4 Part 2 / MPEG-1/2 file already estimated motion, and FFmpeg
hands the vectors over while decoding (``flags2=+export_mvs``; :class:`mgmae.data.video.PyAVReader`
with ``export_mvs=True``; it exports none for HEVC, VP9 or AV1), at almost no cost (the idea of MGM, Fan et al., ICCV 2023). This module turns
them into flow in the project's convention: ``(2, h, w)``, channel 0 = x, on the grid of ``src``,
pixel ``p`` of ``src`` moves to ``p + flow[p]`` in ``dst``, **on a grid of** :data:`CELL` **x**
:data:`CELL` **pixel cells** (8: FFmpeg exports H.264 motion per 8 x 8 block at the finest, 4 x 4
sub-partitions as their 8 x 8 block), vectors in cells. It is never expanded to a dense
full-resolution field: the masker carries it through each view's crop/resize/flip at that
resolution (:meth:`mgmae.masking.motion_guided.MotionGuidedMasker.mask_views`), and only on the
cells of the views' crop boxes.

What FFmpeg gives, per decoded frame ``c``: records ``source, w, h, src_x, src_y, dst_x, dst_y,
motion_x, motion_y, motion_scale``. The block of ``w x h`` pixels centred at ``(dst_x, dst_y)`` in
``c`` is predicted from ``(src_x, src_y)`` in a reference frame, ``src = dst + motion / scale``, so
``motion / scale`` *is* the flow from ``c`` to that reference at that block. ``source`` only says the
direction (-1: a past reference, list 0; +1: a future one, list 1), not which frame. Here:

1. **Which reference** (:func:`reference_distances`): the reference of ``c`` in a direction is taken
   to be the nearest *reference frame* in display order on that side that was *decoded before*
   ``c`` (ref_idx 0 of an encoder that sorts its lists by distance, as x264 does). Reference frames
   are read from the bitstream (H.264 ``nal_ref_idc``, HEVC NAL unit types), else by picture type
   (I and P are references, B are not). This is exact for streams with one reference frame per
   list, B-pyramids included; with several (x264's default ``ref=3``) the blocks that point further
   back are taken as nearer, so their motion is overestimated (measured in bench/RESULTS.md).
2. **Per-frame velocity** (cells per frame, forward in time): ``-motion / d`` for past vectors,
   ``+motion / d`` for future ones (``d``: display distance to the reference), averaged where a
   block has both (bi-prediction). Each vector paints its ``w x h`` block on the cell grid.
3. **Holes**: cells with no vector (I frames, intra blocks, frames that were not decoded because
   nothing references them and the clip does not use them) take the velocity of the same cell in
   the nearest frame of the span that has one (the mean of both sides at equal distance); cells
   that no frame covers get 0. Vectors with
   ``motion_scale == 0`` or longer than the frame are dropped (warned once per process).
4. **Any pair, any stride** (:meth:`CodecMotion.flow`): ``flow(i, j)`` chains the per-frame
   velocities along the path, ``f += V_m(p + f)`` for ``m = i .. j-1`` (forward) or ``f += -V_m(p + f)``
   for ``m = i .. j+1`` (backward), sampled bilinearly at the displaced position, so a clip sampled
   at stride 2 (or in segments) gets the flow between its own frames.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from av.sidedata.sidedata import SideDataContainer, Type as SideDataType

from mgmae.kernels import (CODEC_CELL, chain_velocities, fill_from_nearest_frame, finish_paint,
                           paint_vectors)

__all__ = ["CELL", "CodecMotion", "ClipCodecFlow", "FrameRecord", "motion_vectors",
           "reference_distances", "packet_is_reference"]

CELL = CODEC_CELL  # pixels per cell of the codec-flow grid (8: FFmpeg's finest H.264 motion block)

_warned_absurd = False


@dataclass
class FrameRecord:
    """One decoded frame: display ``index`` in the video, ``decode`` order, reference flag (None:
    unknown, decided by ``pict_type``), picture type ``"I"``/``"P"``/``"B"``, and its vectors
    (FFmpeg's structured array, None or empty when it exported none)."""

    index: int
    decode: int
    is_ref: bool | None
    pict_type: str
    vectors: np.ndarray | None = None


_mv_dtype: np.dtype | None = None  # FFmpeg's AVMotionVector, as PyAV's first to_ndarray() gave it


def motion_vectors(frame) -> np.ndarray | None:
    """The MOTION_VECTORS side data of a PyAV frame as FFmpeg's structured array (None: none), a
    view of the side data (no copy). PyAV's ``to_ndarray`` builds its structured dtype on every
    call (~10 us per frame); the first call's dtype is kept."""
    global _mv_dtype
    # A container of our own, not frame.side_data: the frame caches that one and it points back
    # to the frame, a reference cycle that kept every decoded frame of a clip alive until the
    # garbage collector ran (~0.9 ms per collection in a loader worker, frames freed late)
    sd = SideDataContainer(frame).get(SideDataType.MOTION_VECTORS)  # (keyed by type, PyAV >= 12)
    if sd is None:
        return None
    if _mv_dtype is None:
        _mv_dtype = sd.to_ndarray().dtype
    return np.frombuffer(sd, dtype=_mv_dtype)


def _nal_units(data: bytes, length_size: int | None):
    """First header bytes of the NAL units of one packet (Annex B or length-prefixed)."""
    if length_size is None:  # (a length prefix like 00 00 01 02 would look like a start code)
        i = 0
        while True:
            j = data.find(b"\x00\x00\x01", i)
            if j < 0 or j + 3 >= len(data):
                return
            yield data[j + 3:j + 5]
            i = j + 3
    pos = 0
    while pos + length_size < len(data):
        n = int.from_bytes(data[pos:pos + length_size], "big")
        yield data[pos + length_size:pos + length_size + 2]
        pos += length_size + n


def packet_is_reference(data: bytes, codec: str, length_size: int | None) -> bool | None:
    """Whether the frame in this packet is a reference frame, read from its first slice's NAL
    header: H.264 ``nal_ref_idc != 0``; HEVC: not a sub-layer non-reference type (even types
    0..14). None for other codecs or when no slice header is found."""
    if codec in ("h264", "libx264"):
        for head in _nal_units(data, length_size):
            if head and (head[0] & 0x1F) in (1, 5):
                return bool((head[0] >> 5) & 3)
        return None
    if codec in ("hevc", "h265", "libx265"):
        for head in _nal_units(data, length_size):
            if head:
                t = (head[0] >> 1) & 0x3F
                if t < 32:  # a VCL (slice) NAL unit
                    return not (t <= 14 and t % 2 == 0)
        return None
    return None


def nal_length_size(codec_context) -> int | None:
    """Bytes of the NAL length prefix of an MP4/MKV H.264/HEVC stream (None: Annex B)."""
    extra = codec_context.extradata
    if not extra or len(extra) < 5:
        return None
    if codec_context.name == "h264" and extra[0] == 1:  # avcC
        return (extra[4] & 3) + 1
    if codec_context.name == "hevc" and len(extra) > 21 and extra[0] == 1:  # hvcC
        return (extra[21] & 3) + 1
    return None


def reference_distances(records: Sequence[FrameRecord]) -> dict[int, tuple[int | None, int | None]]:
    """``{display index: (past distance, future distance)}``: the display distance from each frame to
    the nearest reference frame on each side that was decoded before it (None: there is none in
    ``records``). See the module docstring, step 1."""
    refs = []
    for r in records:
        is_ref = r.is_ref if r.is_ref is not None else r.pict_type in ("I", "P", "SI", "SP")
        if is_ref:
            refs.append((r.decode, r.index))
    out: dict[int, tuple[int | None, int | None]] = {}
    for r in records:
        past = [i for d, i in refs if d < r.decode and i < r.index]
        future = [i for d, i in refs if d < r.decode and i > r.index]
        out[r.index] = (r.index - max(past) if past else None,
                        min(future) - r.index if future else None)
    return out


class CodecMotion:
    """The motion vectors of a decoded span of one video (``records``, one per decoded frame) and
    what is needed to turn them into flow between any two of its frames.

    ``size``: the frames' ``(H, W)``. ``path``: for messages. Flows are on the grid of
    ``ceil(H / CELL) x ceil(W / CELL)`` cells, in cells (see the module docstring)."""

    def __init__(self, records: Sequence[FrameRecord], size: tuple[int, int], path: str = ""):
        self.records = {r.index: r for r in records}
        self.size = (int(size[0]), int(size[1]))
        self.path = path
        self.grid = (-(-self.size[0] // CELL), -(-self.size[1] // CELL))
        self.distances = reference_distances(records)
        self._filled: tuple[tuple, torch.Tensor] | None = None

    @property
    def num_vectors(self) -> int:
        return sum(len(r.vectors) for r in self.records.values() if r.vectors is not None)

    def __repr__(self) -> str:
        lo, hi = (min(self.records), max(self.records)) if self.records else (None, None)
        return (f"CodecMotion({self.path!r}, frames {lo}..{hi}, {self.num_vectors} vectors, "
                f"grid {self.grid})")

    # ------------------------------------------------------------ per-frame velocity
    def frame_velocity(self, index: int) -> torch.Tensor | None:
        """Velocity of frame ``index`` (cells per frame, forward in time) on its cell grid,
        ``(2, h, w)`` with NaN where no vector covers a cell; None when it has no usable vector."""
        v = self._paint(index, index, self.full_box)[0]
        return None if bool(torch.isnan(v[0]).all()) else v

    @property
    def full_box(self) -> tuple[int, int, int, int]:
        return (0, 0, *self.grid)

    def cell_box(self, box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
        """Pixel box ``(top, left, bottom, right)`` -> the cells covering it, ``(y0, x0, y1, x1)``."""
        if box is None:
            return self.full_box
        top, left, bottom, right = box
        gh, gw = self.grid
        return (max(0, top // CELL), max(0, left // CELL), min(gh, -(-bottom // CELL)),
                min(gw, -(-right // CELL)))

    def _paint(self, lo: int, hi: int, cells: tuple[int, int, int, int]) -> torch.Tensor:
        """Raw velocities of frames ``lo..hi`` on the ``cells`` box ``(y0, x0, y1, x1)``:
        ``(n, 2, y1 - y0, x1 - x0)``, NaN where no vector covers a cell (steps 1-2 of the module
        docstring), frame by frame, each frame's vectors read where PyAV holds them."""
        global _warned_absurd
        cy, cx, gh, gw = cells[0], cells[1], cells[2] - cells[0], cells[3] - cells[1]
        n = hi - lo + 1
        count = np.zeros((n, gh, gw), np.int32)
        sum_x, sum_y = np.zeros((n, gh, gw)), np.zeros((n, gh, gw))
        H, W = self.size
        absurd = 0
        for i in range(lo, hi + 1):  # each frame's vectors read in place (no copy)
            r = self.records.get(i)
            if r is not None and r.vectors is not None and len(r.vectors):
                past_d, future_d = self.distances.get(i, (None, None))
                absurd += paint_vectors(r.vectors, i - lo, past_d or 0, future_d or 0, cy, cx, H, W,
                                        count, sum_x, sum_y)
        out = finish_paint(count, sum_x, sum_y)
        if absurd and not _warned_absurd:
            warnings.warn(f"{self.path}: {absurd} motion vectors longer than the frame were dropped "
                          "(further occurrences are not reported)", RuntimeWarning, stacklevel=3)
            _warned_absurd = True
        return torch.from_numpy(out)

    def velocities(self, lo: int, hi: int, cells: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Filled velocities of frames ``lo..hi`` on the ``cells`` box (None: the whole frame):
        ``(hi - lo + 1, 2, h, w)``, no NaN (step 3 of the module docstring: the same cell of the
        nearest frame of ``lo..hi`` that has one)."""
        cells = cells or self.full_box
        if self._filled is not None and self._filled[0] == (lo, hi, cells):
            return self._filled[1]
        out = torch.from_numpy(fill_from_nearest_frame(self._paint(lo, hi, cells).numpy()))
        self._filled = ((lo, hi, cells), out)
        return out

    # ------------------------------------------------------------ flow between two frames
    def flow(self, src: int, dst: int) -> torch.Tensor:
        """Flow from video frame ``src`` to ``dst`` on ``src``'s cell grid, in cells: ``(2, h, w)``
        (step 4 of the module docstring)."""
        return self.flows([(src, dst)])[0]

    def flows(self, pairs: Sequence[tuple[int, int]],
              cells: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """:meth:`flow` for several pairs: ``(P, 2, h, w)``, on the ``cells`` box ``(y0, x0, y1, x1)``
        only (None: the whole frame; see :meth:`cell_box`)."""
        cells = cells or self.full_box
        gh, gw = cells[2] - cells[0], cells[3] - cells[1]
        if not pairs:
            return torch.zeros(0, 2, gh, gw)
        lo = min(min(p) for p in pairs)
        hi = max(max(p) for p in pairs)
        vel = self.velocities(lo, hi, cells).numpy()  # [n, 2, h, w]
        return torch.from_numpy(chain_velocities(vel, np.array([s for s, _ in pairs], dtype=np.int64),
                                                 np.array([d for _, d in pairs], dtype=np.int64), lo))


class ClipCodecFlow:
    """``flow_fn(s, d)`` for the masker's loader path: the codec flow between frames ``s`` and ``d``
    of a clip whose frames are ``indices`` of the video, ``(2, h, w)`` on the cell grid. Its
    ``cell`` attribute tells :meth:`~mgmae.masking.motion_guided.MotionGuidedMasker.mask_views` to
    ask :meth:`pairs` for the crop boxes' cells and carry them at that resolution. (A clip that
    loops over a short video chains the vectors back across the whole video at the wrap: a wrong
    flow for that one pair, as any flow would be across the jump.)"""

    cell = CELL

    def __init__(self, motion: CodecMotion, indices: Sequence[int]):
        self.motion = motion
        self.indices = [int(i) for i in indices]
        self.offset = (0, 0)  # (top, left) of the frames handed to the masker in the video's frames

    def __call__(self, s: int, d: int) -> torch.Tensor:
        return self.motion.flow(self.indices[s], self.indices[d])

    def pairs(self, pairs: Sequence[tuple[int, int]], box: tuple[int, int, int, int] | None = None):
        """Flows ``(P, 2, h, w)`` for clip-frame ``pairs``; with a pixel ``box`` ``(top, left,
        bottom, right)`` only on the cells covering it, returned as ``(flows, (top, left, bottom,
        right))`` with the covered pixel box (cell-aligned in the video's frames; both boxes are
        in the coordinates of the frames cut out at :attr:`offset`, so the covered one may start
        before 0)."""
        video_pairs = [(self.indices[s], self.indices[d]) for s, d in pairs]
        if box is None:
            return self.motion.flows(video_pairs)
        oy, ox = self.offset  # the box is on frames cut out at (oy, ox) of the video's
        cells = self.motion.cell_box((box[0] + oy, box[1] + ox, box[2] + oy, box[3] + ox))
        y0, x0, y1, x1 = cells
        covered = (y0 * CELL - oy, x0 * CELL - ox, y1 * CELL - oy, x1 * CELL - ox)
        return self.motion.flows(video_pairs, cells), covered
