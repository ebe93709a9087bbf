"""One prepared GPU check (issue 20): prints a Markdown section to paste into bench/RESULTS.md.

    python bench/gpu_check.py                    # on one GPU, <= 8 minutes
    python bench/gpu_check.py --out gpu.md       # ... and write the Markdown there too
    python bench/gpu_check.py --smoke            # the same code paths on the CPU, tiny sizes (< 1 min)

On a machine with torch, torchvision, timm and transformers but without this package installed
(it puts src/ on the path) and without PyAV (not needed: synthetic clips), e.g. a lent GPU box:
``PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT/gpu.md`` with a timeout of ~9 minutes.

Sections (each catches its own errors and prints them in its place, so one failure does not lose
the others' numbers):

(a) ViT-B MAE train step (forward + backward + AdamW), ours vs transformers'
    VideoMAEForPreTraining, bf16 autocast, batch 16 and 24: ms/step, clips/s, peak memory, MFU
    against the device's dense bf16 peak; ours also with VideoMAE V2's running-cell decoder mask
    (0.5), torch.compile and activation checkpointing, HF also with gradient checkpointing.
    Models, FLOP count and peaks come from bench/pretrain_step.py.
(b) Batched RAFT-small mask generation (6 iterations, 15 pairs, 224 px), 24 clips, fp32 vs bf16
    autocast: ms per clip (flow, then map + top-k), peak memory, and the bf16 flow's difference and
    mask agreement against fp32 (random weights unless $MGMAE_RAFT_SMALL_WEIGHTS names a file: then
    the numbers mean something).
(c) 30 steps of ``mgmae pretrain -c pretrain_vit_base_ssv2`` on synthetic 224 clips with
    masking.where=step and flow.weights=random: the step split into flow + mask (the masker is
    timed, synchronised, around the very object the engine builds) vs data wait vs model.
(d) ``pytest -m gpu`` (tests/test_gpu.py): autocast numerics, RAFT on the device, the same masks on
    the CPU and the GPU, no host synchronisation in the masker, one-process NCCL DDP.

With --smoke everything runs on the CPU: nano ViT, 64 px, 4 frames, 2 clips, 2 steps, RAFT with 2
iterations, torch.compile with the "eager" backend (the wrapper, not inductor); the numbers mean
nothing, the point is that the script cannot rot (tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/pretrain_step.py
if (ROOT / "src" / "mgmae").is_dir():
    sys.path.insert(0, str(ROOT / "src"))

import pretrain_step as ps  # noqa: E402  (build_ours, build_hf, analytic_train_flops, peak_tflops)

SECTIONS = {
    "a": "(a) ViT-B MAE train step: ours vs transformers VideoMAEForPreTraining",
    "b": "(b) Batched RAFT-small mask generation",
    "c": "(c) mgmae pretrain -c pretrain_vit_base_ssv2, masking.where=step, 30 steps",
    "d": "(d) pytest -m gpu",
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else ps.cpu_model()


def header(ctx) -> list[str]:
    try:
        import transformers
        tv = transformers.__version__
    except ImportError:
        tv = "not installed"
    import torchvision

    cuda = torch.version.cuda or "n/a"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "n/a"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## GPU check{' (SMOKE: CPU, tiny sizes, numbers mean nothing)' if ctx.smoke else ''}: "
             f"{device_name(ctx.device)}", "",
             f"- device: `{ctx.device}` ({device_name(ctx.device)})",
             f"- torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn}, torchvision {torchvision.__version__}, "
             f"transformers {tv}, python {platform.python_version()}",
             f"- date: {now}",
             f"- command: `python bench/gpu_check.py {' '.join(ctx.argv)}`".rstrip()]
    peak = ps.peak_tflops(device_name(ctx.device), "bf16") if ctx.device.type == "cuda" else None
    lines.append(f"- dense bf16 peak used for MFU: {f'{peak:g} TFLOP/s' if peak else 'n/a (unknown device)'}")
    return lines


# ----------------------------------------------------------------------------- (a)

def section_a(ctx) -> list[str]:
    from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from mgmae.masking import build_masker
    from mgmae.masking.running_cell import running_cell_mask

    dev = ctx.device
    smoke = ctx.smoke
    size = "nano" if smoke else "base"
    a = SimpleNamespace(patch=16, frames=4 if smoke else 16, img_size=64 if smoke else 224,
                        decoder_depth=2 if smoke else 4, batch=0)
    batches = [2] if smoke else [16, 24]
    warm, steps = (1, 2) if smoke else (2, 8)
    budget = time.time() + (120 if smoke else 200)  # the section's share of the 8 minutes
    dname = device_name(dev)
    peak = ps.peak_tflops(dname, "bf16") if dev.type == "cuda" else None
    compile_kw = {"backend": "eager"} if smoke else {}

    torch.manual_seed(0)
    ours = ps.build_ours(size, a).to(dev).train()
    try:
        hf = ps.build_hf(size, a).to(dev).train()
    except ImportError:
        hf = None
    opt_kw = dict(lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    if dev.type == "cuda":
        opt_kw["fused"] = True
    opt_ours = torch.optim.AdamW(ours.parameters(), **opt_kw)
    opt_hf = torch.optim.AdamW(hf.parameters(), **opt_kw) if hf is not None else None
    compiled = {}

    def set_ckpt(on: bool) -> None:
        ours.grad_checkpointing = on
        ours.encoder.grad_checkpointing = on
        if hf is not None:  # transformers >= 5 renamed gradient_checkpointing_* to activation_checkpointing_*
            kind = "activation" if hasattr(hf, "activation_checkpointing_enable") else "gradient"
            getattr(hf, f"{kind}_checkpointing_{'enable' if on else 'disable'}")()

    lines = [f"{'nano (smoke)' if smoke else 'ViT-B'}/16, {a.frames}x{a.img_size}x{a.img_size} clips, tube "
             f"mask 0.9, decoder depth {a.decoder_depth}, norm-pix loss, bf16 autocast, AdamW"
             f"{' fused' if dev.type == 'cuda' else ''}; {warm} warm-up + {steps} timed steps per row, median. "
             f"MFU: model FLOPs (bench/pretrain_step.py's analytic count, recomputation not counted) / "
             f"dense bf16 peak; run_cell rows decode half the cubes, so no MFU."
             + (" torch.compile with backend=eager (smoke)." if smoke else ""), "",
             "| model | variant | batch | ms/step | clips/s | peak GiB | TFLOP/s | MFU |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for B in batches:
        a.batch = B
        g = torch.Generator().manual_seed(0)
        pixels = torch.rand(B, 3, a.frames, a.img_size, a.img_size, generator=g)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
        clip = ((pixels - mean) / std).to(dev)
        clip_hf = clip.permute(0, 2, 1, 3, 4).contiguous()
        masker = build_masker("tube", input_size=(a.frames, a.img_size, a.img_size), patch_size=a.patch,
                              mask_ratio=0.9, seed=0)
        mask = masker(batch_size=B).to(dev)
        visible = float((~mask[0]).float().mean())
        decode = running_cell_mask(ours.grid, B, 0.5, torch.Generator().manual_seed(0)).to(dev)
        flops = ps.analytic_train_flops(size, a, visible)

        def fn_ours(m, dm=None):
            return lambda: m(clip, mask, dm).loss

        def fn_hf():
            return hf(pixel_values=clip_hf, bool_masked_pos=mask).loss

        def compiled_ours():
            if "ours" not in compiled:
                compiled["ours"] = torch.compile(ours, **compile_kw)
            return compiled["ours"]

        variants = [  # (model, variant, loss fn factory, optimizer, ckpt, full FLOPs)
            ("ours", "eager", lambda: fn_ours(ours), opt_ours, False, True),
            ("hf", "eager", lambda: fn_hf, opt_hf, False, True),
            ("ours", "run_cell 0.5", lambda: fn_ours(ours, decode), opt_ours, False, False),
            ("ours", "act. ckpt", lambda: fn_ours(ours), opt_ours, True, True),
            ("hf", "grad ckpt", lambda: fn_hf, opt_hf, True, True),
            ("ours", "compile", lambda: fn_ours(compiled_ours()), opt_ours, False, True),
            ("ours", "compile + run_cell 0.5", lambda: fn_ours(compiled_ours(), decode), opt_ours, False, False),
        ]
        for name, variant, make, opt, ckpt, full in variants:
            row = f"| {name} | {variant} | {B} |"
            if name == "hf" and hf is None:
                lines.append(row + " transformers not installed |||||")
                continue
            if time.time() > budget:
                lines.append(row + " skipped (time budget) |||||")
                continue
            try:
                set_ckpt(ckpt)
                loss_fn = make()

                def step():
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast(dev.type, dtype=torch.bfloat16):
                        loss = loss_fn()
                    loss.backward()
                    opt.step()

                for _ in range(warm):
                    step()
                sync(dev)
                reset_peak(dev)
                ts = []
                for _ in range(steps):
                    sync(dev)
                    t0 = time.perf_counter()
                    step()
                    sync(dev)
                    ts.append(time.perf_counter() - t0)
                med = statistics.median(ts)
                tf = flops / med / 1e12
                mfu = f"{100 * tf / peak:.1f}%" if peak and full else "n/a"
                lines.append(row + f" {med * 1e3:.1f} | {B / med:.2f} | {peak_gib(dev)} | "
                             f"{f'{tf:.1f}' if full else 'n/a'} | {mfu} |")
            except Exception as e:  # e.g. out of memory at batch 24 with a variant: keep going
                msg = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                lines.append(row + f" error: {msg} |||||")
                free(dev)
            finally:
                set_ckpt(False)
        lines.append("")
        del clip, clip_hf, mask, decode
    lines.append(f"model FLOPs per clip (analytic, full decoder): {flops / a.batch / 1e9:.1f} GFLOP")
    del ours, hf, opt_ours, opt_hf, compiled
    free(dev)
    return lines


# ----------------------------------------------------------------------------- (b)

def section_b(ctx) -> list[str]:
    from mgmae.data.synthetic import SyntheticVideos
    from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_float_frames
    from mgmae.masking import build_masker

    dev, smoke = ctx.device, ctx.smoke
    T, S, B = (4, 64, 2) if smoke else (16, 224, 24)
    iters = 2 if smoke else 6
    reps = 1 if smoke else 3
    weights = os.environ.get("MGMAE_RAFT_SMALL_WEIGHTS") or "random"
    # synthetic moving-shapes clips: real motion, so the fp32 / bf16 comparison means something
    # (with trained weights)
    vids = SyntheticVideos(num_videos=B, num_frames=T, img_size=S, seed=0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    frames = torch.stack([to_float_frames(vids[i].frames) for i in range(B)])  # [B, T, 3, S, S]
    clip = ((frames.transpose(1, 2) - mean) / std).to(dev)  # [B, 3, T, S, S]

    lines = [f"RAFT-small, {iters} iterations, {T - 1} pairs per clip, {S} px, {B} clips per call, "
             f"flow.batch_size=32 pairs per RAFT call; weights: "
             f"{'RANDOM (timing only; the fp32/bf16 agreement needs trained weights)' if weights == 'random' else weights}. "
             f"flow: compute_flows; map + top-k: masks_from_flows on the flows; median of {reps}.", "",
             "| amp | flow ms/clip | map + top-k ms/clip | total ms/clip | peak GiB |",
             "|---|---:|---:|---:|---:|"]
    flows_by = {}
    for amp in ("none", "bf16"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = build_masker("motion_guided", input_size=(T, S, S), patch_size=16, mask_ratio=0.9,
                                 flow="raft_small", seed=0,
                                 flow_options=dict(weights=weights, iters=iters, batch_size=32, amp=amp))
                m(clip[:1])  # build RAFT, move it to the device, warm up
            base = m.base_index(None)
            pairs = m.flow_pairs(base)
            x = (clip.float() * std.to(dev) + mean.to(dev)).clamp(0, 1).transpose(1, 2)
            reset_peak(dev)
            tf, tm = [], []
            for _ in range(reps):
                sync(dev)
                t0 = time.perf_counter()
                with torch.no_grad():
                    flows = m.compute_flows(x, pairs)
                sync(dev)
                t1 = time.perf_counter()
                with torch.no_grad():
                    m.masks_from_flows(flows, base, torch.Generator().manual_seed(0))
                sync(dev)
                tf.append(t1 - t0)
                tm.append(time.perf_counter() - t1)
            flows_by[amp] = (flows, m, base)
            f, mm = statistics.median(tf) / B * 1e3, statistics.median(tm) / B * 1e3
            lines.append(f"| {'fp32' if amp == 'none' else amp} | {f:.2f} | {mm:.2f} | {f + mm:.2f} | {peak_gib(dev)} |")
        except Exception as e:
            lines.append(f"| {amp} | error: {type(e).__name__}: {str(e)[:160]} |||| ")
            free(dev)
    if len(flows_by) == 2:
        (f32, m, base), (f16, _, _) = flows_by["none"], flows_by["bf16"]
        epe = (f32 - f16).norm(dim=2)  # [B, P, H, W]
        mag = f32.norm(dim=2).mean()
        m32 = m.masks_from_flows(f32, base, torch.Generator().manual_seed(0))
        m16 = m.masks_from_flows(f16, base, torch.Generator().manual_seed(0))
        vis_same = ((~m32) & (~m16)).sum(1).float() / (~m32).sum(1).float()
        lines += ["", f"bf16 vs fp32: flow end-point difference mean {float(epe.mean()):.3f} px, 99th pct "
                  f"{float(epe.flatten()[::max(1, epe.numel() // 2**23)].quantile(0.99)):.3f} px "
                  f"(mean |flow| {float(mag):.3f} px); masks: {100 * float((m32 == m16).float().mean()):.2f}% "
                  f"of cubes agree, {100 * float(vis_same.mean()):.2f}% of the visible cubes are the same"]
    del clip, flows_by
    free(dev)
    return lines


# ----------------------------------------------------------------------------- (c)

class TimedMasker:
    """The engine's masker, timed: each call (and the flow inside it) between two device
    synchronisations. Everything else is delegated."""

    def __init__(self, masker, device: torch.device):
        self.masker, self.device = masker, device
        self.calls: list[float] = []
        self.flows: list[float] = []
        inner = masker.compute_flows

        def timed_flows(*args, **kw):
            sync(device)
            t0 = time.perf_counter()
            out = inner(*args, **kw)
            sync(device)
            self.flows.append(time.perf_counter() - t0)
            return out

        if hasattr(masker, "compute_flows"):
            masker.compute_flows = timed_flows  # an instance attribute: _mask calls it

    def __call__(self, *args, **kw):
        sync(self.device)
        t0 = time.perf_counter()
        out = self.masker(*args, **kw)
        sync(self.device)
        self.calls.append(time.perf_counter() - t0)
        return out

    def __getattr__(self, name):
        return getattr(self.masker, name)

    def __repr__(self) -> str:
        return repr(self.masker)


def section_c(ctx) -> list[str]:
    from mgmae.config import load_config
    import mgmae.engine.pretrain as engine

    dev, smoke = ctx.device, ctx.smoke
    steps = 2 if smoke else 30
    skip = 0 if smoke else 5  # warm-up steps left out of the medians
    batch = 2 if smoke else ctx.c_batch
    out = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    over = ["data.dataset=synthetic", "masking.where=step", "flow.weights=random",
            f"train.max_steps={steps}", f"train.batch_size={batch}", "train.log_every=1",
            "train.tensorboard=false", "train.vis_clips=2", "train.baseline_clips=8",
            f"train.output_dir={out}", "train.run_name=c",
            # one epoch of exactly `steps` steps: no epoch-boundary checkpoint or loader restart inside
            f"data.synthetic_videos={batch * steps}"]
    if smoke:
        over += ["model.name=mae_vit_nano_patch16", "data.img_size=64", "data.num_frames=4",
                 "data.num_sample=1", "train.num_workers=0", "flow.iters=2", "train.device=cpu",
                 "train.amp=none"]
    else:
        over += [f"train.num_workers={min(8, os.cpu_count() or 1)}"]
    cfg = load_config("pretrain_vit_base_ssv2", over)
    made = []
    orig = engine.masker_from_config

    def timed_factory(*args, **kw):
        made.append(TimedMasker(orig(*args, **kw), dev))
        return made[-1]

    buf = io.StringIO()
    engine.masker_from_config = timed_factory
    t0 = time.time()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), warnings.catch_warnings():
            warnings.simplefilter("always")
            run_dir = engine.pretrain(cfg)
    except BaseException:
        sys.stderr.write(buf.getvalue()[-3000:])
        raise
    finally:
        engine.masker_from_config = orig
    wall = time.time() - t0
    recs = [json.loads(x) for x in (Path(run_dir) / "log.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "step" in r and "step_s" in r]
    tm = made[0]
    n = len(recs)
    calls, flows = tm.calls[:n], tm.flows[:n]  # the loop's calls (the end-of-run check comes after)
    rows = list(zip(recs, calls, flows))[skip:]

    def med(xs):
        return statistics.median(xs) * 1e3 if xs else float("nan")

    step_ms = med([r["step_s"] for r, _, _ in rows])
    mask_ms = med([c for _, c, _ in rows])
    flow_ms = med([f for _, _, f in rows])
    data_ms = med([max(0.0, r["data_s"] - c) for r, c, _ in rows])
    model_ms = med([r["step_s"] - r["data_s"] for r, _, _ in rows])
    views = batch * cfg.data.num_sample
    masker_line = next((x for x in buf.getvalue().splitlines() if "masker" in x and "[mgmae] model" in x), "")
    masker_line = masker_line[masker_line.find("masker"):]
    lines = [f"`mgmae pretrain -c pretrain_vit_base_ssv2` + `{' '.join(over[:3])}` "
             f"(train.batch_size={batch} x data.num_sample={cfg.data.num_sample} = {views} clips per step, "
             f"{cfg.model.name}, {cfg.data.num_frames}x{cfg.data.img_size}px, flow {cfg.flow.name} "
             f"iters {cfg.flow.iters or 'standard'} batch_size {cfg.flow.batch_size} amp {cfg.flow.amp}); "
             f"{steps} steps, medians over steps {skip + 1}-{n}; the masker is timed between device "
             f"synchronisations (so flow and model do not overlap here).", "",
             "| part | ms/step | share |", "|---|---:|---:|"]
    for name, v in (("flow (RAFT)", flow_ms), ("map + propagation + top-k", mask_ms - flow_ms),
                    ("flow + mask", mask_ms), ("data wait (loader, H2D)", data_ms),
                    ("model (fwd + bwd + AdamW)", model_ms), ("whole step", step_ms)):
        lines.append(f"| {name} | {v:.1f} | {100 * v / step_ms:.0f}% |")
    lines += ["", f"{views / step_ms * 1e3:.1f} clips/s; whole run {wall:.0f} s (with start-up, end-of-run "
              f"check and pictures on the device). Run log: `...{masker_line.strip()[:400]}`"]
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    free(dev)
    return lines


# ----------------------------------------------------------------------------- (d)

def section_d(ctx) -> list[str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider"]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=150 if ctx.smoke else 200)
    out = res.stdout + res.stderr
    results = [x for x in out.splitlines() if x.startswith(("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL"))]
    summary = next((x for x in reversed(out.splitlines()) if " in " in x and ("passed" in x or "skipped" in x
                                                                             or "failed" in x or "error" in x)), "")
    lines = [f"`{' '.join(cmd[2:])}` (exit {res.returncode}, {time.time() - t0:.0f} s): **{summary.strip('= ')}**", ""]
    lines += [f"- {x}" for x in results[:30]]
    if res.returncode not in (0, 5):  # 5: nothing collected
        fails = out[out.find("= FAILURES ="):] if "= FAILURES =" in out else out
        lines += ["", "```", fails[-2500:], "```"]
    return lines


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: the same code paths, quickly")
    p.add_argument("--out", help="also write the Markdown to this file")
    p.add_argument("--sections", default="abcd", help="which sections to run (default: abcd)")
    p.add_argument("--c-batch", type=int, default=8,
                   help="(c): videos per step (x 4 views from the recipe; the recipe's 24 x 4 = 96 clips "
                        "need a long warm-up; default 8, i.e. 32 clips per step)")
    p.add_argument("--device", default=None, help="default: cuda if available (cpu with --smoke)")
    args = p.parse_args(argv)
    dev = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ctx = SimpleNamespace(device=dev, smoke=args.smoke, argv=argv, c_batch=args.c_batch)
    t_start = time.time()
    md = header(ctx)
    for key in args.sections:
        if key not in SECTIONS:
            continue
        md += ["", f"### {SECTIONS[key]}", ""]
        t0 = time.time()
        try:
            md += globals()[f"section_{key}"](ctx)
        except Exception as e:  # noqa: BLE001 - each section reports its own failure
            tb = traceback.format_exc().strip().splitlines()
            md += [f"**error in this section**: `{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}`",
                   "", "```", *tb[-12:], "```"]
            free(dev)
        md += ["", f"_section time: {time.time() - t0:.0f} s_"]
        print("\n".join(md[-1:]), file=sys.stderr, flush=True)
    md += ["", f"_total: {time.time() - t_start:.0f} s_"]
    text = "\n".join(md) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
