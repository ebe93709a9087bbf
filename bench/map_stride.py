"""Coarse mask maps (``masking.map_stride``): tracking rate and cost against full resolution.

    python bench/map_stride.py [--clips 24] [--strides 1 2 4 8 16]

The motion-guided map only decides each cube's score, so it can be propagated on a grid of
``stride``-pixel cells. For each stride this prints, on the built-in synthetic clips with their
exact optical flow (so flow errors play no part):

* the tracking rate on the moving objects (``mgmae.masking.metrics.tracking_rate``: how often the
  scene point under a visible cube of the middle slice stays under a visible cube in the other
  slices), for the loader path (``mask_views``: one clip, flow through the view's crop) and for the
  step path (``masks_from_flows`` on the whole batch, as the training step calls it);
* the thread CPU time of map + propagation + top-k per clip (flow excluded: it is the same for
  every stride), one thread;
* tube masking's tracking rate as the floor.

Two settings: the demo's (16 x 64 x 64, patch 8) and the paper's (16 x 224 x 224, patch 16).
The default stride is the largest whose tracking rate stays within 1 point of stride 1 in both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.data import SyntheticVideos  # noqa: E402
from mgmae.data.transforms import CropParams  # noqa: E402
from mgmae.masking import build_masker  # noqa: E402
from mgmae.masking.metrics import tracking_rate  # noqa: E402


def identity_view(H: int, W: int) -> CropParams:
    return CropParams(top=0, left=0, height=H, width=W, out_h=H, out_w=W, flip=False)


def run_setting(frames: int, size: int, patch: int, clips: int, strides: list[int]) -> list[dict]:
    videos = SyntheticVideos(clips, frames, size, seed=1)
    data = []
    for i in range(clips):
        c = videos[i]
        frames_t = torch.from_numpy(c.frames).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
        data.append((c, frames_t, torch.from_numpy(c.layers >= 1)))
    grid = (frames // 2, size // patch, size // patch)
    rows = []
    tube = build_masker("tube", input_size=(frames, size, size), patch_size=patch, seed=0)
    hits = count = 0
    for c, fr, region in data:
        h, n = tracking_rate(tube(fr.float().permute(1, 0, 2, 3)).reshape(-1), grid, patch, 2, c.flow, region)
        hits, count = hits + h, count + n
    rows.append({"masker": "tube", "stride": "-", "loader": hits / max(count, 1), "step": None,
                 "ms": None})
    for s in strides:
        if patch % s:
            continue
        mg = build_masker("motion_guided", input_size=(frames, size, size), patch_size=patch,
                          flow=None, map_stride=s, seed=0)
        base = mg.base_index()
        pairs = mg.flow_pairs(base)
        view = identity_view(size, size)
        loader = [0, 0]
        cpu = []
        all_flows = []
        for c, fr, region in data:
            g = torch.Generator().manual_seed(7)
            m = mg.mask_views(fr, [view], flow_fn=c.flow, generator=g)[0]
            h, n = tracking_rate(m, grid, patch, 2, c.flow, region)
            loader[0] += h
            loader[1] += n
            flows = torch.stack([c.flow(a, b) for a, b in pairs]).unsqueeze(0)  # [1, P, 2, H, W]
            all_flows.append(flows)
            t0 = time.thread_time()
            mg.masks_from_flows(flows, base, torch.Generator().manual_seed(7))
            cpu.append(time.thread_time() - t0)
        batch = torch.cat(all_flows)  # the step path: one call for the whole batch
        masks = mg.masks_from_flows(batch, base, torch.Generator().manual_seed(7))
        step = [0, 0]
        for (c, _, region), m in zip(data, masks):
            h, n = tracking_rate(m, grid, patch, 2, c.flow, region)
            step[0] += h
            step[1] += n
        rows.append({"masker": "motion_guided (exact flow)", "stride": s,
                     "loader": loader[0] / max(loader[1], 1), "step": step[0] / max(step[1], 1),
                     "ms": 1000 * statistics.median(cpu)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# map_stride: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.clips} synthetic clips, load average {os.getloadavg()[0]:.2f}")
    for frames, size, patch in ((16, 64, 8), (16, 224, 16)):
        rows = run_setting(frames, size, patch, args.clips, args.strides)
        print(f"\n## {frames} x {size} x {size}, patch {patch}, mask ratio 0.9\n")
        print("| masker | map stride | map cells | tracking (loader) | tracking (step) | "
              "map + warp + top-k, CPU ms/clip |")
        print("|---|---|---|---|---|---|")
        ref = next(r for r in rows if r["stride"] == 1)
        for r in rows:
            cells = "-" if r["stride"] == "-" else f"{size // r['stride']}x{size // r['stride']}"
            step = "" if r["step"] is None else f"{100 * r['step']:.1f}%"
            ms = "" if r["ms"] is None else f"{r['ms']:.1f}" + (
                f" ({ref['ms'] / r['ms']:.1f}x faster)" if r["stride"] not in ("-", 1) else "")
            print(f"| {r['masker']} | {r['stride']} | {cells} | {100 * r['loader']:.1f}% | {step} | {ms} |")
        ok = [r["stride"] for r in rows if r["stride"] != "-"
              and abs(r["loader"] - ref["loader"]) <= 0.01 and abs(r["step"] - ref["step"]) <= 0.01]
        print(f"\nwithin 1 point of stride 1 (loader and step): strides {ok}")


if __name__ == "__main__":
    main()
