"""Optical flow for motion-guided masking.

``build_flow("dis" | "farneback" | "raft_small" | "raft_large" | "zero" | callable, size=None, **options)``
returns a :class:`FlowEstimator` ``f(src, dst) -> flow``:

* ``src, dst``: ``(N, 3, H, W)`` RGB (a 1-channel ``(N, 1, H, W)`` is also accepted), either
  **uint8** in ``[0, 255]`` or **float** in ``[0, 1]`` (not ImageNet-normalised: undo the
  normalisation first; float values outside ``[0, 1]`` are clipped, with a warning on the CPU;
  on accelerators silently, so that the training step never waits for the device). Any device.
* ``flow``: float32 ``(N, 2, H, W)`` in pixels on the inputs' device, channel 0 = x, channel 1 = y,
  on ``src``'s grid: pixel ``p`` of ``src`` moves to ``p + flow[p]`` in ``dst`` (the convention of
  torchvision RAFT and ``cv2.calcOpticalFlow*(prev=src, next=dst)``).

Backends and their options:

* ``"dis"`` (CPU default, ~1 ms per 224x224 pair): ``preset="ultrafast"|"fast"|"medium"`` (default
  ``"ultrafast"``), ``finest_scale`` plus OpenCV overrides, see :class:`~mgmae.flow.opencv.DISFlow`.
* ``"farneback"``: OpenCV Farneback, see :class:`~mgmae.flow.opencv.FarnebackFlow`.
* ``"raft_small"`` / ``"raft_large"``: torchvision RAFT from a local file, ``weights=PATH``,
  ``iters`` (6 / 12), ``batch_size``, ``random_init``; see :class:`~mgmae.flow.raft.RAFTFlow`.
* ``"zero"``: zeros (motion-guided masking then equals tube masking).
* ``"codec"``: not computed from frames: the motion vectors of a video file, collected while it is
  decoded (``flow.name=codec`` in a config; :mod:`mgmae.flow.codec`). ``build_flow("codec")`` says so.
* any callable ``(src, dst) -> flow``: called with float32 ``[0, 1]`` inputs; its output is validated.

Every backend also takes ``size`` (int short side, or None): the pair is resized to that short side
(aspect kept, antialiased), the flow computed there and resized back bilinearly with its vectors
rescaled, so it is always in full-resolution pixels. E.g. ``size=112`` for 224 clips costs ~1/4.

Non-finite flow (NaN/inf) from any backend is replaced by 0 with one warning per estimator (on
the CPU; on accelerators without the check's host synchronisation, so without the warning).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mgmae.flow.warp import backward_warp, coords_grid, forward_splat, resize_flow, short_side_size
from mgmae.registry import FLOWS

__all__ = ["FlowEstimator", "build_flow", "register_flow", "list_flows", "flow_to_color",
           "backward_warp", "forward_splat", "resize_flow", "coords_grid", "prepare_images"]

FlowFn = Callable[[Tensor, Tensor], Tensor]


def _check_images(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"flow: expected {name} to be a torch.Tensor of shape (N, 3, H, W), "
                         f"got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"flow: expected {name} of shape (N, 3, H, W) (RGB; (N, 1, H, W) also accepted), "
                         f"got {tuple(x.shape)}")
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"flow: expected {name} as uint8 in [0, 255] or float in [0, 1], got dtype {x.dtype}")


def _unit_float(x: Tensor, warn_range: bool = True) -> Tensor:
    """float32 in ``[0, 1]`` (uint8 / 255; floats clipped, with a warning, when outside)."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    x = x.float()
    if x.device.type != "cpu":  # no host synchronisation on accelerators: clip without looking (no warning)
        return torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0)
    lo, hi = torch.aminmax(x)
    lo, hi = float(lo), float(hi)
    if lo != lo or hi != hi or lo < -0.01 or hi > 1.01:  # NaN or out of range
        if warn_range:
            warnings.warn(f"flow: float inputs are expected in [0, 1] (un-normalised RGB); got values in "
                          f"[{lo:.3g}, {hi:.3g}]; clipping", RuntimeWarning, stacklevel=4)
        x = torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0)
    return x


def prepare_images(src: Tensor, dst: Tensor, *, warn_range: bool = True) -> tuple[Tensor, Tensor]:
    """Validate a frame pair and return float32 versions in ``[0, 1]`` on the same device (not copies when
    already float32 in range: do not modify them in place).

    Raises ValueError (saying what was expected and what came) unless both are tensors of the same
    shape ``(N, 3, H, W)`` (or ``(N, 1, H, W)``) with N >= 1, H, W >= 1, dtype uint8 or floating.
    """
    _check_images("src", src)
    _check_images("dst", dst)
    if src.shape != dst.shape:
        raise ValueError(f"flow: src and dst must have the same shape, got {tuple(src.shape)} and {tuple(dst.shape)}")
    if src.device != dst.device:
        raise ValueError(f"flow: src and dst must be on the same device, got {src.device} and {dst.device}")
    return _unit_float(src, warn_range), _unit_float(dst, warn_range)


