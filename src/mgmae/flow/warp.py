"""Warping with optical flow: backward warp, forward (splatting) warp, flow resizing.

Flow convention (the project contract): ``flow`` is float ``(N, 2, H, W)`` in pixels, channel 0 = x,
channel 1 = y, defined on the grid of ``src``: pixel ``p`` of ``src`` moves to ``p + flow[p]`` in ``dst``.

Pixel coordinates are pixel *centres*: pixel ``(i, j)`` (row ``i``, column ``j``) sits at
``x = j, y = i``; the frame covers ``[0, W-1] x [0, H-1]`` in those coordinates.

* :func:`backward_warp` pulls ``dst`` back onto ``src``'s grid: ``out[p] = x_dst(p + flow[p])``.
* :func:`forward_splat` pushes ``src`` along the flow onto ``dst``'s grid (bilinear splatting).
* :func:`resize_flow` resamples a flow field to another size and rescales its vectors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["backward_warp", "forward_splat", "official_backward_warp", "resize_flow", "coords_grid",
           "short_side_size"]

# How far (in pixels) a sample point may lie outside [0, W-1] x [0, H-1] and still count as valid.
# Flow that went through floating-point resizing lands a hair outside the frame on the border;
# at 1e-3 px the zero padding contributes at most 0.1% of the value.
_VALID_TOL = 1e-3
# Up to this many output values, bilinear backward warping of a float32 CPU tensor (no autograd)
# runs the same arithmetic compiled (numba, :func:`mgmae.kernels.warp_plane`): a 56 x 56 mask map is warped 15
# times per clip in the loader, and there torch's per-operator dispatch, not the arithmetic, is the
# cost (the results are bit-identical, see tests/test_warp.py).
_NUMPY_MAX = 1 << 16


def _check_flow(flow: Tensor, n: int, h: int, w: int, what: str) -> None:
    if not isinstance(flow, Tensor):
        raise TypeError(f"{what}: flow must be a torch.Tensor, got {type(flow).__name__}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"{what}: expected flow of shape (N, 2, H, W), got {tuple(flow.shape)}")
    if tuple(flow.shape) != (n, 2, h, w):
        raise ValueError(
            f"{what}: flow of shape {tuple(flow.shape)} does not match the image; "
            f"expected (N, 2, H, W) = {(n, 2, h, w)}"
        )
    if not flow.is_floating_point():
        raise ValueError(f"{what}: flow must be a floating-point tensor, got {flow.dtype}")


def _check_image(x: Tensor, what: str, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{what}: expected {name} of shape (N, C, H, W), got {tuple(x.shape)}")


def _work_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half/bf16 flows are too coarse for coordinates)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def coords_grid(n: int, h: int, w: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Pixel-centre coordinates ``(N, 2, H, W)``: channel 0 = x (column), channel 1 = y (row)."""
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=0).unsqueeze(0).expand(n, 2, h, w)


