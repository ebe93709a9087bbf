"""Motion-guided masking (MGMAE, ICCV 2023), exactly as in docs/design.md section 3.

1. Pick a base frame ``b``.
2. Draw an initial mask *map* on ``b`` at pixel resolution (high = visible).
3. Carry it to every other frame through its already-known neighbour:
   ``t > b: M_t = backward_warp(M_{t-1}, flow(t, t-1))``; ``t < b: M_t = backward_warp(M_{t+1}, flow(t, t+1))``
   (pixel p of frame t came from p + flow(t, t±1)[p] in the neighbour, so that is where its value is).
   Holes (samples from outside the frame) get the initial map's value (``consist``) or 0 (``zero``).
4. Score each cube by summing the map over its ``tubelet x patch x patch`` pixels; keep the top-k
   cubes of every temporal slice visible (or top-k over the whole clip), hide the rest.
5. Zero flow gives exactly tube masking with the same visible set (for ``mix_gauss`` and
   ``token_rand`` the visible set is drawn exactly as :class:`TubeMasker` draws it).

Options (one line each):

* ``flow``: a backend name (``dis``, ``farneback``, ``raft_small``, ``raft_large``, ``zero``) or any
  callable ``(src, dst) -> flow`` with ``src, dst: (N, 3, H, W)`` in ``[0, 1]``, flow ``(N, 2, H, W)``.
* ``base_frame``: ``first`` | ``middle`` (T//2, the paper's) | ``random`` (per call: per clip in loader
  workers, per batch in the training step, like the official code).
* ``init_map``: ``mix_gauss`` (Gaussian bumps at the centres of k random patches, the paper's) |
  ``pixel_rand`` (a random (1 - ratio) share of pixels set to 1) | ``token_rand`` (k random patches set to 1).
* ``warp``: ``backward`` (bilinear sampling, the paper's) | ``forward`` (average splatting, the ablation).
* ``hole_filling``: ``consist`` (fill from the initial map, the paper's) | ``zero``.
* ``topk_on_all``: keep the top ``t*k`` cubes of the whole clip instead of ``k`` per slice.
* ``exposure_chance``: probability of adding N(0, std(scores)^2) noise to the cube scores of one
  random slice (``exposure="scaled"``); ``exposure="official"``: as the official code's
  ``--exposure_chance`` flag, unscaled N(0, 1) (in pixel-sum units) on one random slice of every
  clip, every call, whenever ``exposure_chance > 0``. None: ``scaled`` (``official`` with
  ``official_compat``).
* ``visible_count``: ``tube`` (``hw - int(hw * ratio)``, VideoMAE's, the same as tube masks: 20 of
  196 at 0.9) | ``official`` (``int(hw * (1 - ratio))``, the official MGMAE code's: 19 of 196).
  Zero flow gives tube masking only with ``tube``. None: ``tube`` (``official`` with ``official_compat``).
* ``gauss_sigma``: width of the ``mix_gauss`` bumps in pixels (default ``patch_size / 3``; the
  official code's ``exp(-((x - m) / 16) ** 2)`` is ``16 / sqrt(2)`` = 11.3 for 16-pixel patches).
* ``direction``: the flow direction before the base frame: ``corrected`` (``flow(t, t+1)``, the
  mask follows the motion) | ``official`` (the official code's ``flow(t+1, t)`` with backward
  warping, which moves the mask *against* the motion; it exists so the effect can be measured
  alone). None: ``corrected`` (``official`` with ``official_compat``).
* ``official_compat``: the official MGMAE code's masks, one switch (docs/design.md section 3): its
  visible count, exposure, bumps ``exp(-((x - m) / p)^2)`` divided by the map's maximum, the
  full-resolution map, its direction before the base frame, and its warp
  (:func:`mgmae.flow.warp.official_backward_warp`: flow scaled by ``(W - 1) / W``, a faded
  one-pixel band at the border, holes = exact zeros refilled from the initial map), ``topk(sorted=False)``.
  An option set to a value that contradicts it is a ValueError naming both (``direction`` may
  still be ``corrected``). Maps are propagated by the torch path (not the compiled kernel).
* ``map_stride``: pixels per map cell. The map only decides the cubes' scores, so steps 2-4 can run
  on a coarser grid: ``s`` gives an ``(H/s, W/s)`` map, the flow sampled at the cells' centres and
  divided by ``s`` (it is in pixels; sampling keeps motion boundaries sharp, averaging blurred them
  and tracked worse), cube scores summed over ``(p/s)^2`` cells. 1 = full resolution; must divide
  the patch size. ``None`` (default): ``patch_size // 8``, i.e. 8 x 8 cells per patch (stride 2 for
  16-pixel patches, 1 for 8-pixel ones): the coarsest grid whose tracking rate stays within 1 point
  of full resolution on the synthetic clips with exact flow, at 2.2x less map work for 224-pixel
  clips (``bench/map_stride.py``, bench/RESULTS.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mgmae.masking import MOTION_GUIDED_AUTO, MOTION_GUIDED_CHOICES, official_conflicts
from mgmae.masking.base import Masker, num_visible_per_slice, topk_mask


def _check_choice(name: str, value: str) -> None:
    if value not in MOTION_GUIDED_CHOICES[name]:
        raise ValueError(f"motion_guided: {name}={value!r}; allowed: "
                         f"{', '.join(MOTION_GUIDED_CHOICES[name])}")


class MotionGuidedMasker(Masker):
    name = "motion_guided"

    def __init__(self, input_size: Sequence[int] = (16, 224, 224), patch_size: int = 16,
                 tubelet_size: int = 2, mask_ratio: float = 0.9,
                 flow: str | Callable | None = "dis", base_frame: str = "middle",
                 init_map: str = "mix_gauss", warp: str = "backward", hole_filling: str = "consist",
                 topk_on_all: bool = False, exposure_chance: float = 0.0,
                 official_compat: bool = False, flow_options: dict | None = None,
                 gauss_sigma: float | None = None, map_stride: int | None = None,
                 visible_count: str | None = None, exposure: str | None = None,
                 direction: str | None = None, seed: int | None = None):
        super().__init__(input_size, patch_size, tubelet_size, mask_ratio, seed)
        if self.input_size[0] < 2:
            raise ValueError(f"motion-guided masking needs clips of at least 2 frames, got T={self.input_size[0]}")
        for k, v in (("base_frame", base_frame), ("init_map", init_map), ("warp", warp),
                     ("hole_filling", hole_filling), ("visible_count", visible_count),
                     ("exposure", exposure), ("direction", direction)):
            if v is not None or k not in MOTION_GUIDED_AUTO:
                _check_choice(k, v)
        if gauss_sigma is not None and not gauss_sigma > 0:
            raise ValueError(f"masking.gauss_sigma must be > 0 (pixels) or null, got {gauss_sigma}")
        self.official_compat = bool(official_compat)
        if self.official_compat:  # the official code's masks: every option it decides, or a clash
            clash = official_conflicts(visible_count=visible_count, exposure=exposure,
                                       gauss_sigma=gauss_sigma, map_stride=map_stride, warp=warp,
                                       patch_size=patch_size)
            if clash:
                name, value, what = clash[0]
                fix = "warp='backward'" if name == "warp" else f"{name} unset (None)"
                raise ValueError(f"motion_guided: {name}={value!r} contradicts official_compat=True, which "
                                 f"uses {what}: leave {fix}, or drop official_compat")
            visible_count, exposure, map_stride = "official", "official", 1
        visible_count = visible_count or "tube"
        exposure = exposure or "scaled"
        self.direction = direction or ("official" if self.official_compat else "corrected")
        if map_stride is None:
            map_stride = max(1, patch_size // 8)
        if map_stride < 1 or patch_size % map_stride:
            divisors = ", ".join(str(d) for d in range(1, patch_size + 1) if patch_size % d == 0)
            raise ValueError(f"masking.map_stride={map_stride} must be >= 1 and divide the patch size "
                             f"{patch_size} ({divisors})")
        self.map_stride = map_stride
        if not 0.0 <= exposure_chance <= 1.0:
            raise ValueError(f"exposure_chance must be in [0, 1], got {exposure_chance}")
        self.base_frame = base_frame
        self.init_map = init_map
        self.warp = warp
        self.hole_filling = hole_filling
        self.topk_on_all = topk_on_all
        self.exposure_chance = exposure_chance
        # the official bumps exp(-((x - m) / p)^2) have sigma = p / sqrt(2) (and are computed so)
        default_sigma = patch_size / 2 ** 0.5 if self.official_compat else patch_size / 3.0
        self.gauss_sigma = gauss_sigma if gauss_sigma is not None else default_sigma
        self.visible_count, self.exposure = visible_count, exposure
        # the initial map's bumps: VideoMAE's tube count (20 of 196 at 0.9), drawn as TubeMasker
        # draws its visible set; the visible cubes kept per slice: the same, or with
        # visible_count=official the official MGMAE code's rounding (19 of 196; it draws 20 bumps too)
        self.k_map = num_visible_per_slice(self.tokens_per_slice, self.mask_ratio)
        self.k = (max(1, int(self.tokens_per_slice * (1 - self.mask_ratio)))
                  if visible_count == "official" else self.k_map)
        self.flow_spec = flow
        self.flow_options = {k: v for k, v in (flow_options or {}).items() if v is not None}
        self._flow = None  # built lazily: workers build their own after fork
        self._warned = False

    def __repr__(self) -> str:
        flow = self.flow_spec if isinstance(self.flow_spec, str) or self.flow_spec is None else "callable"
        odd = self.official_compat == (self.direction == "corrected")  # a direction the switch does not imply
        return (f"MotionGuidedMasker(input_size={self.input_size}, patch_size={self.patch_size}, "
                f"mask_ratio={self.mask_ratio}, flow={flow}, base_frame={self.base_frame}, "
                f"init_map={self.init_map}, warp={self.warp}, hole_filling={self.hole_filling}"
                f"{f', map_stride={self.map_stride}' if self.map_stride > 1 else ''}"
                f"{', official masks' if self.official_compat else ''}"
                f"{f', {self.direction} direction' if odd else ''}"
                f"{', flow weights: RANDOM WEIGHTS (meaningless masks)' if self._random_flow() else ''})")

    def _random_flow(self) -> bool:
        return self.flow_options.get("weights") == "random" or bool(self.flow_options.get("random_init"))

    def __getstate__(self):  # flow backends (OpenCV objects) are not picklable: rebuild in workers
        state = self.__dict__.copy()
        state["_flow"] = None
        state.pop("_profiles", None)  # per-device copies of the bump profiles (maybe CUDA tensors)
        return state

    @property
    def num_masked(self) -> int:
        return self.num_tokens - self.grid[0] * self.k

    # ------------------------------------------------------------------ flow
    @property
    def flow(self) -> Callable:
        if self._flow is None:
            if self.flow_spec is None:
                raise ValueError("this motion-guided masker has no flow backend (flow=None, e.g. "
                                 "flow.name=gt); give it flows through mask_views(flow_fn=...)")
            from mgmae.flow import build_flow

            self._flow = build_flow(self.flow_spec, **self.flow_options)
        return self._flow

    def base_index(self, generator: torch.Generator | None = None) -> int:
        T = self.input_size[0]
        if self.base_frame == "first":
            return 0
        if self.base_frame == "middle":
            return T // 2
        return int(torch.randint(0, T, (1,), generator=generator))

    def flow_pairs(self, base: int) -> list[tuple[int, int]]:
        """The ``(src, dst)`` frame pairs step 3 needs, in frame order ``t = 0..T-1`` minus ``base``."""
        T = self.input_size[0]
        pairs = []
        for t in range(T):
            if t == base:
                continue
            nb = t - 1 if t > base else t + 1  # the neighbour already known
            if self.warp == "forward":
                pairs.append((nb, t))  # splat the neighbour's map forward along flow(nb, t)
            elif t < base and self.direction == "official":
                pairs.append((nb, t))  # the official code's direction: flow(t+1, t)
            else:
                pairs.append((t, nb))
        return pairs

    def _sanitize(self, flow: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        if flow.shape != shape:
            raise ValueError(f"flow must have shape (N, 2, H, W) = {shape}, got {tuple(flow.shape)}")
        from mgmae.flow import all_finite

        flow = flow.float()
        if not all_finite(flow):
            if not self._warned:
                warnings.warn("motion-guided masking: non-finite values in the optical flow were set "
                              "to 0 (further occurrences are not reported)", RuntimeWarning, stacklevel=3)
                self._warned = True
            flow = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
        return flow

    def compute_flows(self, frames: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
        """``frames (B, T, 3, H, W)`` in ``[0, 1]`` -> flows ``(B, P, 2, H, W)`` for the pairs."""
        return self.flow.pairs(frames, pairs)  # [B, P, 2, H, W], validated by the estimator

    # ------------------------------------------------------------------ maps
    def initial_map(self, batch: int, height: int, width: int,
                    generator: torch.Generator | None, stride: int = 1,
                    device: torch.device | str | None = None) -> torch.Tensor:
        """``(B, H/stride, W/stride)`` float map of the base frame, high where cubes should stay
        visible; cell ``(i, j)`` covers pixels ``[i*stride, (i+1)*stride)`` (its value: at the
        cell's centre). Built on ``device`` (default CPU): the random draws come from the CPU
        ``generator`` and only the chosen patches' indices are copied (no host synchronisation);
        the Gaussian profiles are computed once on the CPU and cached per device, so a map is
        bit-identical on every device."""
        p, (_, h, w) = self.patch_size, self.grid
        hs, ws = height // stride, width // stride
        device = torch.device("cpu") if device is None else torch.device(device)
        if self.init_map == "pixel_rand":
            noise = torch.rand(batch, hs * ws, generator=generator)
            n_vis = int(hs * ws * (1 - self.mask_ratio))
            vis = ~topk_mask(noise, max(1, n_vis))
            return self._official_floor(vis.to(device, non_blocking=True).float().reshape(batch, hs, ws))
        # the visible patches, drawn exactly as TubeMasker draws them (the top-k of the noise)
        noise = torch.rand(batch, h * w, generator=generator)  # [B, h*w]
        if self.init_map == "token_rand":
            m = (~topk_mask(noise, self.k_map)).to(device, non_blocking=True).float().reshape(batch, h, w)
            c = p // stride
            return self._official_floor(m.repeat_interleave(c, 1).repeat_interleave(c, 2))  # [B, hs, ws]
        # mix_gauss: max over Gaussian bumps centred on the chosen patches (the max does not
        # depend on their order; sorted: row-major, as the visible set's nonzero() gave them)
        idx = noise.topk(self.k_map, dim=1).indices.sort(dim=1).values.to(device, non_blocking=True)  # [B, k]
        return self.bump_map(idx, hs, ws, stride, device)

    def bump_map(self, idx: torch.Tensor, hs: int, ws: int, stride: int = 1,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """The ``mix_gauss`` map ``(B, hs, ws)`` of the bumps on patches ``idx (B, k)`` (row-major
        patch indices, on ``device``): the max of the bumps. With ``official_compat`` as the
        official code computes it: ``exp(-(((y - my) / p)^2 + ((x - mx) / p)^2))``, the sum in the
        exponent (the max of the exponentials is the exponential of the smallest sum), divided by
        its maximum per clip; ``exp`` then runs on ``device``, so its last bit may differ between
        devices, as the official code's does."""
        w = self.grid[2]
        device = torch.device("cpu") if device is None else torch.device(device)
        if self.official_compat:
            ay, bx = self._gauss_profiles(hs, ws, stride, device)  # [h, hs], [w, ws]: squared terms
            iy, ix = idx // w, idx % w  # [B, k]
            least = None
            for j in range(idx.shape[1]):
                e = ay[iy[:, j]][:, :, None] + bx[ix[:, j]][:, None, :]  # [B, hs, ws]
                least = e if least is None else torch.minimum(least, e)
            m = torch.exp(-least)
            return m / m.amax(dim=(1, 2), keepdim=True)
        gy, gx = self._gauss_profiles(hs, ws, stride, device)  # [h, hs], [w, ws]
        if device.type == "cpu":  # (a loader worker: one compiled pass instead of ~10 operators)
            from mgmae.kernels import max_of_bumps

            return torch.from_numpy(max_of_bumps(gy.numpy(), gx.numpy(), (idx // w).numpy(),
                                                 (idx % w).numpy()))
        bumps = gy[idx // w][..., :, None] * gx[idx % w][..., None, :]  # [B, k, hs, ws]
        return bumps.amax(dim=1)  # [B, hs, ws]

    def _official_floor(self, m: torch.Tensor) -> torch.Tensor:
        """The official code's 0/1 maps (token_rand, pixel_rand) hold 1e-8 instead of 0, so that its
        exact-zero hole test finds only the warp's holes (no change without ``official_compat``)."""
        return m.clamp_min_(1e-8) if self.official_compat else m

    def _gauss_profiles(self, hs: int, ws: int, stride: int, device: torch.device):
        """The separable bump profiles ``gy (h, hs)``, ``gx (w, ws)``: computed on the CPU (the same
        floats on every device), copied once per device and kept. With ``official_compat`` the
        terms in the exponent instead, ``((x - m) / p)^2`` (sigma = p / sqrt(2)), as the official
        code computes them (see :meth:`bump_map`)."""
        key = (hs, ws, stride, float(self.gauss_sigma), self.official_compat, str(device))
        cache = self.__dict__.setdefault("_profiles", {})
        if key not in cache:
            p, (_, h, w) = self.patch_size, self.grid
            ys = (torch.arange(hs, dtype=torch.float32) + 0.5) * stride
            xs = (torch.arange(ws, dtype=torch.float32) + 0.5) * stride
            cy = (torch.arange(h, dtype=torch.float32) + 0.5) * p  # patch centres
            cx = (torch.arange(w, dtype=torch.float32) + 0.5) * p
            if self.official_compat:
                gy = ((ys[None, :] - cy[:, None]) / p) ** 2  # [h, hs]
                gx = ((xs[None, :] - cx[:, None]) / p) ** 2  # [w, ws]
            else:
                gy = torch.exp(-((ys[None, :] - cy[:, None]) ** 2) / (2 * self.gauss_sigma**2))  # [h, hs]
                gx = torch.exp(-((xs[None, :] - cx[:, None]) ** 2) / (2 * self.gauss_sigma**2))  # [w, ws]
            cache[key] = (gy.to(device, non_blocking=True), gx.to(device, non_blocking=True))
        return cache[key]

    def propagate(self, init: torch.Tensor, flows: torch.Tensor, base: int) -> torch.Tensor:
        """Carry ``init (B, H, W)`` from ``base`` to every frame: ``(B, T, H, W)``.
        ``flows (B, P, 2, H, W)`` are ordered as :meth:`flow_pairs`."""
        from mgmae.flow.warp import backward_warp, forward_splat, official_backward_warp

        T = self.input_size[0]
        if self.warp == "backward" and not self.official_compat and _numpy_ok(init, flows):
            # the loader's small CPU maps (the official rule always takes the torch path below)
            return torch.from_numpy(self._propagate_numpy(init.numpy(), flows.numpy(), base))
        init1 = init.unsqueeze(1)  # [B, 1, H, W]
        maps: list[torch.Tensor | None] = [None] * T
        maps[base] = init1
        for t, k in zip(*self._propagation_order(base)):
            nb = t - 1 if t > base else t + 1
            f = flows[:, k]  # [B, 2, H, W]
            if self.official_compat:  # the official warp: faded border band, holes are exact zeros
                m = official_backward_warp(maps[nb], f)
                maps[t] = torch.where(m == 0, init1, m) if self.hole_filling == "consist" else m
                continue
            if self.warp == "forward":
                m, weight = forward_splat(maps[nb], f)
                valid = weight > 0
            else:
                m, valid = backward_warp(maps[nb], f)
            if self.hole_filling == "consist":
                m = torch.where(valid, m, init1)
            else:
                m = torch.where(valid, m, torch.zeros_like(m))
            maps[t] = m
        return torch.cat(maps, dim=1)  # [B, T, H, W]

    def _propagate_numpy(self, init: np.ndarray, flows: np.ndarray, base: int) -> np.ndarray:
        """:meth:`propagate` (backward warping) on float32 arrays, compiled: every warp is
        :func:`mgmae.kernels.warp_plane`, the arithmetic of the torch path, so the same floats
        without a torch dispatch per operation (15 warps of a 56 x 56 map: dispatch was most of
        the cost)."""
        from mgmae.flow.warp import _bounds
        from mgmae.kernels import propagate_backward

        B, H, W = init.shape
        order, pair = self._propagation_order(base)
        out = np.empty((B, self.input_size[0], H, W), dtype=np.float32)
        propagate_backward(np.ascontiguousarray(init, dtype=np.float32),
                          np.ascontiguousarray(flows, dtype=np.float32), base,
                          np.array(order, dtype=np.int64), np.array(pair, dtype=np.int64),
                          self.hole_filling == "consist", *_bounds(H, W), out)
        return out

    def _propagation_order(self, base: int) -> tuple[list[int], list[int]]:
        """The frames step 3 fills, in order (after ``base``, then before it, moving away from it),
        and for each the index of its flow in :meth:`flow_pairs`."""
        T = self.input_size[0]
        order = list(range(base + 1, T)) + list(range(base - 1, -1, -1))
        return order, [t if t < base else t - 1 for t in order]

    def cube_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps (B, T, H', W')`` -> each cube's score ``(B, t, h*w)``: the sum of the map over
        its ``tubelet x patch x patch`` pixels (or cells)."""
        B = maps.shape[0]
        t, h, w = self.grid
        ts, p = self.tubelet_size, maps.shape[-1] // self.grid[2]  # map cells per patch side
        if self.official_compat:  # summed in the official code's order: each cube's values in a row
            cubes = maps.reshape(B, t, ts, h, p, w, p).permute(0, 1, 3, 5, 2, 4, 6)  # [B, t, h, w, ts, p, p]
            scores = cubes.reshape(B, t, h, w, ts * p * p).sum(-1)  # [B, t, h, w]
        else:
            scores = maps.reshape(B, t, ts, h, p, w, p).sum(dim=(2, 4, 6))  # [B, t, h, w]
        return scores.reshape(B, t, h * w).float()

    def select(self, maps: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``maps (B, T, H', W')`` (pixels, or cells of :attr:`map_stride`) -> mask ``(B, N)``:
        cube scores, then top-k visible."""
        B = maps.shape[0]
        t, h, w = self.grid
        scores = self.cube_scores(maps)  # [B, t, h*w], on the maps' device: top-k there too
        if self.exposure_chance > 0 and self.exposure == "official":
            # the official code: every call, one random slice per clip, unscaled N(0, 1) on its
            # scores; theirs sum the map over pixels, ours over cells of map_stride^2 pixels
            sl = torch.randint(0, t, (B,), generator=generator)  # [B]
            noise = torch.randn(B, h * w, generator=generator) / self.map_stride ** 2  # [B, h*w]
            add = torch.zeros(B, t, h * w)
            add[torch.arange(B), sl] = noise
            scores = scores + add.to(scores.device, non_blocking=True)
        elif self.exposure_chance > 0:
            # the draws from the CPU generator, in the same order as ever; the noise goes to the
            # chosen (clip, slice) rows as a dense [B, t, h*w] term (no indexing on the device)
            hit = torch.rand(B, generator=generator) < self.exposure_chance  # [B]
            sl = torch.randint(0, t, (B,), generator=generator)  # [B]
            noise = torch.randn(B, h * w, generator=generator)  # [B, h*w], scaled by std below
            rows = torch.arange(B)[hit]
            add = torch.zeros(B, t, h * w)
            add[rows, sl[hit]] = noise[hit]
            std = scores.flatten(1).std(1)  # [B]
            scores = scores + add.to(scores.device, non_blocking=True) * std[:, None, None]
        # ties: torch.topk decides; the official code calls it with sorted=False, which may keep
        # another of equal scores, so the official rule does too
        select = _topk_unsorted if self.official_compat else topk_mask
        if self.topk_on_all:
            return select(scores.reshape(B, -1), self.k * t)  # [B, N]
        return select(scores.reshape(B * t, h * w), self.k).reshape(B, t * h * w)  # [B, N]

    # ------------------------------------------------------------------ entry points
    def masks_from_flows(self, flows: torch.Tensor, base: int,
                         generator: torch.Generator | None = None, on_map: bool = False) -> torch.Tensor:
        """Masks ``(B, N)`` given the flows ``(B, P, 2, H, W)`` of :meth:`flow_pairs` (``base``).
        ``on_map``: the flows are already on the map's grid (``H / map_stride`` cells, in cells)."""
        B, P, _, H, W = flows.shape
        s = self.map_stride
        if on_map:
            H, W = H * s, W * s
        elif s > 1:  # the map on the coarse grid: flow at each cell's centre, in cells
            flows = flows[..., s // 2::s, s // 2::s] / s
        init = self.initial_map(B, H, W, generator, s, device=flows.device)  # [B, H/s, W/s]
        maps = self.propagate(init, flows, base)  # [B, T, H/s, W/s]
        return self.select(maps, generator)  # on the flows' device

    def _mask(self, clip, batch, generator):
        if clip is None:
            raise ValueError("motion-guided masking needs the clip (its motion decides the mask)")
        mean = torch.tensor(IMAGENET_MEAN, dtype=clip.dtype).to(clip.device, non_blocking=True).view(1, 3, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=clip.dtype).to(clip.device, non_blocking=True).view(1, 3, 1, 1, 1)
        frames = (clip.float() * std + mean).clamp(0, 1).transpose(1, 2)  # [B, T, 3, H, W]
        base = self.base_index(generator)
        pairs = self.flow_pairs(base)
        with torch.no_grad():
            flows = self.compute_flows(frames, pairs)  # [B, P, 2, H, W]
            return self.masks_from_flows(flows, base, generator)

    def mask_views(self, frames: torch.Tensor, params, flow_fn=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Loader path: ``frames (T, 3, H, W)``, float in ``[0, 1]`` or uint8 (before augmentation), the views' crop
        parameters -> masks ``(S, N)``. Flow is computed once per clip (or taken from
        ``flow_fn(src, dst) -> (2, H, W)``, e.g. ground truth) and carried through each view's
        crop/resize/flip, so repeated-augmentation views share one flow computation. A ``flow_fn``
        with a ``cell`` attribute (:class:`mgmae.flow.codec.ClipCodecFlow`) gives flows on a grid
        of ``cell``-pixel cells through ``flow_fn.pairs(pairs, box=...)``, only on the cells of
        the views' crop boxes; they go to each view's map grid directly.

        The flow is computed only on the union of the views' crop boxes (a 272 x 272 crop of a
        640 x 272 frame: 43% of the pixels), and when every view shrinks its crop (resized to
        224), on that region resized to the largest scale any view needs: the views never see
        more, and it costs a fraction of the pixels (flow near the box's edge may differ slightly
        from flow computed on the whole frame, as it would for a cropped video)."""
        from mgmae.data.transforms import apply_flow, scale_crop_params

        T, _, H, W = frames.shape
        if T != self.input_size[0]:
            raise ValueError(f"expected {self.input_size[0]} frames, got {T}")
        base = self.base_index(generator)
        pairs = self.flow_pairs(base)
        with torch.no_grad():
            if getattr(flow_fn, "cell", None):  # flow on a coarse grid (codec): the crop boxes' cells
                top, left = min(p.top for p in params), min(p.left for p in params)
                bottom = max(p.top + p.height for p in params)
                right = max(p.left + p.width for p in params)
                flows, (y0, x0, y1, x1) = flow_fn.pairs(pairs, box=(top, left, bottom, right))
                params = [replace(p, top=p.top - y0, left=p.left - x0) for p in params]
                return self._mask_views_coarse(flows, y1 - y0, x1 - x0, params, base, generator)
            if flow_fn is not None:
                flows = torch.stack([flow_fn(s, d) for s, d in pairs])  # [P, 2, H, W]
                flows = self._sanitize(flows, (len(pairs), 2, H, W))
            else:
                # only the union of the views' crop boxes is ever seen: compute flow there
                top, left = min(p.top for p in params), min(p.left for p in params)
                bottom = max(p.top + p.height for p in params)
                right = max(p.left + p.width for p in params)
                if (top, left, bottom, right) != (0, 0, H, W):
                    frames = frames[..., top:bottom, left:right]
                    params = [replace(p, top=p.top - top, left=p.left - left) for p in params]
                    H, W = bottom - top, right - left
                scale = max(max(p.out_h / p.height, p.out_w / p.width) for p in params)
                h, w = max(1, round(H * scale)), max(1, round(W * scale))
                if scale < 1 and (h, w) != (H, W):  # flow at the views' scale
                    frames = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False,
                                           antialias=True)  # [T, 3, h, w]
                    frames = frames if frames.dtype == torch.uint8 else frames.clamp_(0, 1)
                    params = [scale_crop_params(p, h / H, w / W, h, w) for p in params]
                flows = self.compute_flows(frames.unsqueeze(0), pairs)[0]  # [P, 2, h, w]
            out = []
            for p in params:
                f = apply_flow(flows, p)  # [P, 2, h, w] on the view's grid
                out.append(self.masks_from_flows(f.unsqueeze(0), base, generator)[0])
            return torch.stack(out)  # [S, N]

    def _mask_views_coarse(self, flows: torch.Tensor, H: int, W: int, params, base: int,
                           generator: torch.Generator | None) -> torch.Tensor:
        """Masks ``(S, N)`` from flows ``(P, 2, h, w)`` given on a coarse grid of ``H x W`` pixels
        (e.g. the codec's 8-pixel cells, in cells): each view's crop/resize/flip takes them
        straight to the map's grid (``out / map_stride`` cells), never through full resolution."""
        from mgmae.data.transforms import apply_flow, scale_crop_params

        P, _, h, w = flows.shape
        flows = self._sanitize(flows, (P, 2, h, w))
        s = self.map_stride
        out = []
        for p in params:
            q = scale_crop_params(p, h / H, w / W, h, w)
            q = replace(q, out_h=p.out_h // s, out_w=p.out_w // s)
            f = apply_flow(flows, q)  # [P, 2, out_h/s, out_w/s] in map cells
            out.append(self.masks_from_flows(f.unsqueeze(0), base, generator, on_map=True)[0])
        return torch.stack(out)  # [S, N]


def _topk_unsorted(scores: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`topk_mask` with ``topk(sorted=False)``, the official code's call (the same set but
    for ties among equal scores, which the two calls may break differently)."""
    idx = scores.topk(k, dim=1, sorted=False).indices  # [B, k]
    return torch.ones_like(scores, dtype=torch.bool).scatter_(1, idx, False)


def _numpy_ok(*tensors: torch.Tensor) -> bool:
    """Small float32 CPU tensors outside autograd: :meth:`MotionGuidedMasker.propagate` may run
    in NumPy (bit-identical, cheaper dispatch; see :mod:`mgmae.flow.warp`)."""
    from mgmae.flow.warp import _NUMPY_MAX

    return all(t.device.type == "cpu" and t.dtype == torch.float32 and not t.requires_grad
               for t in tensors) and tensors[0].numel() <= _NUMPY_MAX
