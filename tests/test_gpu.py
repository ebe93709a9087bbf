"""GPU-only tests (``pytest -m gpu``; bench/gpu_check.py section (d) runs them): autocast numerics,
RAFT on the device, the same masks on the CPU and the GPU for the same flow, no host
synchronisation in the masker's step path, and a one-process NCCL DDP pre-training run. Every test
here is marked ``gpu`` and skipped without CUDA."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings

import pytest
import torch

from mgmae.flow import build_flow
from mgmae.masking import build_masker

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")


def _raft(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_flow("raft_small", weights="random", **kw)


def _pair(n=4, size=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(n, 3, size, size, generator=g)
    shifted = torch.roll(src, shifts=(2, 3), dims=(2, 3))  # some real motion
    return src, shifted


def _smooth_flows(B=3, P=7, size=96, seed=7, scale=12.0):
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(B * P, 2, 4, 4, generator=g) * scale
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear").reshape(B, P, 2, size, size)


def test_autocast_numerics_of_the_mae_loss():
    from mgmae.models import create_model

    torch.manual_seed(0)
    model = create_model("mae_vit_small_patch16", num_frames=8, img_size=96, decoder_depth=2).to(CUDA)
    clip = torch.randn(4, 3, 8, 96, 96, device=CUDA)
    mask = build_masker("tube", input_size=(8, 96, 96), mask_ratio=0.9, seed=0)(batch_size=4).to(CUDA)
    with torch.no_grad():
        fp32 = model(clip, mask).loss.float().item()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(clip, mask).loss.float().item()
        with torch.autocast("cuda", dtype=torch.float16):
            fp16 = model(clip, mask).loss.float().item()
    assert abs(bf16 - fp32) < 3e-2 * abs(fp32) and abs(fp16 - fp32) < 1e-2 * abs(fp32), (fp32, bf16, fp16)


def test_raft_on_the_device_matches_the_cpu_and_is_float32():
    src, dst = _pair()
    cpu = _raft(iters=3)
    gpu = _raft(iters=3, batch_size=3, amp="none")
    gpu.fn.model.load_state_dict(cpu.fn.model.state_dict())
    a = cpu(src, dst)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        b = gpu(src.to(CUDA), dst.to(CUDA))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert b.device.type == "cuda" and b.dtype == torch.float32 and b.shape == a.shape
    err = (a - b.cpu()).abs().mean()
    assert err <= 1e-3 * a.abs().mean() + 1e-4, (err, a.abs().mean())


def test_raft_autocast_on_the_device():
    src, dst = (x.to(CUDA) for x in _pair())
    fp32 = _raft(iters=3, amp="none")
    auto = _raft(iters=3, amp="auto")
    fp16 = _raft(iters=3, amp="fp16")
    for e in (auto, fp16):
        e.fn.model.load_state_dict(fp32.fn.model.state_dict())
    expect = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert auto.fn.amp_dtype(CUDA) is expect
    a = fp32(src, dst)
    for est in (auto, fp16):
        b = est(src, dst)
        assert b.dtype == torch.float32 and torch.isfinite(b).all()
        assert (a - b).abs().mean() < 0.1 * a.abs().mean() + 1e-3


@pytest.mark.parametrize("opt", [dict(init_map="mix_gauss"), dict(init_map="token_rand"),
                                 dict(init_map="mix_gauss", exposure_chance=0.7),
                                 dict(init_map="mix_gauss", topk_on_all=True, warp="forward")])
def test_the_same_masks_on_cpu_and_gpu_for_the_same_flow(opt):
    m = build_masker("motion_guided", input_size=(8, 96, 96), mask_ratio=0.75, flow="zero", **opt)
    # zero flow: the maps are exact on both devices and top-k has no ties at its edge: identical
    flows = torch.zeros(3, 7, 2, 96, 96)
    a = m.masks_from_flows(flows, 4, torch.Generator().manual_seed(1))
    b = m.masks_from_flows(flows.to(CUDA), 4, torch.Generator().manual_seed(1))
    assert b.device.type == "cuda" and torch.equal(a, b.cpu())
    # whole-pixel and smooth sub-pixel flows: the devices may round sums and bilinear weights in
    # different last bits; a cube whose score ties within that noise may flip, nothing more
    for flows in (torch.full((3, 7, 2, 96, 96), 3.0), _smooth_flows()):
        a = m.masks_from_flows(flows, 4, torch.Generator().manual_seed(1))
        b = m.masks_from_flows(flows.to(CUDA), 4, torch.Generator().manual_seed(1)).cpu()
        assert (a == b).float().mean() >= 0.99, (a != b).sum()
        assert torch.equal((~a).sum(1), (~b).sum(1))


def test_the_masker_step_path_does_not_synchronise_with_the_host():
    m = build_masker("motion_guided", input_size=(8, 96, 96), mask_ratio=0.9, flow="zero",
                     exposure_chance=0.5, seed=0)
    clip = torch.randn(2, 3, 8, 96, 96, device=CUDA)
    flows = _smooth_flows(B=2).to(CUDA)
    m(clip), m.masks_from_flows(flows, 4)  # warm-up: the bump profiles are copied once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mask = m.masks_from_flows(flows, 4)
        mask2 = m(clip)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert mask.device.type == mask2.device.type == "cuda"


def test_raft_masker_on_the_device_does_not_synchronise_with_the_host():
    m = build_masker("motion_guided", input_size=(4, 128, 128), mask_ratio=0.9, flow="raft_small",
                     flow_options=dict(weights="random", iters=2, batch_size=4, amp="auto"), seed=0)
    clip = torch.randn(2, 3, 4, 128, 128, device=CUDA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m(clip)  # warm-up: builds RAFT, moves it to the device
    torch.cuda.synchronize()
    # torchvision's RAFT itself copies two coordinate grids per call from the CPU with blocking
    # copies (raft.py: make_coords_grid(...).to(device); the correlation lookup's per-iteration
    # offsets are made on the device by RAFTFlow's torch.device context): those are allowed
    # here; nothing in mgmae may synchronise
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            mask = m(clip)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in rec if "synchroniz" in str(w.message)]
    ours = [f"{w.filename}:{w.lineno}" for w in syncs if "torchvision" not in w.filename]
    assert not ours, ours
    assert mask.device.type == "cuda" and mask.shape == (2, m.num_tokens)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_nccl_ddp_pretrain_step_with_raft_in_the_step(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
           "--master_port", str(_free_port()), "-m", "mgmae", "pretrain",
           "data.synthetic_videos=8", "data.num_frames=4", "data.img_size=64", "train.batch_size=2",
           "train.max_steps=2", "train.num_workers=0", "train.tensorboard=false", "train.vis_clips=1",
           "train.baseline_clips=2", "masking.mask_ratio=0.75", "masking.where=step",
           "flow.name=raft_small", "flow.weights=random", "flow.iters=2", "train.device=cuda",
           f"train.output_dir={tmp_path}", "train.run_name=ddp"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "RANDOM WEIGHTS" in out and "on cuda" in out
    assert (tmp_path / "ddp" / "checkpoint-final.pth").is_file()