def backward_warp(x_dst: Tensor, flow_src_to_dst: Tensor, padding: str = "zeros",
                  mode: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Sample ``x_dst`` at ``p + flow[p]`` for every pixel ``p`` of the source grid.

    Args:
        x_dst: ``(N, C, H, W)`` image / map on the destination frame. Non-float inputs (bool, uint8)
            are converted to float32.
        flow_src_to_dst: ``(N, 2, H, W)`` flow from ``src`` to ``dst`` on ``src``'s grid (pixels, x then y).
        padding: what to read outside the frame: ``"zeros"`` | ``"border"`` | ``"reflection"``
            (``torch.nn.functional.grid_sample``'s ``padding_mode``).
        mode: ``"bilinear"`` | ``"nearest"`` | ``"bicubic"`` (``grid_sample``'s ``mode``).

    Returns:
        ``(warped, valid)``: ``warped`` ``(N, C, H, W)`` on ``src``'s grid (dtype of ``x_dst`` if it is
        floating, else float32); ``valid`` bool ``(N, 1, H, W)``, False where the sample point
        ``p + flow[p]`` falls outside the frame ``[0, W-1] x [0, H-1]`` (or the flow is not finite).

    The sampling is pixel-exact: bilinear with ``zeros``/``border`` padding is computed directly from
    the absolute positions ``p + flow`` (4-neighbour gather), so an integer flow reproduces an exact,
    bit-for-bit integer shift and zero flow is the identity; the other modes use
    ``grid_sample(align_corners=False)`` with ``g = (2 * (p + flow) + 1) / size - 1`` (the same
    convention, exact up to float rounding of ~eps * size).
    """
    what = "backward_warp"
    _check_image(x_dst, what, "x_dst")
    n, _, h, w = x_dst.shape
    _check_flow(flow_src_to_dst, n, h, w, what)
    if padding not in ("zeros", "border", "reflection"):
        raise ValueError(f"{what}: padding must be 'zeros', 'border' or 'reflection', got {padding!r}")

    out_dtype = x_dst.dtype if x_dst.is_floating_point() else torch.float32
    wdt = _work_dtype(x_dst, flow_src_to_dst)
    dev = x_dst.device
    if (mode == "bilinear" and padding in ("zeros", "border") and wdt == torch.float32
            and dev.type == "cpu" and flow_src_to_dst.device.type == "cpu" and x_dst.numel() <= _NUMPY_MAX
            and not (torch.is_grad_enabled() and (x_dst.requires_grad or flow_src_to_dst.requires_grad))):
        warped, valid = _backward_warp_numpy(x_dst.to(wdt).numpy(), flow_src_to_dst.to(wdt).numpy(), padding)
        return torch.from_numpy(warped).to(out_dtype), torch.from_numpy(valid)
    flow = flow_src_to_dst.to(device=dev, dtype=wdt)
    px = flow[:, 0] + torch.arange(w, device=dev, dtype=wdt).view(1, 1, w)  # (N, H, W) absolute x
    py = flow[:, 1] + torch.arange(h, device=dev, dtype=wdt).view(1, h, 1)  # (N, H, W) absolute y
    # NaN compares False, +-inf falls outside: non-finite flow is invalid without a separate test.
    valid = ((px >= -_VALID_TOL) & (px <= w - 1 + _VALID_TOL)
             & (py >= -_VALID_TOL) & (py <= h - 1 + _VALID_TOL)).unsqueeze(1)
    x = x_dst.to(wdt)
    if mode == "bilinear" and padding in ("zeros", "border"):
        warped = _bilinear_gather(x, px, py, padding)
    else:
        # Non-finite sample points: park them far outside so they read the padding, never NaN.
        far = -10.0 * (w + h)
        px = torch.nan_to_num(px, nan=far, posinf=-far, neginf=far)
        py = torch.nan_to_num(py, nan=far, posinf=-far, neginf=far)
        grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)  # (N, H, W, 2)
        warped = F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)
    return warped.to(out_dtype), valid


def official_backward_warp(x_dst: Tensor, flow_src_to_dst: Tensor) -> Tensor:
    """The official MGMAE code's backward warp (``BackWarp`` in its flow_utils/softsplat.py), as
    a rule: ``(N, C, H, W)`` on ``src``'s grid, no validity mask. Used only by the motion-guided
    masker's ``official_compat``; :func:`backward_warp` is the correct warp.

    * **Flow scale.** The grid is ``linspace(-1, 1, W)`` plus ``flow / (W / 2)`` (y: ``H``) and
      ``grid_sample`` reads it with ``align_corners=True``, whose unit is ``(W - 1) / 2``: pixel
      ``p`` samples ``x_dst`` at ``p + flow * (W - 1) / W`` (x; y with ``H``), not ``p + flow``.
    * **Border.** Bilinear with zero padding: in the one-pixel band outside the frame
      (``-1 < x < 0`` or ``W - 1 < x < W``) a sample is faded towards 0 by the outside taps, and
      only a sample with all four taps outside is exactly 0 (the official code's "hole").

    The same float operations as the official code (the grid built from ``linspace`` and the
    division, then ``grid_sample``), so on the same device the same values."""
    what = "official_backward_warp"
    _check_image(x_dst, what, "x_dst")
    n, _, h, w = x_dst.shape
    _check_flow(flow_src_to_dst, n, h, w, what)
    x = x_dst if x_dst.is_floating_point() else x_dst.float()
    f = flow_src_to_dst.to(device=x.device, dtype=x.dtype)
    gx = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype).view(1, 1, w) + f[:, 0] / (w / 2.0)
    gy = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype).view(1, h, 1) + f[:, 1] / (h / 2.0)
    grid = torch.stack([gx, gy], dim=-1)  # [N, H, W, 2]: x, y in [-1, 1] at the frame's corner pixels
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _bilinear_gather(x: Tensor, px: Tensor, py: Tensor, padding: str) -> Tensor:
    """Bilinear sampling of ``x`` (N, C, H, W) at absolute pixel positions ``px, py`` (N, H, W).

    Same result as ``grid_sample(..., align_corners=False)`` with the pixel-exact normalisation (the
    tests check they agree to float rounding), but computed from the integer/fractional split of
    the positions themselves: ``grid_sample`` re-derives positions from normalised coordinates and
    loses ~eps * W (about 1e-5 px at 224 px), so an integer flow would not give a bit-exact shift
    and a zero flow would not be bit-exactly the identity. Here both are exact.

    The frame is padded by one pixel (zeros, or replicate for ``border``) and positions are clamped
    to ``[-1, W] x [-1, H]``: a point farther out then reads only padding, so one gather per corner
    with fixed offsets serves every point.
    """
    n, c, h, w = x.shape
    if padding == "zeros":
        xp = x.new_zeros(n, c, h + 2, w + 2)
        xp[:, :, 1:-1, 1:-1] = x
    else:
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    wp = w + 2
    flat = xp.reshape(n, c, (h + 2) * wp)
    px = torch.nan_to_num(px, nan=-1.0, posinf=float(w), neginf=-1.0).clamp(-1, w)
    py = torch.nan_to_num(py, nan=-1.0, posinf=float(h), neginf=-1.0).clamp(-1, h)
    x0 = torch.floor(px).clamp_(-1, w - 1)
    y0 = torch.floor(py).clamp_(-1, h - 1)
    fx = (px - x0).unsqueeze(1)  # in [0, 1]; exactly 0 for integer positions
    fy = (py - y0).unsqueeze(1)
    idx = ((y0 + 1) * wp + (x0 + 1)).long().reshape(n, 1, -1).expand(n, c, -1)

    def at(offset: int) -> Tensor:
        return torch.gather(flat, 2, idx + offset if offset else idx).reshape(n, c, h, w)

    top = at(0) * (1 - fx) + at(1) * fx
    bottom = at(wp) * (1 - fx) + at(wp + 1) * fx
    return top * (1 - fy) + bottom * fy


def _backward_warp_numpy(x: np.ndarray, flow: np.ndarray, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`backward_warp` (bilinear, ``zeros``/``border``) of float32 arrays ``x (N, C, H, W)``,
    ``flow (N, 2, H, W)``, compiled (:func:`mgmae.kernels.warp_plane`): element for element the arithmetic of
    the torch path (positions, validity, clamping, the integer/fractional split, the four-corner
    blend, all in float32), so the results are the same floats without a torch dispatch per
    operation."""
    n, c, h, w = x.shape
    x = np.ascontiguousarray(x, dtype=np.float32)
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    out = np.empty((n, c, h, w), dtype=np.float32)
    valid = np.empty((n, 1, h, w), dtype=np.bool_)
    from mgmae.kernels import warp_batch

    warp_batch(x, flow, padding == "border", *_bounds(h, w), out, valid)
    return out, valid


def _bounds(h: int, w: int) -> tuple[np.float32, np.float32, np.float32]:
    """``(-tolerance, w - 1 + tolerance, h - 1 + tolerance)`` as float32, each rounded from double
    once, as torch rounds the Python scalar it compares a float32 tensor with."""
    return (np.float32(-_VALID_TOL), np.float32(w - 1 + _VALID_TOL), np.float32(h - 1 + _VALID_TOL))


def forward_splat(x_src: Tensor, flow_src_to_dst: Tensor, mode: str = "average",
                  metric: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Bilinear forward splatting of ``x_src`` along the flow onto the destination grid.

    Every source pixel ``p`` is pushed to ``q = p + flow[p]`` and distributed over the 4 integer
    neighbours of ``q`` with bilinear weights (neighbours outside the frame are dropped). Plain
    PyTorch ``scatter_add_`` (no cupy); on CUDA the float atomics make it nondeterministic in the
    last bits.

    Args:
        x_src: ``(N, C, H, W)`` values on the source grid (non-float inputs are converted to float32).
        flow_src_to_dst: ``(N, 2, H, W)`` flow on the source grid (pixels, x then y).
        mode: ``"average"``: weighted mean of everything that lands on a pixel;
            ``"softmax"``: same with weights multiplied by ``exp(metric)`` (softmax splatting,
            Niklaus & Liu 2020); ``"sum"``: the raw accumulated sum, not normalised.
        metric: ``(N, 1, H, W)`` importance on the source grid for ``"softmax"`` (default zeros,
            which makes softmax identical to average). For numerical stability
            ``exp(metric - max(metric))`` (max per sample) is used; the mean is unchanged by that.

    Returns:
        ``(splatted, weight)``: ``splatted`` ``(N, C, H, W)``; ``weight`` ``(N, 1, H, W)`` the
        accumulated splatting weight (holes have weight 0 and value 0).
    """
    what = "forward_splat"
    _check_image(x_src, what, "x_src")
    n, c, h, w = x_src.shape
    _check_flow(flow_src_to_dst, n, h, w, what)
    if mode not in ("average", "softmax", "sum"):
        raise ValueError(f"{what}: mode must be 'average', 'softmax' or 'sum', got {mode!r}")

    out_dtype = x_src.dtype if x_src.is_floating_point() else torch.float32
    wdt = _work_dtype(x_src, flow_src_to_dst)
    dev = x_src.device
    x = x_src.to(wdt).reshape(n, c, h * w)
    flow = flow_src_to_dst.to(device=dev, dtype=wdt)
    pos = coords_grid(n, h, w, device=dev, dtype=wdt) + flow
    px, py = pos[:, 0].reshape(n, h * w), pos[:, 1].reshape(n, h * w)
    finite = torch.isfinite(px) & torch.isfinite(py)
    px = torch.where(finite, px, torch.zeros_like(px))
    py = torch.where(finite, py, torch.zeros_like(py))

    src_w = finite.to(wdt)  # (N, HW) per-source-pixel weight
    if mode == "softmax":
        if metric is None:
            metric = torch.zeros(n, 1, h, w, device=dev, dtype=wdt)
        if tuple(metric.shape) != (n, 1, h, w):
            raise ValueError(f"{what}: expected metric of shape {(n, 1, h, w)}, got {tuple(metric.shape)}")
        m = metric.to(device=dev, dtype=wdt).reshape(n, h * w)
        m = torch.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
        src_w = src_w * torch.exp(m - m.amax(dim=1, keepdim=True))
    elif metric is not None:
        raise ValueError(f"{what}: metric is only used with mode='softmax' (got mode={mode!r})")

    x0, y0 = torch.floor(px), torch.floor(py)
    fx, fy = px - x0, py - y0
    out = torch.zeros(n, c, h * w, device=dev, dtype=wdt)
    wsum = torch.zeros(n, 1, h * w, device=dev, dtype=wdt)
    for dx, dy, bw in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        tx, ty = x0 + dx, y0 + dy
        inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
        wk = torch.where(inside, bw * src_w, torch.zeros_like(bw))  # (N, HW)
        idx = torch.where(inside, ty * w + tx, torch.zeros_like(tx)).long().unsqueeze(1)  # (N, 1, HW)
        out.scatter_add_(2, idx.expand(n, c, h * w), x * wk.unsqueeze(1))
        wsum.scatter_add_(2, idx, wk.unsqueeze(1))

    if mode != "sum":
        out = torch.where(wsum > 0, out / wsum.clamp_min(torch.finfo(wdt).tiny), torch.zeros_like(out))
    return out.reshape(n, c, h, w).to(out_dtype), wsum.reshape(n, 1, h, w).to(out_dtype)


def resize_flow(flow: Tensor, size: int | tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resample a flow field to ``size`` and rescale its vectors (x by ``W'/W``, y by ``H'/H``).

    Args:
        flow: ``(..., 2, H, W)`` flow in pixels (any leading dims, e.g. ``(N, 2, H, W)`` or ``(2, H, W)``).
        size: ``(H', W')``, or an int: the new *short* side, aspect ratio kept (like
            ``torchvision.transforms.Resize``).
        mode: ``"bilinear"`` (default) or ``"nearest"``; pixel-centre aligned (``align_corners=False``),
            antialiased when shrinking with bilinear.

    Returns the resized flow ``(..., 2, H', W')`` in pixels of the new size, dtype of the input.
    """
    if not isinstance(flow, Tensor) or flow.dim() < 3 or flow.shape[-3] != 2:
        shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
        raise ValueError(f"resize_flow: expected flow of shape (..., 2, H, W), got {shape}")
    h, w = flow.shape[-2:]
    new_h, new_w = short_side_size(h, w, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if new_h <= 0 or new_w <= 0:
        raise ValueError(f"resize_flow: size must be positive, got {size!r}")
    if (new_h, new_w) == (h, w):
        return flow
    lead = flow.shape[:-3]
    f = flow.reshape(-1, 2, h, w)
    dt = f.dtype
    f = f.float() if dt in (torch.float16, torch.bfloat16) or not f.is_floating_point() else f
    if mode == "bilinear":
        shrink = new_h < h or new_w < w
        f = F.interpolate(f, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=shrink)
    elif mode == "nearest":
        f = F.interpolate(f, size=(new_h, new_w), mode="nearest")
    else:
        raise ValueError(f"resize_flow: mode must be 'bilinear' or 'nearest', got {mode!r}")
    scale = torch.tensor([new_w / w, new_h / h], device=f.device, dtype=f.dtype).view(1, 2, 1, 1)
    f = f * scale
    out_dt = dt if dt.is_floating_point else torch.float32
    return f.to(out_dt).reshape(*lead, 2, new_h, new_w)


def short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """``(h', w')`` with the short side equal to ``short`` and the aspect ratio kept (rounded)."""
    if short <= 0:
        raise ValueError(f"short side must be a positive int, got {short}")
    if h <= w:
        return short, max(1, int(round(w * short / h)))
    return max(1, int(round(h * short / w))), short
