"""Mask quality measures that need ground truth (synthetic data)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def tracking_rate(mask: torch.Tensor, grid: tuple[int, int, int], patch_size: int, tubelet_size: int,
                  flow_fn: Callable[[int, int], torch.Tensor], region: torch.Tensor | None = None,
                  ref_slice: int | None = None, slices: Iterable[int] | None = None) -> tuple[int, int]:
    """How often the scene point under a visible cube stays under a visible cube.

    For every visible cube of the reference slice (default: the middle one) whose centre, at the
    slice's first frame, lies in ``region`` (``bool (T, H, W)``, e.g. moving objects; None =
    everywhere), follow the ground-truth flow to the first frame of every other slice in
    ``slices`` (default: all) and check whether the cube holding that point there is visible
    too. Returns ``(hits, count)``; points that leave the frame are not counted. Tube masking
    scores 1 on static content and falls with motion; a mask that follows motion stays high.
    """
    t, h, w = grid
    m = mask.reshape(t, h, w)
    H, W = h * patch_size, w * patch_size
    ref = t // 2 if ref_slice is None else ref_slice
    f0 = ref * tubelet_size
    hits = count = 0
    cubes = [(i, j) for i, j in (~m[ref]).nonzero().tolist()]
    for s in slices if slices is not None else range(t):
        if s == ref:
            continue
        flow = flow_fn(f0, s * tubelet_size)  # [2, H, W] on the reference frame's grid
        for i, j in cubes:
            y, x = int((i + 0.5) * patch_size), int((j + 0.5) * patch_size)
            if region is not None and not bool(region[f0, y, x]):
                continue
            x1, y1 = x + float(flow[0, y, x]), y + float(flow[1, y, x])
            if not (0 <= x1 < W and 0 <= y1 < H):
                continue
            count += 1
            hits += int(not bool(m[s, int(y1 // patch_size), int(x1 // patch_size)]))
    return hits, count
