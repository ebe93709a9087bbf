"""Our ``masking.official_compat`` masks against the real official MGMAE code, on the CPU.

    python bench/official_masks.py --official PATH [--clips 4] [--tol 1e-4]

``PATH`` is a checkout of MCG-NJU/MGMAE that you fetched yourself (nothing of it is part of this
repository). The script imports its mask-building code as it is: ``engine_for_mgmae.py``
(``get_build_mask_volume_func``, which warps with ``flow_utils/softsplat.py``'s ``BackWarp``) and
``dataset/masking_generator.py`` (``MixGaussianInitialMaskingGenerator``). Modules the masks do
not use are stubbed: ``cupy`` (only its forward splatting needs it) and the repository's
``utils`` (``get_rank`` -> 0); ``einops`` and ``timm`` must be installed (``pip install einops``).

Both sides get the same inputs:

* the same initial bumps: the official generator draws its patches with ``torch.randperm``,
  which is made to return our chosen patches; ours builds the map from the same patches
  (``MotionGuidedMasker.bump_map``);
* the same flows: the official engine asks its flow model for ``flow(l, r)`` of frames
  ``nimgs[:, :, l]``, ``nimgs[:, :, r]``; here the "flow model" reads the frame numbers written
  into those frames and returns the field below for that pair; ours gets the same field for each
  pair of ``flow_pairs(base)``;
* the same base frame (the official ``random`` base is drawn with Python's ``random``: the
  script seeds it and gives ours the frame it draws).

Flow fields (``flow(a, b)`` moves pixel ``p`` of frame ``a`` to ``p + flow`` in ``b``), all of
which carry samples out of the frame: integer and fractional translations (``(b - a) * v``), a
rotation about the centre and a zoom (by ``(b - a)`` steps), and smooth random fields (4 x 4
Gaussian noise, bilinearly upsampled, drawn anew for every pair).

For each case it prints the share of tokens whose visible/hidden state differs, whether every
differing token is a near tie (its official score within ``--tol`` of its slice's top-k
threshold, the k-th largest official score), the largest such distance, and the largest
differences between the official scores and ours and between the initial maps. The control
columns: the same for the five separate keys that came closest before the switch existed
(``direction=official visible_count=official gauss_sigma=16/sqrt(2) map_stride=1
exposure=official``: our warp and hole rule, the map not divided by its maximum), with how many
of its differing tokens are near ties. The exit status is 1 if a token of the switch's masks
differs and is not a near tie.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import math
import os
import platform
import random
import sys
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.masking.motion_guided import MotionGuidedMasker  # noqa: E402


def load_official(path: Path):
    """The official ``get_build_mask_volume_func`` and ``MixGaussianInitialMaskingGenerator``."""
    if not (path / "engine_for_mgmae.py").is_file():
        raise SystemExit(f"--official {path}: no engine_for_mgmae.py there (a checkout of MCG-NJU/MGMAE?)")
    for name in ("einops", "timm"):
        if importlib.util.find_spec(name) is None:
            raise SystemExit(f"the official code needs {name}: pip install {name}")
    cupy = types.ModuleType("cupy")  # forward splatting only; softsplat.py decorates a kernel loader
    cupy.memoize = lambda **kw: (lambda fn: fn)
    cupy.ndarray = type("ndarray", (), {})  # einops looks for cupy arrays once cupy is imported
    sys.modules.setdefault("cupy", cupy)
    utils = types.ModuleType("utils")  # the official utils.py imports tensorboardX, deepspeed, ...
    utils.get_rank = lambda: 0
    sys.modules["utils"] = utils
    sys.path.insert(0, str(path))
    import engine_for_mgmae  # noqa: PLC0415 (the official module)

    spec = importlib.util.spec_from_file_location("official_masking_generator",
                                                  path / "dataset" / "masking_generator.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return engine_for_mgmae.get_build_mask_volume_func, gen.MixGaussianInitialMaskingGenerator


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


# ---------------------------------------------------------------------------- flow fields
def translation(vx: float, vy: float):
    def flow(a, b, B, H, W):
        f = torch.zeros(B, 2, H, W)
        f[:, 0], f[:, 1] = vx * (b - a), vy * (b - a)
        return f
    return flow


def _affine(matrix_of_steps):
    def flow(a, b, B, H, W):
        ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                                indexing="ij")
        cx, cy = (W - 1) / 2, (H - 1) / 2
        m = matrix_of_steps(b - a)
        x2 = m[0][0] * (xs - cx) + m[0][1] * (ys - cy) + cx
        y2 = m[1][0] * (xs - cx) + m[1][1] * (ys - cy) + cy
        return torch.stack([x2 - xs, y2 - ys]).float().expand(B, 2, H, W).contiguous()
    return flow


def rotation(degrees: float):
    def m(steps):
        t = math.radians(degrees * steps)
        return ((math.cos(t), -math.sin(t)), (math.sin(t), math.cos(t)))
    return _affine(m)


def zoom(factor: float):
    return _affine(lambda steps: ((factor ** steps, 0.0), (0.0, factor ** steps)))


def smooth_random(amplitude: float, seed: int):
    def flow(a, b, B, H, W):
        g = torch.Generator().manual_seed(seed * 100_003 + a * 101 + b)
        low = torch.randn(B, 2, 4, 4, generator=g) * amplitude
        return F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False).contiguous()
    return flow


CASES = [
    ("zero flow", translation(0, 0)),
    ("translation (3, -2) px/frame", translation(3, -2)),
    ("translation (7, 5) px/frame", translation(7, 5)),
    ("translation (2.5, -1.25) px/frame", translation(2.5, -1.25)),
    ("translation (-5.3, 0.7) px/frame", translation(-5.3, 0.7)),
    ("rotation 2 deg/frame", rotation(2.0)),
    ("zoom 1.03x/frame", zoom(1.03)),
    ("smooth random field, 6 px", smooth_random(6.0, 1)),
    ("smooth random field, 15 px", smooth_random(15.0, 2)),
]


# ---------------------------------------------------------------------------- one case
def run_case(flow_of, base_mode: str, seed: int, a, build_fn, Gen, mask_ratio=0.9, patch=16, tubelet=2):
    B, T, S = a.clips, a.frames, a.size
    h = w = S // patch
    t_slices = T // tubelet
    rng = torch.Generator().manual_seed(seed)
    k_map = h * w - int(h * w * mask_ratio)  # the bumps both draw (20 of 196)
    idx = torch.stack([torch.randperm(h * w, generator=rng)[:k_map] for _ in range(B)])  # [B, k]

    # the official initial maps: its generator, with randperm returning our patches first
    gen = Gen((T // tubelet, h, w), mask_ratio, patch)
    maps = []
    for b in range(B):
        rest = [i for i in range(h * w) if i not in set(idx[b].tolist())]
        perm = torch.tensor(idx[b].tolist() + rest)
        with patched(torch, "randperm", lambda n, *x, _p=perm, **kw: _p.clone()):
            maps.append(gen())
    init_official = torch.stack(maps).unsqueeze(1).float()  # [B, 1, S, S], as the engine passes it

    # frames that say their number: the official "flow model" looks the pair up from them
    nimgs = torch.zeros(B, 3, T, S, S)
    for t in range(T):
        nimgs[:, 0, t] = float(t)

    def flow_model(img_l, img_r, iters=None, test_mode=True):
        return None, flow_of(int(img_l[0, 0, 0, 0]), int(img_r[0, 0, 0, 0]), B, S, S)

    args = types.SimpleNamespace(warp_type="backward", base_frame=base_mode, hole_filling="consist",
                                 window_size=(t_slices, h, w), mask_ratio=mask_ratio, topk_on_all=False,
                                 exposure_chance=0, flow_iter=6, batch_size=B, num_sample=1, input_size=S)
    build = build_fn(flow_model, torch.device("cpu"), args)
    random.seed(seed)
    base = {"middle": T // 2, "first": 0}.get(base_mode)
    if base is None:  # the official random base: Python's random.randint, drawn inside the call
        state = random.getstate()
        base = random.randint(0, T - 1)
        random.setstate(state)
    captured = {}
    real_topk = torch.topk

    def topk(x, *args_, **kw):
        captured["scores"] = x.clone()
        return real_topk(x, *args_, **kw)

    with torch.no_grad(), patched(torch, "topk", topk):
        official = build(nimgs, init_official.clone())  # [B, N] True = masked
    s_off = captured["scores"]  # [B, t, h*w]

    # ours: the switch alone, the same bumps and flows
    m = MotionGuidedMasker(input_size=(T, S, S), patch_size=patch, tubelet_size=tubelet,
                           mask_ratio=mask_ratio, flow=None, official_compat=True)
    init_ours = m.bump_map(idx.sort(dim=1).values, S, S)
    flows = torch.stack([flow_of(src, dst, B, S, S) for src, dst in m.flow_pairs(base)], dim=1)
    with patched(m, "initial_map", lambda *x, **kw: init_ours.clone()):
        ours = m.masks_from_flows(flows, base)
    s_ours = m.cube_scores(m.propagate(init_ours, flows, base))  # [B, t, h*w]

    # the control: the five separate keys that came closest before the switch (count, sigma,
    # exposure, map stride, direction), i.e. our warp and holes and an undivided map
    m5 = MotionGuidedMasker(input_size=(T, S, S), patch_size=patch, tubelet_size=tubelet,
                            mask_ratio=mask_ratio, flow=None, direction="official", visible_count="official",
                            gauss_sigma=patch / math.sqrt(2), map_stride=1, exposure="official")
    init5 = m5.bump_map(idx.sort(dim=1).values, S, S)
    with patched(m5, "initial_map", lambda *x, **kw: init5.clone()):
        five = m5.masks_from_flows(flows, base)
    diff5 = (official != five).reshape(B, t_slices, h * w)

    diff = (official != ours).reshape(B, t_slices, h * w)
    thr = s_off.topk(m.k, dim=-1).values[..., -1:]  # [B, t, 1]: the k-th largest official score
    dist = (s_off - thr).abs()[diff]
    dist5 = (s_off - thr).abs()[diff5]
    return dict(base=base, share=float(diff.float().mean()), n=int(diff.sum()), tokens=diff.numel(),
                share5=float(diff5.float().mean()), near5=int((dist5 <= a.tol).sum()), n5=int(diff5.sum()),
                near=bool((dist <= a.tol).all()), max_dist=float(dist.max()) if dist.numel() else 0.0,
                score_diff=float((s_off - s_ours).abs().max()),
                map_diff=float((init_official[:, 0] - init_ours).abs().max()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", required=True, type=Path, help="a checkout of MCG-NJU/MGMAE")
    p.add_argument("--clips", type=int, default=4, help="clips per case (each its own bumps)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--bases", nargs="+", default=["middle", "first", "random"])
    p.add_argument("--seeds", type=int, default=2, help="bump draws (and random bases) per case")
    p.add_argument("--tol", type=float, default=1e-4, help="near tie: |score - threshold| <= tol")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="torch.meshgrid")  # the official generator's call
    build_fn, Gen = load_official(a.official.resolve())
    print(f"# {datetime.date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}; "
          f"{a.clips} clips of {a.frames} x {a.size} x {a.size}, patch 16, tubelet 2, ratio 0.9, "
          f"hole filling consist; official: {a.official}")
    print(f"{'case':36s} {'base':>6s} {'differ':>14s} {'near ties':>9s} {'max |s-thr|':>11s} "
          f"{'max |ds|':>9s} {'max |dmap|':>10s} | {'five keys: differ':>18s} {'near ties':>9s}")
    total = bad = 0
    for name, flow_of in CASES:
        for base_mode in a.bases:
            for seed in range(a.seeds):
                r = run_case(flow_of, base_mode, seed, a, build_fn, Gen)
                total += r["n"]
                bad += int(not r["near"])
                print(f"{name:36s} {base_mode[:3] + str(r['base']):>6s} "
                      f"{r['n']:5d} {100 * r['share']:6.3f}% {'yes' if r['near'] else 'NO':>9s} "
                      f"{r['max_dist']:11.2e} {r['score_diff']:9.2e} {r['map_diff']:10.2e} | "
                      f"{r['n5']:10d} {100 * r['share5']:6.3f}% {r['near5']:9d}", flush=True)
    print(f"# differing tokens in all: {total}; cases with a differing token that is not a near tie: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
