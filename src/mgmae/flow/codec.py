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
import torch.nn.functional as F

__all__ = ["CELL", "CodecMotion", "ClipCodecFlow", "FrameRecord", "motion_vectors",
           "reference_distances", "packet_is_reference"]

CELL = 8  # pixels per cell of the codec-flow grid (FFmpeg's finest H.264 motion block)

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


def motion_vectors(frame) -> np.ndarray | None:
    """The MOTION_VECTORS side data of a PyAV frame as FFmpeg's structured array (None: none)."""
    for sd in frame.side_data:
        kind = getattr(sd.type, "name", str(sd.type))
        if kind == "MOTION_VECTORS":
            return sd.to_ndarray()
    return None


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
        docstring), every vector of the span painted in one pass."""
        global _warned_absurd
        cy, cx, gh, gw = cells[0], cells[1], cells[2] - cells[0], cells[3] - cells[1]
        n = hi - lo + 1
        parts = []
        for i in range(lo, hi + 1):
            r = self.records.get(i)
            if r is not None and r.vectors is not None and len(r.vectors):
                past_d, future_d = self.distances.get(i, (None, None))
                parts.append((i - lo, r.vectors, past_d or 0, future_d or 0))
        if not parts:
            return torch.full((n, 2, gh, gw), float("nan"))
        dtype = parts[0][1].dtype  # (as bytes: numpy concatenates structured arrays slowly)
        v = np.concatenate([np.ascontiguousarray(p[1]).view(np.uint8) for p in parts]).view(dtype)
        lengths = [len(p[1]) for p in parts]
        # plain columns first: arithmetic and gathers on a structured array are ~10x slower
        bw, bh = v["w"].astype(np.int32), v["h"].astype(np.int32)
        x0 = (v["dst_x"].astype(np.int32) - bw // 2) // CELL - cx  # [m] the block's first cell
        y0 = (v["dst_y"].astype(np.int32) - bh // 2) // CELL - cy
        cw, ch = np.maximum(bw // CELL, 1), np.maximum(bh // CELL, 1)  # [m] cells per side
        sel = ((x0 < gw) & (x0 + cw > 0) & (y0 < gh) & (y0 + ch > 0)).nonzero()[0]  # touch the box
        x0, y0, cw, ch = x0[sel], y0[sel], cw[sel], ch[sel]
        frame = np.repeat(np.array([p[0] for p in parts]), lengths)[sel]
        src = v["source"][sel]
        d = np.where(src < 0, np.repeat(np.array([p[2] for p in parts]), lengths)[sel],
                     np.repeat(np.array([p[3] for p in parts]), lengths)[sel]).astype(np.float32)
        scale = v["motion_scale"][sel].astype(np.float32)
        ok = (scale > 0) & (d > 0)
        per = np.where(src < 0, -1.0, 1.0).astype(np.float32) / np.where(ok, scale * d, 1.0)
        vx = v["motion_x"][sel] * per  # [m] pixels per frame, forward in time
        vy = v["motion_y"][sel] * per
        H, W = self.size
        absurd = ok & ((np.abs(vx * d) > W) | (np.abs(vy * d) > H))
        if absurd.any() and not _warned_absurd:
            warnings.warn(f"{self.path}: {int(absurd.sum())} motion vectors longer than the frame were "
                          "dropped (further occurrences are not reported)", RuntimeWarning, stacklevel=3)
            _warned_absurd = True
        ok &= ~absurd
        # each vector paints its cw x ch cells (at most 2 x 2 for H.264's 16-pixel blocks on 8-pixel
        # cells): the flat cell index of every (vector, offset) pair, then one sum per channel
        base = (frame * gh + y0) * gw + x0  # [m] flat index of the block's first cell
        k = int(max(cw.max(initial=1), ch.max(initial=1)))
        cell_idx, rows = [], []
        for oy in range(k):
            for ox in range(k):
                hit = ok & (cw > ox) & (ch > oy) & (x0 >= -ox) & (x0 < gw - ox) & (y0 >= -oy) & (y0 < gh - oy)
                r = hit.nonzero()[0]
                rows.append(r)
                cell_idx.append(base[r] + (oy * gw + ox))
        idx, r = np.concatenate(cell_idx), np.concatenate(rows)
        size = n * gh * gw
        count = np.bincount(idx, minlength=size)  # vectors per cell
        sums = np.stack([np.bincount(idx, weights=vx[r], minlength=size),
                         np.bincount(idx, weights=vy[r], minlength=size)])  # [2, n*h*w], pixels
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (sums / (count * CELL)).astype(np.float32)  # cells per frame, NaN (0 / 0) where none
        return torch.from_numpy(np.ascontiguousarray(out.reshape(2, n, gh, gw).transpose(1, 0, 2, 3)))

    def velocities(self, lo: int, hi: int, cells: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Filled velocities of frames ``lo..hi`` on the ``cells`` box (None: the whole frame):
        ``(hi - lo + 1, 2, h, w)``, no NaN (step 3 of the module docstring: the same cell of the
        nearest frame of ``lo..hi`` that has one)."""
        cells = cells or self.full_box
        if self._filled is not None and self._filled[0] == (lo, hi, cells):
            return self._filled[1]
        gh, gw = cells[2] - cells[0], cells[3] - cells[1]
        n = hi - lo + 1
        raw = self._paint(lo, hi, cells).numpy()  # [n, 2, h, w]
        hw = gh * gw
        known = ~np.isnan(raw[:, 0].reshape(n, hw))  # [n, hw]
        t = np.arange(n, dtype=np.int32)[:, None]
        prev = np.maximum.accumulate(np.where(known, t, -1), axis=0)  # nearest known at or before t
        nxt = np.minimum.accumulate(np.where(known, t, n)[::-1], axis=0)[::-1]  # ... at or after t
        d_prev = np.where(prev >= 0, t - prev, n + 1)
        d_next = np.where(nxt < n, nxt - t, n + 1)
        flat = raw.reshape(-1)  # gather cell j of frame f, channel c at (f * 2 + c) * hw + j
        at_prev = np.maximum(prev, 0) * (2 * hw) + np.arange(hw, dtype=np.int32)  # [n, hw]
        at_next = np.minimum(nxt, n - 1) * (2 * hw) + np.arange(hw, dtype=np.int32)
        vp = np.stack([flat.take(at_prev), flat.take(at_prev + hw)], 1)  # [n, 2, hw]
        vn = np.stack([flat.take(at_next), flat.take(at_next + hw)], 1)
        dp, dn = d_prev[:, None], d_next[:, None]
        out = np.where(dp < dn, vp, np.where(dn < dp, vn, (vp + vn) / np.float32(2)))
        out[np.isnan(out)] = 0.0  # no frame of the span covers the cell
        out = torch.from_numpy(out.reshape(n, 2, gh, gw))
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
        vel = self.velocities(lo, hi, cells)  # [n, 2, h, w]
        ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float32),
                                torch.arange(gw, dtype=torch.float32), indexing="ij")
        base = torch.stack([xs, ys])  # [2, h, w] cell centres (in cells, minus 0.5)
        # every pair chained at once: step j of pair (s, d) adds flow(m, m +- 1), m = s +- j, read
        # at where the first j steps took each cell (nothing to read for a pair still at rest)
        P = len(pairs)
        f = torch.zeros(P, 2, gh, gw)
        lengths = [abs(d - s) for s, d in pairs]
        for j in range(max(lengths)):
            act = [i for i in range(P) if lengths[i] > j]
            sign = torch.tensor([1.0 if pairs[i][1] > pairs[i][0] else -1.0 for i in act]).view(-1, 1, 1, 1)
            m = torch.tensor([pairs[i][0] - lo + j * (1 if pairs[i][1] > pairs[i][0] else -1) for i in act])
            v = vel[m] * sign  # [A, 2, h, w]: flow(m, m + step) on m's grid
            if j:
                fa = f[act]
                moved = fa.flatten(1).any(1)  # [A]
                if bool(moved.any()):
                    v = torch.where(moved.view(-1, 1, 1, 1), _sample(v, base + fa), v)
            f[act] = f[act] + v
        return f


def _sample(field: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Bilinear ``field (N, C, h, w)`` at positions ``pos (N, 2, h, w)`` (x, y in cells),
    border-clamped."""
    _, _, h, w = field.shape
    gx = (pos[:, 0] + 0.5) / w * 2 - 1
    gy = (pos[:, 1] + 0.5) / h * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)  # [N, h, w, 2]
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
