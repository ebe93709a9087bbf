"""Pre-training step time: our MAE vs transformers' ``VideoMAEForPreTraining``, same batch, same mask.

One step = forward + backward + AdamW step. Both models get the identical clip batch and the
identical tube mask; measurements alternate between the two (A B, B A, A B, ...) after a warm-up so
that machine load and clock drift hit both alike; the median is reported.

    python bench/pretrain_step.py                              # CPU: ViT-B, batch 2, 3 steps
    python bench/pretrain_step.py --device cuda --batch 16 --dtype bf16 --steps 20

On CUDA it also reports peak memory and model FLOPs utilisation (MFU) against the dense peak of
the device named in PEAK_TFLOPS.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import torch

from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mgmae.masking import build_masker
from mgmae.models import SIZES, create_model, param_count

# Dense peak TFLOP/s by device-name substring: (bf16/fp16 tensor core, tf32 tensor core, fp32 SIMT).
# Datasheet numbers without sparsity. H100/H200 SXM: 989 bf16; H100 PCIe: 756.
PEAK_TFLOPS = [
    ("H200", (989.0, 494.0, 67.0)),
    ("H100 PCIe", (756.0, 378.0, 51.0)),
    ("H100 NVL", (835.0, 418.0, 60.0)),
    ("H100", (989.0, 494.0, 67.0)),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("GH200", (989.0, 494.0, 67.0)),
    ("B200", (2250.0, 1100.0, 75.0)),
    ("A100", (312.0, 156.0, 19.5)),
    ("L40S", (362.0, 183.0, 91.6)),
    ("L4", (121.0, 60.0, 30.3)),
    ("A10", (125.0, 62.5, 31.2)),
    ("V100", (125.0, 15.7, 15.7)),
    ("RTX 4090", (165.0, 82.6, 82.6)),
]


def peak_tflops(device_name: str, dtype: str) -> float | None:
    for key, (bf16, tf32, fp32) in PEAK_TFLOPS:
        if key in device_name:
            if dtype == "bf16":
                return bf16
            return tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32
    return None


# ----------------------------------------------------------------------------- models

def build_ours(size: str, args) -> torch.nn.Module:
    return create_model(f"mae_vit_{size}_patch{args.patch}", num_frames=args.frames,
                        img_size=args.img_size, decoder_depth=args.decoder_depth, norm_pix_loss=True)


def hf_config(size: str, args):
    from transformers import VideoMAEConfig

    s = SIZES[size]
    return VideoMAEConfig(
        image_size=args.img_size, patch_size=args.patch, num_frames=args.frames, tubelet_size=2,
        hidden_size=s.embed_dim, num_hidden_layers=s.depth, num_attention_heads=s.num_heads,
        intermediate_size=int(s.embed_dim * s.mlp_ratio), decoder_hidden_size=s.decoder_embed_dim,
        decoder_num_attention_heads=s.decoder_num_heads, decoder_num_hidden_layers=args.decoder_depth,
        decoder_intermediate_size=int(s.decoder_embed_dim * s.mlp_ratio), use_mean_pooling=False,
        norm_pix_loss=True, qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu",
        attn_implementation="sdpa",
    )


def build_hf(size: str, args) -> torch.nn.Module:
    from transformers import VideoMAEForPreTraining

    return VideoMAEForPreTraining(hf_config(size, args))


def ours_to_hf_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map our parameter names onto HF VideoMAEForPreTraining (only for the equivalence check)."""
    def prefix(k: str) -> str:
        return (k.replace("encoder.patch_embed.proj.", "videomae.embeddings.patch_embeddings.projection.")
                 .replace("encoder.blocks.", "videomae.encoder.layer.")
                 .replace("encoder.norm.", "videomae.layernorm.")
                 .replace("decoder.blocks.", "decoder.decoder_layers."))

    out = {}
    for k, v in sd.items():
        if ".attn.qkv.weight" in k:
            for n, w in zip(("query", "key", "value"), v.chunk(3)):
                out[prefix(k.replace("attn.qkv.weight", f"attention.attention.{n}.weight"))] = w
            continue
        k = (k.replace("attn.q_bias", "attention.attention.query.bias")
              .replace("attn.v_bias", "attention.attention.value.bias")
              .replace("attn.proj.", "attention.output.dense.")
              .replace("norm1.", "layernorm_before.").replace("norm2.", "layernorm_after.")
              .replace("mlp.fc1.", "intermediate.dense.").replace("mlp.fc2.", "output.dense."))
        out[prefix(k)] = v
    return out


# ----------------------------------------------------------------------------- FLOPs

