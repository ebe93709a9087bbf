"""OpenCV flow backends: DIS (the CPU default) and Farneback.

Both run on the CPU, one frame pair at a time, on 8-bit grayscale images; inputs on another
device are moved to the CPU and the flow is moved back. They are called by the
:class:`mgmae.flow.FlowEstimator` wrapper (use :func:`mgmae.flow.build_flow`), which hands them
float32 RGB (or 1-channel) tensors in ``[0, 1]`` of shape ``(N, C, H, W)`` and validates and
sanitises what they return.

OpenCV's convention matches ours: ``calc(prev=src, next=dst)`` returns, on ``src``'s grid, the
displacement ``(dx, dy)`` that moves each ``src`` pixel to its place in ``dst``.

The ``cv2`` objects cannot be pickled; they are created lazily and dropped on pickling, so an
estimator can travel to DataLoader worker processes (each worker builds its own).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["DISFlow", "FarnebackFlow", "to_gray_uint8"]

_DIS_PRESETS = ("ultrafast", "fast", "medium")


def to_gray_uint8(x: Tensor) -> np.ndarray:
    """``(N, 3 | 1, H, W)`` float in ``[0, 1]`` or uint8 -> ``(N, H, W)`` uint8 luma (ITU-R BT.601,
    as cv2). uint8 frames take OpenCV's fixed-point conversion (no float round trip)."""
    if x.dtype == torch.uint8:
        a = x.cpu().numpy()
        if a.shape[1] == 1:
            return np.ascontiguousarray(a[:, 0])
        hwc = np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # [N, H, W, 3]
        import cv2

        return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in hwc])
    if x.shape[1] == 3:
        wts = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * wts).sum(dim=1)
    else:
        x = x[:, 0]
    x = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.cpu().numpy())


def _pairs(calc, frames: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    """Flows for index pairs of clips, each frame converted to grey once: ``frames (B, T, C, H, W)``
    float in ``[0, 1]`` -> ``(B, P, 2, H, W)``."""
    B, T, C, H, W = frames.shape
    gray = to_gray_uint8(frames.reshape(B * T, C, H, W)).reshape(B, T, H, W)
    flows = [calc(gray[b, s], gray[b, d]) for b in range(B) for s, d in pairs]
    return _stack_flows(flows, frames.device).reshape(B, len(pairs), 2, H, W)


def _stack_flows(flows: list[np.ndarray], device) -> Tensor:
    f = torch.from_numpy(np.stack(flows, axis=0))  # (N, H, W, 2)
    return f.permute(0, 3, 1, 2).contiguous().to(device=device, dtype=torch.float32)


class _OpenCVFlow:
    """One frame pair at a time on grey uint8 images: subclasses define ``_calc(a, b) -> (H, W, 2)``."""

    takes_uint8 = True  # FlowEstimator may hand uint8 frames as they are (grey conversion here)

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, src: Tensor, dst: Tensor) -> Tensor:
        a, b = to_gray_uint8(src), to_gray_uint8(dst)
        return _stack_flows([self._calc(a[i], b[i]) for i in range(a.shape[0])], src.device)

    def pairs(self, frames: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
        return _pairs(self._calc, frames, pairs)


class DISFlow(_OpenCVFlow):
    """Dense Inverse Search optical flow (``cv2.DISOpticalFlow``), about 1 ms per 224x224 pair.

    Args:
        preset: ``"ultrafast"`` (default) | ``"fast"`` | ``"medium"``.
        finest_scale: ``"auto"`` (see :meth:`_scale_for`) or an explicit pyramid level.
        **params: optional overrides of the preset, by the snake_case name of the OpenCV setter,
            e.g. ``variational_refinement_iterations=5``, ``finest_scale=1``, ``patch_size=8``,
            ``patch_stride=4``, ``gradient_descent_iterations=16``, ``use_spatial_propagation=True``,
            ``use_mean_normalization=True``, ``variational_refinement_alpha=20.0``.
    """

    def __init__(self, preset: str = "ultrafast", finest_scale: int | str = "auto", **params):
        if preset not in _DIS_PRESETS:
            raise ValueError(f"DIS preset must be one of {', '.join(_DIS_PRESETS)}; got {preset!r}")
        if finest_scale != "auto" and not (isinstance(finest_scale, int) and finest_scale >= 0):
            raise ValueError(f"finest_scale must be 'auto' or an int >= 0, got {finest_scale!r}")
        self.preset = preset
        self.finest_scale = finest_scale
        self.params = dict(params)
        self._dis = None
        self._finest = None
        self._make()  # validate the parameter names now, not in a worker later

    def _make(self):
        import cv2

        preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                  "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                  "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[self.preset]
        dis = cv2.DISOpticalFlow_create(preset)
        for key, value in self.params.items():
            setter = "set" + "".join(part.capitalize() for part in key.split("_"))
            if not hasattr(dis, setter):
                names = sorted(_snake(n[3:]) for n in dir(dis) if n.startswith("set") and n != "setDefaultName")
                raise TypeError(f"unknown DIS option {key!r}; known: {', '.join(names)}")
            getattr(dis, setter)(value)
        self._dis, self._finest = dis, dis.getFinestScale()
        return dis

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_dis"] = None
        return state

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dis = self._dis if self._dis is not None else self._make()
        # OpenCV's DIS lowers its finest scale for small images and keeps it for later calls, which
        # would make results depend on call history: restore the configured value every time.
        dis.setFinestScale(self._scale_for(a.shape))
        return dis.calc(a, b, None)

    def _scale_for(self, shape) -> int:
        """``auto``: the preset's finest scale, except 1 for frames with a short side under 128 px,
        where OpenCV would fall back to scale 0 (measured at 64 px, ultrafast: 0.50 -> 0.09 ms per
        pair for an end-point error of 0.22 -> 0.33 px on the synthetic data's exact flow)."""
        if self.finest_scale != "auto":
            return int(self.finest_scale)
        return 1 if min(shape[-2:]) < 128 else self._finest

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"DISFlow(preset={self.preset!r}, finest_scale={self.finest_scale!r}{extra})"


def _snake(camel: str) -> str:
    out = []
    for ch in camel:
        if ch.isupper() and out:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class FarnebackFlow(_OpenCVFlow):
    """Gunnar Farneback's polynomial-expansion flow (``cv2.calcOpticalFlowFarneback``); slower than
    DIS (~15 ms per 224x224 pair on one core) and smoother. Arguments are OpenCV's, same defaults
    as the OpenCV tutorial."""

    def __init__(self, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15, iterations: int = 3,
                 poly_n: int = 5, poly_sigma: float = 1.2, gaussian_window: bool = False):
        if not 0 < pyr_scale < 1:
            raise ValueError(f"pyr_scale must be in (0, 1), got {pyr_scale}")
        if poly_n not in (5, 7):
            raise ValueError(f"poly_n must be 5 or 7, got {poly_n}")
        self.args = (float(pyr_scale), int(levels), int(winsize), int(iterations), int(poly_n), float(poly_sigma))
        self.gaussian_window = bool(gaussian_window)

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import cv2

        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if self.gaussian_window else 0
        return cv2.calcOpticalFlowFarneback(a, b, None, *self.args, flags)

    def __repr__(self) -> str:
        names = ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma")
        args = ", ".join(f"{k}={v}" for k, v in zip(names, self.args))
        return f"FarnebackFlow({args}, gaussian_window={self.gaussian_window})"
