"""The loader's small-array loops, compiled with numba: where the work is a few thousand values per
call and NumPy's or torch's per-operation dispatch, not the arithmetic, is the cost.

* :func:`warp_plane` / :func:`warp_batch`: bilinear backward warping with ``zeros`` or ``border``
  padding, the float32 operations of :func:`mgmae.flow.warp.backward_warp`'s torch path in the
  same order (no fast-math, no fused multiply-add), so the same bits (``tests/test_warp.py``);
* :func:`propagate_backward`: step 3 of motion-guided masking with backward warping, the same bits
  as :meth:`mgmae.masking.motion_guided.MotionGuidedMasker.propagate`'s torch path
  (``tests/test_motion_guided.py``);
* :func:`paint_vectors`, :func:`fill_from_nearest_frame`, :func:`chain_velocities`: codec motion
  vectors -> flow, steps 2-4 of :mod:`mgmae.flow.codec` (tested on hand-made vectors with known
  answers and on encoded clips of a known translation, ``tests/test_codec_flow.py``).

Compiled on first use (a few seconds) and cached next to this file (``cache=True``; later
processes load them in a fraction of a second); a DataLoader worker forked after the first use
inherits the compiled code.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def warp_plane(src, fx, fy, border, lo, top_x, top_y, out, valid):  # pragma: no cover (compiled)
    """One plane: ``out[p] = src(p + (fx, fy)[p])`` bilinear, ``valid[p]`` the validity of the
    sample point; the float32 operations of :func:`mgmae.flow.warp._bilinear_gather`, in its order. ``src``,
    ``fx``, ``fy``, ``out`` ``(H, W)`` float32, ``valid`` ``(H, W)`` bool."""
    h, w = src.shape
    one, zero, neg1 = np.float32(1.0), np.float32(0.0), np.float32(-1.0)
    size_x, size_y = np.float32(w), np.float32(h)
    hi_x, hi_y = np.float32(w - 1), np.float32(h - 1)
    for i in range(h):
        yi = np.float32(i)
        for j in range(w):
            px = fx[i, j] + np.float32(j)
            py = fy[i, j] + yi
            valid[i, j] = px >= lo and px <= top_x and py >= lo and py <= top_y  # NaN: False
            # nan_to_num(nan=-1, posinf=size, neginf=-1), clamp(-1, size)
            if not px >= neg1:
                px = neg1
            elif px > size_x:
                px = size_x
            if not py >= neg1:
                py = neg1
            elif py > size_y:
                py = size_y
            x0 = min(np.float32(np.floor(px)), hi_x)
            y0 = min(np.float32(np.floor(py)), hi_y)
            ax = np.float32(px - x0)  # in [0, 1]; exactly 0 for integer positions
            ay = np.float32(py - y0)
            c0, r0 = int(x0), int(y0)  # the top-left corner, -1 .. size - 1
            c1, r1 = c0 + 1, r0 + 1
            if border:  # replicate the edge
                c0, r0 = max(c0, 0), max(r0, 0)
                c1, r1 = min(c1, w - 1), min(r1, h - 1)
                v00, v01, v10, v11 = src[r0, c0], src[r0, c1], src[r1, c0], src[r1, c1]
            else:  # zeros outside
                v00 = src[r0, c0] if r0 >= 0 and c0 >= 0 else zero
                v01 = src[r0, c1] if r0 >= 0 and c1 < w else zero
                v10 = src[r1, c0] if r1 < h and c0 >= 0 else zero
                v11 = src[r1, c1] if r1 < h and c1 < w else zero
            gx = np.float32(one - ax)
            top = np.float32(np.float32(v00 * gx) + np.float32(v01 * ax))
            bottom = np.float32(np.float32(v10 * gx) + np.float32(v11 * ax))
            out[i, j] = np.float32(np.float32(top * np.float32(one - ay)) + np.float32(bottom * ay))


@njit(cache=True, nogil=True)
def warp_batch(x, flow, border, lo, top_x, top_y, out, valid):  # pragma: no cover (compiled)
    for k in range(x.shape[0]):
        for c in range(x.shape[1]):
            warp_plane(x[k, c], flow[k, 0], flow[k, 1], border, lo, top_x, top_y, out[k, c], valid[k, 0])


@njit(cache=True, nogil=True)
def propagate_backward(init, flows, base, order, pair, consist, lo, top_x, top_y, out):  # pragma: no cover
    """Step 3 with backward warping, compiled: ``out[:, t] = warp(out[:, nb], flows[:, pair[k]])``
    for ``t = order[k]`` (``nb`` its known neighbour), holes from ``init`` (``consist``) or 0."""
    B, T, H, W = out.shape
    m = np.empty((H, W), dtype=np.float32)
    valid = np.empty((H, W), dtype=np.bool_)
    for b in range(B):
        out[b, base] = init[b]
        for k in range(order.shape[0]):
            t = order[k]
            nb = t - 1 if t > base else t + 1
            warp_plane(out[b, nb], flows[b, pair[k], 0], flows[b, pair[k], 1], False, lo, top_x, top_y,
                       m, valid)
            for i in range(H):
                for j in range(W):
                    out[b, t, i, j] = m[i, j] if valid[i, j] else (init[b, i, j] if consist else np.float32(0.0))


@njit(cache=True, nogil=True)
def paint_vectors(source, bw8, bh8, dst_x, dst_y, motion_x, motion_y, motion_scale, part, part_frame,
                  part_past, part_future, cy, cx, n, gh, gw, height, width):  # pragma: no cover
    """Codec motion vectors -> raw per-frame velocity on a box of 8-pixel cells (steps 1-2 of
    :mod:`mgmae.flow.codec`): ``(n, 2, gh, gw)`` float32 in cells per frame, NaN where no vector
    covers a cell, and the number of vectors dropped as longer than the frame.

    Inputs: FFmpeg's fields of every vector of the span (any strides), ``part[i]`` the record of
    vector ``i`` and per record its frame in the span and its past / future reference distances
    (0: none). Each vector paints its ``w x h`` block; a cell is the mean of the vectors that
    cover it, summed in float64 in the order (block offset, vector)."""
    m = source.shape[0]
    cell = 8
    x0s = np.empty(m, np.int64)
    y0s = np.empty(m, np.int64)
    cws = np.empty(m, np.int64)
    chs = np.empty(m, np.int64)
    frames = np.empty(m, np.int64)
    vxs = np.empty(m, np.float64)
    vys = np.empty(m, np.float64)
    oks = np.empty(m, np.bool_)
    k = 1
    s = 0  # vectors touching the box, in their order
    absurd = 0
    for i in range(m):
        bw, bh = np.int64(bw8[i]), np.int64(bh8[i])
        x0 = (np.int64(dst_x[i]) - bw // 2) // cell - cx  # the block's first cell
        y0 = (np.int64(dst_y[i]) - bh // 2) // cell - cy
        cw, ch = max(bw // cell, 1), max(bh // cell, 1)
        if not (x0 < gw and x0 + cw > 0 and y0 < gh and y0 + ch > 0):
            continue
        p = part[i]
        past = source[i] < 0
        d = np.float32(part_past[p] if past else part_future[p])
        scale = np.float32(motion_scale[i])
        ok = scale > np.float32(0.0) and d > np.float32(0.0)
        sign = np.float32(-1.0) if past else np.float32(1.0)
        per = sign / (np.float32(scale * d) if ok else np.float32(1.0))  # float32
        vx = np.float64(motion_x[i]) * np.float64(per)  # pixels per frame, forward in time
        vy = np.float64(motion_y[i]) * np.float64(per)
        if ok and (abs(vx * np.float64(d)) > width or abs(vy * np.float64(d)) > height):
            ok = False
            absurd += 1
        x0s[s], y0s[s], cws[s], chs[s] = x0, y0, cw, ch
        frames[s], vxs[s], vys[s], oks[s] = part_frame[p], vx, vy, ok
        k = max(k, cw, ch)
        s += 1
    size = n * gh * gw
    count = np.zeros(size, np.int64)
    sum_x = np.zeros(size, np.float64)
    sum_y = np.zeros(size, np.float64)
    for oy in range(k):
        for ox in range(k):
            for r in range(s):
                x0, y0 = x0s[r], y0s[r]
                if (oks[r] and cws[r] > ox and chs[r] > oy and x0 >= -ox and x0 < gw - ox
                        and y0 >= -oy and y0 < gh - oy):
                    c = ((frames[r] * gh + y0) * gw + x0) + (oy * gw + ox)
                    count[c] += 1
                    sum_x[c] += vxs[r]
                    sum_y[c] += vys[r]
    out = np.empty((n, 2, gh, gw), np.float32)
    nan = np.float32(np.nan)
    for f in range(n):
        for i in range(gh):
            for j in range(gw):
                c = (f * gh + i) * gw + j
                if count[c] == 0:
                    out[f, 0, i, j] = nan
                    out[f, 1, i, j] = nan
                else:
                    q = np.float64(count[c] * cell)
                    out[f, 0, i, j] = np.float32(sum_x[c] / q)
                    out[f, 1, i, j] = np.float32(sum_y[c] / q)
    return out, absurd


@njit(cache=True, nogil=True)
def fill_from_nearest_frame(raw):  # pragma: no cover
    """Step 3 of :mod:`mgmae.flow.codec`: each cell without a vector (NaN) takes the value of the
    same cell in the nearest frame that has one (the mean of both at equal distance, in float32);
    0 where no frame has one. ``raw (n, 2, h, w)`` float32 -> a new array."""
    n, _, h, w = raw.shape
    out = np.empty_like(raw)
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
def chain_velocities(vel, src, dst, lo, bound_lo, top_x, top_y):  # pragma: no cover
    """Step 4 of :mod:`mgmae.flow.codec`: the flow of each pair ``(src[p], dst[p])`` (frames of
    the video, ``vel[0]`` is frame ``lo``), ``f += s * V_m(x + f)`` for each frame ``m`` on the
    way (``s = +-1`` the direction), each step read bilinearly at the displaced position with
    border padding (:func:`warp_plane`; exact at integer positions). ``vel (n, 2, h, w)`` -> ``(P,
    2, h, w)`` float32, in cells."""
    n, _, h, w = vel.shape
    P = src.shape[0]
    out = np.zeros((P, 2, h, w), np.float32)
    vx = np.empty((h, w), np.float32)
    vy = np.empty((h, w), np.float32)
    valid = np.empty((h, w), np.bool_)
    for p in range(P):
        step = 1 if dst[p] > src[p] else -1
        sign = np.float32(step)
        fx, fy = out[p, 0], out[p, 1]
        for j in range(abs(dst[p] - src[p])):
            m = src[p] - lo + j * step
            warp_plane(vel[m, 0], fx, fy, True, bound_lo, top_x, top_y, vx, valid)
            warp_plane(vel[m, 1], fx, fy, True, bound_lo, top_x, top_y, vy, valid)
            for i in range(h):
                for q in range(w):
                    fx[i, q] = fx[i, q] + vx[i, q] * sign
                    fy[i, q] = fy[i, q] + vy[i, q] * sign
    return out