def analytic_train_flops(size: str, args, ratio_visible: float) -> float:
    """Model FLOPs of one training step (forward + backward = 3x forward for matmuls; the patch
    embedding has no input gradient, so 2x), counting multiply-adds as 2 FLOPs."""
    s = SIZES[size]
    d, dd, L, Ld = s.embed_dim, s.decoder_embed_dim, s.depth, args.decoder_depth
    t, h = args.frames // 2, args.img_size // args.patch
    N = t * h * h
    n_vis = round(N * ratio_visible)
    n_mask = N - n_vis
    P = 2 * args.patch * args.patch * 3

    def blocks(n, dim, depth, mlp):
        linear = 2 * n * (4 * dim * dim + 2 * dim * int(dim * mlp))  # qkv, proj, fc1, fc2
        attn = 2 * 2 * n * n * dim  # q k^T and attn v
        return depth * (linear + attn)

    embed = 2 * N * P * d  # Conv3d over every cube (masked cubes are dropped after it)
    fwd = (blocks(n_vis, d, L, s.mlp_ratio) + 2 * n_vis * d * dd + blocks(N, dd, Ld, s.mlp_ratio)
           + 2 * n_mask * dd * P)
    return args.batch * (3 * fwd + 2 * embed)


def counted_train_flops(run_forward_backward) -> int | None:
    """FLOPs of one forward + backward as seen by ``FlopCounterMode`` (a cross-check)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    counter = FlopCounterMode(display=False)
    with counter:
        run_forward_backward()
    return counter.get_total_flops()


# ----------------------------------------------------------------------------- timing

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="base", choices=sorted(SIZES),
                   help="ViT size: ours is mae_vit_<size>_patch<patch>, HF gets the same dims")
    p.add_argument("--batch", type=int, default=None, help="clips per step (default: cpu 2, cuda 16)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (cpu 3, cuda 20)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per model (cpu 1, cuda 5)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--decoder-depth", type=int, default=4)
    p.add_argument("--mask-ratio", type=float, default=0.9)
    p.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True) for both (CUDA)")
    p.add_argument("--no-check", action="store_true", help="skip the same-weights loss check")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice); 1 + CPU time is the most "
                        "robust A/B on a shared, loaded machine")
    p.add_argument("--only", choices=["ours", "hf"], help="time one model only (e.g. to profile)")
    p.add_argument("--decoder-mask-ratio", type=float, default=0.5,
                   help="also time ours with VideoMAE V2's running-cell decoder mask at this ratio "
                        "(same batch and encoder mask; 0: off)")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = device.type == "cpu"
    args.batch = args.batch or (2 if cpu else 16)
    args.steps = args.steps or (3 if cpu else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if cpu else 5)

    try:
        import transformers
    except ImportError:
        transformers = None
        if args.only != "ours":
            print("transformers is not installed: timing ours only (pip install mgmae[hf])")
            args.only = "ours"

    torch.manual_seed(0)
    names = [n for n in ("ours", "hf") if args.only in (None, n)]
    models = {}
    if "ours" in names:
        models["ours"] = build_ours(args.model, args).to(device).train()
    if "hf" in names:
        models["hf"] = build_hf(args.model, args).to(device).train()
        if "ours" in models:
            missing, unexpected = models["hf"].load_state_dict(
                ours_to_hf_state(models["ours"].state_dict()), strict=False)
            assert not unexpected and not [m for m in missing if "position" not in m], (missing, unexpected)

    # one batch and one mask, shared by both models
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(args.batch, 3, args.frames, args.img_size, args.img_size, generator=g)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    clip = ((pixels - mean) / std).to(device)  # [B, C, T, H, W]
    clip_hf = clip.permute(0, 2, 1, 3, 4).contiguous()  # [B, T, C, H, W] (HF layout)
    masker = build_masker("tube", input_size=(args.frames, args.img_size, args.img_size),
                          patch_size=args.patch, tubelet_size=2, mask_ratio=args.mask_ratio, seed=0)
    mask = masker(batch_size=args.batch).to(device)  # [B, N], True = hidden
    visible = float((~mask[0]).float().mean())
    if "ours" in names and args.decoder_mask_ratio > 0:
        from mgmae.masking.running_cell import running_cell_mask

        grid = models["ours"].grid
        decode_mask = running_cell_mask(grid, args.batch, args.decoder_mask_ratio,
                                        torch.Generator().manual_seed(0)).to(device)
        names.insert(names.index("ours") + 1, "ours+run_cell")

    opt_kw = dict(lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    if args.fused_adamw:
        opt_kw["fused"] = True
    opts = {n: torch.optim.AdamW(m.parameters(), **opt_kw) for n, m in models.items()}
    if "ours+run_cell" in names:
        opts["ours+run_cell"] = opts["ours"]  # the same model, fewer decoded cubes
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def loss_of(name):
        if name == "ours":
            return models["ours"](clip, mask).loss
        if name == "ours+run_cell":
            return models["ours"](clip, mask, decode_mask).loss
        return models["hf"](pixel_values=clip_hf, bool_masked_pos=mask).loss

    def step(name, optimizer_step=True):
        opt = opts[name]
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of(name)
        loss.backward()
        if optimizer_step:
            opt.step()
        return loss

    # ---------------------------------------------------------------- header
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(f"device: {device} ({dev_name}); torch {torch.__version__}; "
          f"transformers {getattr(transformers, '__version__', 'n/a')}; python {platform.python_version()}; "
          f"threads {torch.get_num_threads()}")
    print(f"model: {args.model} ViT, patch {args.patch}, clip {args.frames}x{args.img_size}x{args.img_size}, "
          f"batch {args.batch}, tube mask ratio {args.mask_ratio} ({int((~mask[0]).sum())} of "
          f"{mask.shape[1]} cubes visible), decoder depth {args.decoder_depth}, norm-pix loss, "
          f"dtype {args.dtype}, AdamW{' fused' if args.fused_adamw else ''}")
    for n, m in models.items():
        print(f"  {n}: {param_count(m) / 1e6:.2f}M parameters")

    if len(models) == 2 and not args.no_check:
        with torch.no_grad(), autocast:
            la, lb = loss_of("ours").item(), loss_of("hf").item()
        tol = 1e-3 if args.dtype == "fp32" else 3e-2
        ok = math.isclose(la, lb, rel_tol=tol)
        print(f"same weights, same batch -> loss ours {la:.6f} vs hf {lb:.6f} "
              f"({'equal' if ok else 'DIFFERENT'} within rel {tol})")

    # ---------------------------------------------------------------- timing (alternating)
    times = {n: [] for n in names}
    cpu_times = {n: [] for n in names}  # process CPU time: less sensitive to a shared, loaded CPU
    for n in names:
        for _ in range(args.warmup):
            step(n)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    peak_mem = {}
    for rep in range(args.steps):
        order = names if rep % 2 == 0 else names[::-1]
        for n in order:
            if device.type == "cuda" and rep == 0:
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step(n)
            sync(device)
            times[n].append(time.perf_counter() - t0)
            cpu_times[n].append(time.process_time() - c0)
            if device.type == "cuda" and rep == 0:
                peak_mem[n] = torch.cuda.max_memory_allocated(device) / 2**30

    flops = analytic_train_flops(args.model, args, visible)
    counted = counted_train_flops(lambda: step(names[0], optimizer_step=False))
    peak = peak_tflops(dev_name, args.dtype) if device.type == "cuda" else None

    print(f"\nstep = forward + backward + AdamW step; {args.warmup} warm-up + {args.steps} timed "
          f"steps per model, alternating; median [min, max]")
    print(f"model FLOPs per step: {flops / 1e9:.1f} GFLOP analytic = {flops / args.batch / 1e9:.1f} "
          f"GFLOP per clip"
          + (f"; FlopCounterMode ({names[0]}): {counted / 1e9:.1f} GFLOP" if counted else "")
          + (" (it does not count the CPU SDPA kernel)" if cpu and counted else ""))
    med = {}
    for n in names:
        ts = times[n]
        med[n] = statistics.median(ts)
        clips = args.batch / med[n]
        line = (f"  {n:4s}: {med[n] * 1e3:9.1f} ms/step [{min(ts) * 1e3:.1f}, {max(ts) * 1e3:.1f}]  "
                f"{clips:8.2f} clips/s  {clips * args.frames:9.1f} frames/s  ")
        if n == "ours+run_cell":  # fewer FLOPs than the full-decoder count: no TFLOP/s or MFU
            line += "   (decoder: half the cubes)"
        else:
            line += f"{flops / med[n] / 1e12:7.2f} TFLOP/s"
        if peak and n != "ours+run_cell":
            line += f"  MFU {100 * flops / med[n] / (peak * 1e12):5.1f}% of {peak:g}"
        if n in peak_mem:
            line += f"  peak mem {peak_mem[n]:.2f} GiB"
        if cpu:
            line += f"  CPU time {statistics.median(cpu_times[n]):.2f} s/step"
        print(line)
    if "ours+run_cell" in med:
        print(f"ratio ours with run-cell decoder masking {args.decoder_mask_ratio} / full decoder "
              f"(time per step): {med['ours+run_cell'] / med['ours']:.3f}"
              + (f"; CPU time {statistics.median(cpu_times['ours+run_cell']) / statistics.median(cpu_times['ours']):.3f}"
                 if cpu else ""))
    if "ours" in med and "hf" in med:
        print(f"ratio ours/hf (time per step): {med['ours'] / med['hf']:.3f} "
              f"({'ours faster' if med['ours'] < med['hf'] else 'hf faster'})")
        if cpu:
            print(f"ratio ours/hf (CPU time per step): "
                  f"{statistics.median(cpu_times['ours']) / statistics.median(cpu_times['hf']):.3f}")
    if device.type == "cuda" and not peak:
        print(f"MFU: peak FLOP/s of {dev_name!r} unknown (add it to PEAK_TFLOPS)")
    elif peak:
        print(f"MFU assumes a dense {args.dtype} peak of {peak:g} TFLOP/s for {dev_name!r}")
    print("command: python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])))
    return 0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or "cpu"


if __name__ == "__main__":
    raise SystemExit(main())
