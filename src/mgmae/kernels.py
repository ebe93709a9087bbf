"""The loader's small-array loops, compiled with numba: where the work is a few thousand values per
call and NumPy's or torch's per-operation dispatch, not the arithmetic, is the cost.

* :func:`warp_plane` / :func:`warp_batch`: bilinear backward warping with ``zeros`` or ``border``
  padding, the float32 operations of :func:`mgmae.flow.warp.backward_warp`'s torch path in the
  same order (no fast-math, no fused multiply-add), so the same bits (``tests/test_warp.py``);
* :func:`propagate_backward`: step 3 of motion-guided masking with backward warping, the same bits
  as :meth:`mgmae.masking.motion_guided.MotionGuidedMasker.propagate`'s torch path
  (``tests/test_motion_guided.py``);
* :func:`paint_vectors`, :func:`finish_paint`, :func:`fill_from_nearest_frame`,
  :func:`chain_velocities`: codec motion
  vectors -> flow, steps 2-4 of :mod:`mgmae.flow.codec` (tested on hand-made vectors with known
  answers and on encoded clips of a known translation, ``tests/test_codec_flow.py``);
* :func:`crop_resize_flow`: a view's crop / bilinear upsampling / flip of a small flow field
  (:func:`mgmae.data.transforms.apply_flow`), torch's formula, equal to it within float32 rounding
  (``tests/test_datasets.py``).

Compiled on first use (a few seconds) and cached next to this file (``cache=True``; later
processes load them in a fraction of a second); a DataLoader worker forked after the first use
inherits the compiled code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CODEC_CELL = 8  # pixels per cell of the codec-flow grid (mgmae.flow.codec.CELL)


@njit(cache=True, nogil=True, inline="always")
def _clamp(p, size):  # pragma: no cover
    """torch's ``nan_to_num(nan=-1, posinf=size, neginf=-1)`` then ``clamp(-1, size)`` of a sample
    coordinate (float32)."""
    if not p >= np.float32(-1.0):  # (NaN too)
        return np.float32(-1.0)
    if p > np.float32(size):
        return np.float32(size)
    return p


@njit(cache=True, nogil=True, inline="always")
def _cell(p, size):  # pragma: no cover
    """A sample coordinate in ``[-1, size]`` -> ``(k, a)``: its first cell ``k = min(floor(p), size
    - 1)`` (-1 .. size - 1) and the weight ``a = p - k`` of cell ``k + 1`` (float32; exactly 0 at
    integer positions)."""
    k = min(np.float32(np.floor(p)), np.float32(size - 1))
    return int(k), np.float32(p - k)


@njit(cache=True, nogil=True, inline="always")
def _bilinear(src, r0, c0, ay, ax, border):  # pragma: no cover
    """``src (H, W)`` at the taps ``r0 .. r0 + 1``, ``c0 .. c0 + 1`` with weights ``ay``, ``ax``: the
    float32 operations of :func:`mgmae.flow.warp._bilinear_gather`, in its order; outside the plane
    the edge value (``border``) or 0."""
    h, w = src.shape
    zero = np.float32(0.0)
    r1, c1 = r0 + 1, c0 + 1
    if border:  # replicate the edge
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, h - 1), min(c1, w - 1)
        v00, v01, v10, v11 = src[r0, c0], src[r0, c1], src[r1, c0], src[r1, c1]
    else:  # zeros outside
        v00 = src[r0, c0] if r0 >= 0 and c0 >= 0 else zero
        v01 = src[r0, c1] if r0 >= 0 and c1 < w else zero
        v10 = src[r1, c0] if r1 < h and c0 >= 0 else zero
        v11 = src[r1, c1] if r1 < h and c1 < w else zero
    return _mix(v00, v01, v10, v11, ay, ax)


@njit(cache=True, nogil=True, inline="always")
def _mix(v00, v01, v10, v11, ay, ax):  # pragma: no cover
    """The bilinear blend of four corner values (rows 0/1, columns 0/1) with weights ``ay``, ``ax``
    of the second row / column: the float32 operations of :func:`mgmae.flow.warp._bilinear_gather`,
    in its order."""
    one = np.float32(1.0)
    gx = np.float32(one - ax)
    top = np.float32(np.float32(v00 * gx) + np.float32(v01 * ax))
    bottom = np.float32(np.float32(v10 * gx) + np.float32(v11 * ax))
    return np.float32(np.float32(top * np.float32(one - ay)) + np.float32(bottom * ay))


@njit(cache=True, nogil=True)
def warp_plane(src, fx, fy, border, lo, top_x, top_y, out, valid):  # pragma: no cover (compiled)
    """One plane: ``out[p] = src(p + (fx, fy)[p])`` bilinear, ``valid[p]`` the validity of the
    sample point; the float32 operations of :func:`mgmae.flow.warp._bilinear_gather`, in its order. ``src``,
    ``fx``, ``fy``, ``out`` ``(H, W)`` float32, ``valid`` ``(H, W)`` bool."""
    h, w = src.shape
    for i in range(h):
        yi = np.float32(i)
        for j in range(w):
            px = fx[i, j] + np.float32(j)
            py = fy[i, j] + yi
            valid[i, j] = px >= lo and px <= top_x and py >= lo and py <= top_y  # NaN: False
            c0, ax = _cell(_clamp(px, w), w)
            r0, ay = _cell(_clamp(py, h), h)
            out[i, j] = _bilinear(src, r0, c0, ay, ax, border)


@njit(cache=True, nogil=True)
def warp_batch(x, flow, border, lo, top_x, top_y, out, valid):  # pragma: no cover (compiled)
    for k in range(x.shape[0]):
        for c in range(x.shape[1]):
            warp_plane(x[k, c], flow[k, 0], flow[k, 1], border, lo, top_x, top_y, out[k, c], valid[k, 0])


@njit(cache=True, nogil=True)
def propagate_backward(init, flows, base, order, pair, consist, lo, top_x, top_y, out):  # pragma: no cover
    """Step 3 with backward warping, compiled: ``out[:, t] = warp(out[:, nb], flows[:, pair[k]])``
    for ``t = order[k]`` (``nb`` its known neighbour), holes from ``init`` (``consist``) or 0.
    :func:`warp_plane`'s float32 operations with zero padding, fused with the hole filling: a
    pixel whose sample point is out of bounds (or NaN) takes the hole value at once, an in-bounds
    one (``lo <= p <= top``, so no clamping applies) is interpolated (~25% less time than a warp
    followed by a filling pass)."""
    B, T, H, W = out.shape
    zero = np.float32(0.0)
    for b in range(B):
        out[b, base] = init[b]
        for k in range(order.shape[0]):
            t = order[k]
            nb = t - 1 if t > base else t + 1
            src, dst = out[b, nb], out[b, t]
            fx, fy = flows[b, pair[k], 0], flows[b, pair[k], 1]
            for i in range(H):
                yi = np.float32(i)
                for j in range(W):
                    px = fx[i, j] + np.float32(j)
                    py = fy[i, j] + yi
                    if not (px >= lo and px <= top_x and py >= lo and py <= top_y):  # (NaN: a hole)
                        dst[i, j] = init[b, i, j] if consist else zero
                        continue
                    c0, ax = _cell(px, W)  # (in bounds: no clamping applies)
                    r0, ay = _cell(py, H)
                    dst[i, j] = _bilinear(src, r0, c0, ay, ax, False)


@njit(cache=True, nogil=True)
def paint_vectors(vectors, frame, past, future, cy, cx, height, width, count, sum_x, sum_y):  # pragma: no cover
    """Codec motion vectors of one frame -> sums on a box of 8-pixel cells (steps 1-2 of
    :mod:`mgmae.flow.codec`); returns the number of vectors dropped as longer than the frame.

    ``vectors``: FFmpeg's records (PyAV's structured array, read in place), ``frame`` the frame's
    index in the span, ``past`` / ``future`` its reference distances (0: none), ``(cy, cx)`` the
    box's first cell; ``count``, ``sum_x``, ``sum_y`` ``(n, gh, gw)``: each vector adds its
    velocity (pixels per frame, forward in time, float64) to the cells of its ``w x h`` block
    inside the box (:func:`finish_paint` turns them into means)."""
    _, gh, gw = count.shape
    cell = CODEC_CELL
    zero = np.float32(0.0)
    absurd = 0
    for i in range(vectors.shape[0]):
        v = vectors[i]
        bw, bh = np.int64(v.w), np.int64(v.h)
        x0 = (np.int64(v.dst_x) - bw // 2) // cell - cx  # the block's first cell in the box
        y0 = (np.int64(v.dst_y) - bh // 2) // cell - cy
        xa, xb = max(x0, 0), min(x0 + max(bw // cell, 1), gw)  # its cells inside the box
        ya, yb = max(y0, 0), min(y0 + max(bh // cell, 1), gh)
        if xa >= xb or ya >= yb:
            continue
        is_past = v.source < 0
        d = np.float32(past if is_past else future)
        scale = np.float32(v.motion_scale)
        if not (scale > zero and d > zero):  # no scale, or no reference known in that direction
            continue
        per = (np.float32(-1.0) if is_past else np.float32(1.0)) / np.float32(scale * d)  # float32
        vx = np.float64(v.motion_x) * np.float64(per)  # pixels per frame, forward in time
        vy = np.float64(v.motion_y) * np.float64(per)
        if abs(vx * np.float64(d)) > width or abs(vy * np.float64(d)) > height:
            absurd += 1
            continue
        for y in range(ya, yb):
            for x in range(xa, xb):
                count[frame, y, x] += 1
                sum_x[frame, y, x] += vx
                sum_y[frame, y, x] += vy
    return absurd


@njit(cache=True, nogil=True)
def finish_paint(count, sum_x, sum_y):  # pragma: no cover
    """:func:`paint_vectors`' sums -> raw velocity ``(n, 2, gh, gw)`` float32 in cells per frame:
    the mean of the vectors that cover a cell (summed in float64 in the frames' and the vectors'
    order), NaN where none does."""
    n, gh, gw = count.shape
    out = np.empty((n, 2, gh, gw), np.float32)
    nan = np.float32(np.nan)
    for f in range(n):
        for i in range(gh):
            for j in range(gw):
                c = count[f, i, j]
                if c == 0:
                    out[f, 0, i, j] = nan
                    out[f, 1, i, j] = nan
                else:
                    q = np.float64(c * CODEC_CELL)
                    out[f, 0, i, j] = np.float32(sum_x[f, i, j] / q)
                    out[f, 1, i, j] = np.float32(sum_y[f, i, j] / q)
    return out


@njit(cache=True, nogil=True)
def fill_from_nearest_frame(raw):  # pragma: no cover
    """Step 3 of :mod:`mgmae.flow.codec`: each cell without a vector (NaN) takes the value of the
    same cell in the nearest frame that has one (the mean of both at equal distance, in float32);
    0 where no frame has one. ``raw (n, 2, h, w)`` float32, filled in place and returned (safe:
    a cell's sources are frames that have a vector there, which keep their values)."""
    n, _, h, w = raw.shape
    out = raw
    prev = np.empty(n, np.int64)
    nxt = np.empty(n, np.int64)
    two = np.float32(2.0)
    for i in range(h):
        for j in range(w):
            last = -1
            for t in range(n):
                if not np.isnan(raw[t, 0, i, j]):
                    last = t
                prev[t] = last
            last = -1
            for t in range(n - 1, -1, -1):
                if not np.isnan(raw[t, 0, i, j]):
                    last = t
                nxt[t] = last
            for t in range(n):
                p, q = prev[t], nxt[t]
                if p < 0 and q < 0:
                    out[t, 0, i, j] = np.float32(0.0)
                    out[t, 1, i, j] = np.float32(0.0)
                elif q < 0 or (p >= 0 and t - p < q - t):
                    out[t, 0, i, j] = raw[p, 0, i, j]
                    out[t, 1, i, j] = raw[p, 1, i, j]
                elif p < 0 or q - t < t - p:
                    out[t, 0, i, j] = raw[q, 0, i, j]
                    out[t, 1, i, j] = raw[q, 1, i, j]
                else:
                    out[t, 0, i, j] = np.float32(raw[p, 0, i, j] + raw[q, 0, i, j]) / two
                    out[t, 1, i, j] = np.float32(raw[p, 1, i, j] + raw[q, 1, i, j]) / two
    return out


@njit(cache=True, nogil=True)
def chain_velocities(vel, src, dst, lo):  # pragma: no cover
    """Step 4 of :mod:`mgmae.flow.codec`: the flow of each pair ``(src[p], dst[p])`` (frames of
    the video, ``vel[0]`` is frame ``lo``), ``f += s * V_m(x + f)`` for each frame ``m`` on the
    way (``s = +-1`` the direction), each step read bilinearly at the displaced position with
    border padding (:func:`warp_plane`'s operations, both channels at one position; exact at integer
    positions). ``vel (n, 2, h, w)`` -> ``(P, 2, h, w)`` float32, in cells."""
    n, _, h, w = vel.shape
    P = src.shape[0]
    out = np.zeros((P, 2, h, w), np.float32)
    for p in range(P):
        step = 1 if dst[p] > src[p] else -1
        sign = np.float32(step)
        fx, fy = out[p, 0], out[p, 1]
        for s in range(abs(dst[p] - src[p])):
            m = src[p] - lo + s * step
            vx, vy = vel[m, 0], vel[m, 1]
            for i in range(h):
                yi = np.float32(i)
                for j in range(w):  # both channels sampled at one position, border padding
                    c0, ax = _cell(_clamp(fx[i, j] + np.float32(j), w), w)
                    r0, ay = _cell(_clamp(fy[i, j] + yi, h), h)
                    sx = _bilinear(vx, r0, c0, ay, ax, True)
                    sy = _bilinear(vy, r0, c0, ay, ax, True)
                    fx[i, j] = fx[i, j] + sx * sign
                    fy[i, j] = fy[i, j] + sy * sign
    return out


@njit(cache=True, nogil=True)
def _linear_taps(n_in, n_out, start):  # pragma: no cover
    """Bilinear resizing ``n_in -> n_out`` with ``align_corners=False`` (torch's
    ``upsample_bilinear2d`` without antialiasing): per output position its two source taps
    (offset by ``start``; the last one repeated at the edge) and the float32 weight of the second."""
    i0 = np.empty(n_out, np.int64)
    i1 = np.empty(n_out, np.int64)
    lam = np.empty(n_out, np.float32)
    scale = np.float32(n_in) / np.float32(n_out)
    half, zero, one = np.float32(0.5), np.float32(0.0), np.float32(1.0)
    for j in range(n_out):
        src = np.float32(np.float32(scale * np.float32(np.float32(j) + half)) - half)
        if src < zero:
            src = zero
        k = min(int(np.floor(src)), n_in - 1)
        lam[j] = min(max(np.float32(src - np.float32(k)), zero), one)
        i0[j] = start + k
        i1[j] = start + min(k + 1, n_in - 1)
    return i0, i1, lam


@njit(cache=True, nogil=True)
def crop_resize_flow(flow, top, left, height, width, out_h, out_w, flip, scale_x, scale_y):  # pragma: no cover
    """``flow (N, 2, H, W)`` float32 -> its box ``(top, left, height, width)`` resized bilinearly to
    ``(out_h, out_w)`` (``align_corners=False``, no antialiasing: for upsampling or equal sizes),
    mirrored left-right if ``flip``, channel 0 times ``scale_x`` and channel 1 times ``scale_y``
    (float32; the caller negates ``scale_x`` on a flip): ``(N, 2, out_h, out_w)``."""
    n = flow.shape[0]
    y0, y1, ay = _linear_taps(height, out_h, top)
    x0, x1, ax = _linear_taps(width, out_w, left)
    out = np.empty((n, 2, out_h, out_w), np.float32)
    for k in range(n):
        for c in range(2):
            s = scale_x if c == 0 else scale_y
            src = flow[k, c]
            for i in range(out_h):
                r0, r1, a = y0[i], y1[i], ay[i]
                for j in range(out_w):
                    q0, q1 = x0[j], x1[j]
                    v = _mix(src[r0, q0], src[r0, q1], src[r1, q0], src[r1, q1], a, ax[j])
                    out[k, c, i, out_w - 1 - j if flip else j] = np.float32(v * s)
    return out


@njit(cache=True, nogil=True)
def max_of_bumps(gy, gx, iy, ix):  # pragma: no cover
    """The ``mix_gauss`` initial map: ``out[b, i, j] = max_k gy[iy[b, k], i] * gx[ix[b, k], j]``
    (float32 products, the max of the separable bumps centred on the chosen patches), the same
    floats as :meth:`mgmae.masking.motion_guided.MotionGuidedMasker.initial_map`'s torch path.
    ``gy (h, hs)``, ``gx (w, ws)`` float32, ``iy``, ``ix`` ``(B, k)`` int64 -> ``(B, hs, ws)``."""
    B, k = iy.shape
    hs, ws = gy.shape[1], gx.shape[1]
    out = np.zeros((B, hs, ws), np.float32)  # (bumps are > 0 or underflow to 0)
    for b in range(B):
        for q in range(k):
            ry, rx = gy[iy[b, q]], gx[ix[b, q]]
            for i in range(hs):
                y = ry[i]
                for j in range(ws):
                    v = np.float32(y * rx[j])
                    if v > out[b, i, j]:
                        out[b, i, j] = v
    return out