class FlowEstimator:
    """``f(src, dst) -> flow``: validates inputs, optionally works at reduced resolution, calls the
    backend, validates its output and replaces non-finite values by 0 (warning once).

    Args:
        fn: the backend, ``fn(src, dst) -> flow`` with float32 ``[0, 1]`` inputs ``(N, C, h, w)``
            and a ``(N, 2, h, w)`` flow (tensor or array-like) as output.
        size: short side to compute the flow at (None: full resolution).
        name: for ``repr`` and messages.
    """

    def __init__(self, fn: FlowFn, *, size: int | None = None, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"flow backend must be callable, got {type(fn).__name__}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ValueError(f"size must be a positive int (short side) or None, got {size!r}")
        self.fn = fn
        self.size = size
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self._warned_nonfinite = False

    def __call__(self, src: Tensor, dst: Tensor) -> Tensor:
        a, b = prepare_images(src, dst)
        n, _, h, w = a.shape
        if self.size is not None:
            sh, sw = short_side_size(h, w, self.size)
            if (sh, sw) != (h, w):
                shrink = sh < h or sw < w
                ab = F.interpolate(torch.cat([a, b]), size=(sh, sw), mode="bilinear", align_corners=False,
                                   antialias=shrink).clamp_(0.0, 1.0)
                flow = self._compute(ab[:n], ab[n:], sh, sw)
                return resize_flow(flow, (h, w)).contiguous()
        return self._compute(a, b, h, w)

    def pairs(self, frames: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
        """Flows between frames of the same clips: ``frames (B, T, C, H, W)``, ``pairs`` of frame
        indices ``(src, dst)`` -> ``(B, P, 2, H, W)``. Frames are validated and (with ``size``)
        resized once, not once per pair; backends with a ``pairs`` method (DIS, Farneback) also
        convert each frame to grey once, and uint8 frames reach them as uint8 (``takes_uint8``)."""
        if frames.dim() != 5:
            raise ValueError(f"flow: expected frames of shape (B, T, C, H, W), got {tuple(frames.shape)}")
        B, T, C, H, W = frames.shape
        x = frames.reshape(B * T, C, H, W)
        h, w = H, W
        resize = self.size is not None and short_side_size(H, W, self.size) != (H, W)
        _check_images("frames", x)
        if not (x.dtype == torch.uint8 and getattr(self.fn, "takes_uint8", False) and not resize):
            x = _unit_float(x)  # once per frame, not once per pair; uint8 goes as it is to DIS
        if resize:
            h, w = short_side_size(H, W, self.size)
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=h < H or w < W).clamp_(0.0, 1.0)
        x = x.reshape(B, T, C, h, w)
        P = len(pairs)
        if hasattr(self.fn, "pairs"):
            flow = self._check(self.fn.pairs(x, pairs).reshape(B * P, 2, h, w), B * P, h, w)
        else:
            src = x[:, [s for s, _ in pairs]].reshape(B * P, C, h, w)
            dst = x[:, [d for _, d in pairs]].reshape(B * P, C, h, w)
            flow = self._compute(src, dst, h, w)
        if (h, w) != (H, W):
            flow = resize_flow(flow, (H, W)).contiguous()
        return flow.reshape(B, P, 2, H, W)

    def _compute(self, a: Tensor, b: Tensor, h: int, w: int) -> Tensor:
        return self._check(self.fn(a, b), a.shape[0], h, w, device=a.device)

    def _check(self, flow, n: int, h: int, w: int, device=None) -> Tensor:
        if not isinstance(flow, Tensor):
            try:
                flow = torch.as_tensor(flow)
            except Exception as e:
                raise ValueError(f"flow backend {self.name!r} must return a (N, 2, H, W) tensor, "
                                 f"got {type(flow).__name__}") from e
        if tuple(flow.shape) != (n, 2, h, w):
            raise ValueError(f"flow backend {self.name!r} returned shape {tuple(flow.shape)}; "
                             f"expected (N, 2, H, W) = {(n, 2, h, w)}")
        flow = flow.to(device=device or flow.device, dtype=torch.float32)
        if flow.device.type != "cpu":  # no host synchronisation on accelerators: sanitise without a warning
            return torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
        if not all_finite(flow):
            if not self._warned_nonfinite:
                warnings.warn(f"flow backend {self.name!r} returned NaN/inf values; they were replaced by 0 "
                              f"(warned once per estimator)", RuntimeWarning, stacklevel=3)
                self._warned_nonfinite = True
            flow = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
        return flow

    def __repr__(self) -> str:
        return f"FlowEstimator({self.fn!r}, size={self.size})"


def all_finite(t: Tensor) -> bool:
    """``bool(torch.isfinite(t).all())``; through NumPy for CPU float32/float64 tensors, which is
    ~20x faster there (3 ms vs 0.13 ms for the 15 flows of a 224 clip: torch's ``isfinite`` makes
    several passes and allocates)."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(t.detach().numpy()).all())
    return bool(torch.isfinite(t).all())


def _zero_flow(src: Tensor, dst: Tensor) -> Tensor:
    n, _, h, w = src.shape
    return torch.zeros(n, 2, h, w, device=src.device, dtype=torch.float32)


def _dis(**options) -> FlowFn:
    from mgmae.flow.opencv import DISFlow

    return DISFlow(**options)


def _farneback(**options) -> FlowFn:
    from mgmae.flow.opencv import FarnebackFlow

    return FarnebackFlow(**options)


def _raft(model: str) -> Callable[..., FlowFn]:
    def make(**options) -> FlowFn:
        from mgmae.flow.raft import RAFTFlow

        return RAFTFlow(model=model, **options)

    return make


_raft_small = _raft("raft_small")
_raft_large = _raft("raft_large")


def _zero(**options) -> FlowFn:
    if options:
        raise TypeError(f"the 'zero' flow takes no options, got {', '.join(options)}")
    return _zero_flow


def _codec(**options) -> FlowFn:
    raise ValueError("the 'codec' flow comes from the motion vectors of a video file while it is "
                     "decoded, not from frames: use it through a video dataset (flow.name=codec) or "
                     "mgmae.flow.codec.CodecMotion (PyAVReader(export_mvs=True).motion)")


# The names live in mgmae.registry.FLOWS (importable without torch, so config validation asks it).
def register_flow(name: str, factory: Callable[..., FlowFn]) -> None:
    """Register ``factory(**options) -> fn(src, dst) -> flow`` under ``name`` for :func:`build_flow`
    (and as ``flow.name=name`` in a config)."""
    FLOWS.register(name, factory)


def list_flows() -> list[str]:
    return FLOWS.names()


def build_flow(name_or_callable: str | FlowFn, *, size: int | None = None, **options) -> FlowEstimator:
    """Build a flow estimator ``f(src, dst) -> flow`` (see the module docstring for the contract).

    Args:
        name_or_callable: ``"dis"`` | ``"farneback"`` | ``"raft_small"`` | ``"raft_large"`` | ``"zero"``
            | a registered name | any callable ``(src, dst) -> flow`` | a :class:`FlowEstimator`.
        size: compute the flow at this short side and resize it back (None: full resolution).
        **options: backend options (e.g. ``preset="fast"`` for dis, ``weights=PATH, iters=6`` for RAFT).
    """
    if isinstance(name_or_callable, FlowEstimator):
        if options:
            raise TypeError("options cannot be applied to an already-built FlowEstimator")
        if size is None or size == name_or_callable.size:
            return name_or_callable
        return FlowEstimator(name_or_callable.fn, size=size, name=name_or_callable.name)
    if isinstance(name_or_callable, str):
        name = name_or_callable
        try:
            factory = FLOWS.get(name)
        except ValueError as e:
            raise ValueError(f"{e} or a callable") from None
        return FlowEstimator(factory(**options), size=size, name=name)
    if callable(name_or_callable):
        if options:
            raise TypeError(f"options {', '.join(options)} cannot be passed to a callable flow; bind them yourself")
        return FlowEstimator(name_or_callable, size=size)
    raise TypeError(f"build_flow expects a name ({', '.join(list_flows())}) or a callable, "
                    f"got {type(name_or_callable).__name__}")


def flow_to_color(flow: Tensor) -> Tensor:
    """Middlebury colour-wheel picture of a flow: ``(N, 2, H, W)`` -> uint8 ``(N, 3, H, W)``
    (``(2, H, W)`` -> ``(3, H, W)``). Hue is the direction, saturation the magnitude, normalised by
    the largest magnitude in the whole tensor (``torchvision.utils.flow_to_image``). Non-finite
    values are drawn as zero flow."""
    from torchvision.utils import flow_to_image

    if not isinstance(flow, Tensor) or flow.dim() not in (3, 4) or flow.shape[-3] != 2:
        shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
        raise ValueError(f"flow_to_color: expected flow of shape (N, 2, H, W) or (2, H, W), got {shape}")
    flow = torch.nan_to_num(flow.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    return flow_to_image(flow)
