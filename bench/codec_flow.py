"""Codec motion vectors as optical flow (``flow.name=codec``): how good, measured against exact flow.

    python bench/codec_flow.py [--clips 24] [--size 224] [--stride 2]

The built-in synthetic clips come with exact optical flow. Each is rendered at ``2 * 16`` frames,
encoded to H.264 with PyAV's libx264 under a few encoder settings, decoded with motion-vector
export, and sampled as a 16-frame clip at ``--stride`` (so the codec flow is chained over the
frames in between, as for real data). Printed, per setting:

* end-point error (px) of the flow between neighbouring clip frames (the pairs the masker uses)
  on the moving objects, codec vs exact, and DIS (ultrafast, on the decoded frames) vs exact;
* tracking rate (``mgmae.masking.metrics.tracking_rate``, on the moving objects) of
  motion-guided masks with codec flow, exact flow and DIS flow, and of tube masks;
* CPU ms per clip for the flow: codec (vectors -> flow for the 15 pairs; decoding excluded, it
  is the same decode) vs DIS (15 pairs).

One thread (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.data import SyntheticVideos  # noqa: E402
from mgmae.data.transforms import CropParams  # noqa: E402
from mgmae.data.video import open_video, write_video  # noqa: E402
from mgmae.flow import build_flow  # noqa: E402
from mgmae.flow.codec import CELL, ClipCodecFlow  # noqa: E402
from mgmae.masking import build_masker  # noqa: E402
from mgmae.masking.metrics import tracking_rate  # noqa: E402

SETTINGS = {
    "x264 defaults (3 B, pyramid, 3 refs)": {},
    "x264 1 ref (3 B, pyramid)": {"x264-params": "ref=1"},
    "x264 no B frames, 1 ref": {"bframes": "0", "x264-params": "ref=1"},
}


def epe(flow: torch.Tensor, exact: torch.Tensor, region: torch.Tensor) -> list[float]:
    """End-point errors (px) of ``flow (2, H, W)`` vs ``exact`` at the ``region`` pixels."""
    return torch.linalg.vector_norm(flow - exact, dim=0)[region].tolist()


def measure(options: dict, clips: int = 24, size: int = 224, stride: int = 2, tmp: str | None = None) -> dict:
    """EPE, tracking rates and flow CPU time for one encoder setting (``options`` for libx264);
    see the module docstring. tests/test_codec_flow.py calls it with a small size."""
    T, S, P, st = 16, size, 16, stride
    videos = SyntheticVideos(clips, T * st, S, seed=3)
    idx = list(range(0, T * st, st))
    grid = (T // 2, S // P, S // P)
    view = CropParams(0, 0, S, S, S, S)
    mg = build_masker("motion_guided", input_size=(T, S, S), patch_size=P, flow="dis", seed=0)
    tube = build_masker("tube", input_size=(T, S, S), patch_size=P, seed=0)
    dis = build_flow("dis")
    pairs = mg.flow_pairs(mg.base_index())
    err_codec, err_dis, cpu_codec, cpu_dis = [], [], [], []
    track = {k: [0, 0] for k in ("codec", "exact", "dis", "tube")}
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        for i in range(clips):
            c = videos[i]
            path = write_video(os.path.join(folder, f"{i}.mp4"), c.frames, options=options)
            with open_video(path, export_mvs=True) as v:
                frames = v.get_frames(idx)  # decoded, as training sees them
                motion = v.motion
            fr = torch.from_numpy(frames).permute(0, 3, 1, 2)  # [T, 3, S, S] uint8
            region = torch.from_numpy(c.layers[idx] >= 1)  # [T, S, S] moving objects

            def exact(a, b, c=c):
                return c.flow(idx[a], idx[b])

            t0 = time.thread_time()
            cf = ClipCodecFlow(motion, idx).pairs(pairs)  # [P, 2, S/8, S/8] cells
            cpu_codec.append(time.thread_time() - t0)
            t0 = time.thread_time()
            df = dis.pairs(fr.unsqueeze(0), pairs)[0]  # [P, 2, S, S]
            cpu_dis.append(time.thread_time() - t0)
            up = cf.repeat_interleave(CELL, 2).repeat_interleave(CELL, 3)[..., :S, :S] * CELL
            for k, (a, b) in enumerate(pairs):
                e = exact(a, b)
                err_codec += epe(up[k], e, region[a])
                err_dis += epe(df[k], e, region[a])
            masks = {
                "codec": mg.mask_views(fr, [view], flow_fn=ClipCodecFlow(motion, idx),
                                       generator=torch.Generator().manual_seed(i))[0],
                "exact": mg.mask_views(fr, [view], flow_fn=exact,
                                       generator=torch.Generator().manual_seed(i))[0],
                "dis": mg.mask_views(fr, [view], generator=torch.Generator().manual_seed(i))[0],
                "tube": tube(fr.float().permute(1, 0, 2, 3),
                             generator=torch.Generator().manual_seed(i)).reshape(-1),
            }
            for k, m in masks.items():
                h, n = tracking_rate(m, grid, P, 2, exact, region)
                track[k][0] += h
                track[k][1] += n
    return {
        "epe_codec": (statistics.median(err_codec), statistics.fmean(err_codec)),
        "epe_dis": (statistics.median(err_dis), statistics.fmean(err_dis)),
        **{f"track_{k}": h / max(n, 1) for k, (h, n) in track.items()},
        "points": track["exact"][1],
        "ms_codec": 1e3 * statistics.median(cpu_codec),
        "ms_dis": 1e3 * statistics.median(cpu_dis),
    }


def run(args) -> list[dict]:
    return [{"setting": name, **measure(options, args.clips, args.size, args.stride)}
            for name, options in SETTINGS.items()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--stride", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    t0 = time.time()
    rows = run(args)
    print(f"\n{platform.node()} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{args.clips} synthetic clips, 16 x {args.size} x {args.size}, stride {args.stride}, "
          f"load average {os.getloadavg()[0]:.2f}, {time.time() - t0:.0f} s\n")
    print("| encoding | EPE codec (median / mean px) | EPE DIS | tracking: codec | exact | DIS | tube "
          "| flow ms/clip: codec | DIS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['epe_codec'][0]:.2f} / {r['epe_codec'][1]:.2f} | "
              f"{r['epe_dis'][0]:.2f} / {r['epe_dis'][1]:.2f} | {100 * r['track_codec']:.1f}% | "
              f"{100 * r['track_exact']:.1f}% | {100 * r['track_dis']:.1f}% | "
              f"{100 * r['track_tube']:.1f}% | {r['ms_codec']:.1f} | {r['ms_dis']:.1f} |")


if __name__ == "__main__":
    main()
