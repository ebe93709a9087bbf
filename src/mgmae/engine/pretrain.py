"""The pre-training engine: one loop, one function (``pretrain(cfg)``)."""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mgmae.config import Config
from mgmae.data import build_loader, build_pretrain_dataset
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.optim import build_optimizer, lr_at, set_lr
from mgmae.masking import build_masker
from mgmae.models import create_model
from mgmae.models.mae import denormalize


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use train.device=cpu")
    return dev


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that support it (``auto``), fp32 (None) on CPU."""
    if amp == "none" or device.type != "cuda":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def build_model(cfg: Config) -> torch.nn.Module:
    m = cfg.model
    return create_model(m.name, num_frames=cfg.data.num_frames, img_size=cfg.data.img_size,
                        tubelet_size=m.tubelet_size, decoder_depth=m.decoder_depth,
                        decoder_embed_dim=m.decoder_embed_dim, decoder_num_heads=m.decoder_num_heads,
                        norm_pix_loss=m.norm_pix_loss, drop_path_rate=m.drop_path,
                        grad_checkpointing=m.grad_checkpointing)


def masker_from_config(cfg: Config, patch_size: int, seed: int | None = None):
    k = cfg.masking
    common = dict(input_size=(cfg.data.num_frames, cfg.data.img_size, cfg.data.img_size),
                  patch_size=patch_size, tubelet_size=cfg.model.tubelet_size,
                  mask_ratio=k.mask_ratio, seed=seed)
    if k.name != "motion_guided":
        return build_masker(k.name, **common)
    f = cfg.flow
    flow = None if f.name == "gt" else f.name
    flow_options = {"size": f.size}
    if f.name == "dis":
        flow_options["preset"] = f.preset
    elif f.name.startswith("raft"):
        flow_options.update(weights=f.weights, iters=f.iters)
    return build_masker("motion_guided", **common, flow=flow, flow_options=flow_options,
                        base_frame=k.base_frame, init_map=k.init_map, warp=k.warp,
                        hole_filling=k.hole_filling, topk_on_all=k.topk_on_all,
                        exposure_chance=k.exposure_chance, official_compat=k.official_compat)


def run_directory(cfg: Config) -> Path:
    name = cfg.train.run_name or (
        f"{cfg.model.name}-{cfg.masking.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    path = Path(cfg.train.output_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_resume(run_dir: Path, resume: str | None) -> Path | None:
    """``auto``: the newest checkpoint in ``run_dir`` that loads (corrupt ones skipped, with a note)."""
    if resume is None:
        return None
    if resume != "auto":
        return Path(resume)
    for p in sorted(run_dir.glob("checkpoint-*.pth"), key=lambda p: p.stat().st_mtime, reverse=True):
        if ckpt.is_valid_checkpoint(p):
            return p
        print(f"[mgmae] skipping unreadable checkpoint {p}")
    return None


def pretrain(cfg: Config) -> Path:
    """Pre-train the MAE described by ``cfg``; returns the run directory."""
    t_start = time.time()
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    run_dir = run_directory(cfg)
    cfg.save(run_dir / "config.yaml")

    model = build_model(cfg).to(device)
    patch = model.patch_size
    masker = masker_from_config(cfg, patch)
    in_loader = cfg.masking.where == "loader"
    dataset, class_names = build_pretrain_dataset(cfg, masker if in_loader else None)
    if class_names:
        (run_dir / "classes.json").write_text(json.dumps(list(class_names), indent=1))
    loader = build_loader(dataset, cfg.train.batch_size, num_workers=cfg.train.num_workers,
                          seed=cfg.train.seed, shuffle=True, drop_last=True,
                          pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(f"the dataset has {len(dataset)} videos, fewer than train.batch_size="
                         f"{cfg.train.batch_size}; lower the batch size")

    t = cfg.train
    accum = t.accum_steps
    steps_per_epoch = len(loader) // accum
    total_steps = t.max_steps or t.epochs * steps_per_epoch
    eff_videos = t.batch_size * accum
    lr = t.lr if t.lr is not None else t.blr * eff_videos / 256
    warmup_steps = int(t.warmup_epochs * steps_per_epoch)
    optimizer = build_optimizer(model, lr, t.weight_decay, t.betas)
    dtype = autocast_dtype(t.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    fwd = torch.compile(model) if t.compile else model

    start_step, epoch0 = 0, 0
    resume = find_resume(run_dir, t.resume)
    if resume is not None:
        state = ckpt.load_checkpoint(resume, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        start_step, epoch0 = state["step"], state["epoch"]
        print(f"[mgmae] resumed from {resume} at step {start_step}")

    n_params = sum(p.numel() for p in model.parameters())
    print(f"[mgmae] run dir: {run_dir}")
    print(f"[mgmae] model {cfg.model.name}: {n_params / 1e6:.2f}M params, {model.num_patches} cubes "
          f"per clip; masker {masker!r} ({'in loader workers' if in_loader else 'in the training step'})")
    print(f"[mgmae] data: {len(dataset)} videos x {cfg.data.num_sample} views; {steps_per_epoch} steps/epoch, "
          f"{total_steps} steps; device {device}, autocast {dtype or 'fp32'}")
    print(f"[mgmae] lr {lr:.3g} (= blr {t.blr:g} x {eff_videos} videos / 256)" if t.lr is None
          else f"[mgmae] lr {lr:.3g} (set directly)")

    log_path = run_dir / "log.jsonl"
    log_file = log_path.open("a")
    losses: list[float] = []
    step = start_step
    epoch = epoch0
    bar = tqdm(total=total_steps, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True)
    model.train()
    done = step >= total_steps
    while not done:
        if hasattr(loader.generator, "manual_seed"):  # data order is a function of (seed, epoch)
            loader.generator.manual_seed(t.seed * 100003 + epoch)
        t_data = time.time()
        micro, loss_acc, clips = 0, 0.0, 0
        for batch in loader:
            video = batch["video"].to(device, non_blocking=True)  # [B, C, T, H, W]
            mask = batch["mask"] if in_loader else masker(video)  # [B, N]
            mask = mask.to(device, non_blocking=True).flatten(1)
            t_compute = time.time()
            with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
                out = fwd(video, mask)
            loss = out.loss
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
            loss_b = loss / accum
            (scaler.scale(loss_b) if scaler else loss_b).backward()
            micro += 1
            loss_acc += loss.item() / accum
            clips += video.shape[0]
            if micro < accum:
                continue
            cur_lr = lr_at(step, total_steps, warmup_steps, lr, t.min_lr, t.warmup_lr)
            set_lr(optimizer, cur_lr)
            if scaler:
                scaler.unscale_(optimizer)
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad or float("inf"))
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            now = time.time()
            step += 1
            losses.append(loss_acc)
            rec = {"step": step, "epoch": epoch, "loss": round(loss_acc, 6), "lr": cur_lr,
                   "grad_norm": round(float(gnorm), 4), "clips_per_s": round(clips / (now - t_data), 2),
                   "data_s": round(t_compute - t_data, 4), "step_s": round(now - t_data, 4)}
            if step % t.log_every == 0 or step == total_steps:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            bar.set_postfix(loss=f"{loss_acc:.4f}", lr=f"{cur_lr:.2e}", clips_s=rec["clips_per_s"])
            bar.update(1)
            micro, loss_acc, clips = 0, 0.0, 0
            t_data = time.time()
            if step >= total_steps:
                done = True
                break
        epoch += 1
        if t.save_every_epochs and epoch % t.save_every_epochs == 0 and not done:
            ckpt.save_checkpoint(run_dir / f"checkpoint-{epoch:04d}.pth", model=model,
                                 config=cfg.to_dict(), kind="pretrain", optimizer=optimizer,
                                 scaler=scaler, epoch=epoch, step=step)
    bar.close()
    log_file.close()

    final = ckpt.save_checkpoint(run_dir / "checkpoint-final.pth", model=model, config=cfg.to_dict(),
                                 kind="pretrain", optimizer=optimizer, scaler=scaler, epoch=epoch,
                                 step=step)
    summary = summarize(losses, time.time() - t_start)
    with log_path.open("a") as f:
        f.write(json.dumps({"summary": summary}) + "\n")
    print(f"[mgmae] {summary['message']}")
    artefacts = write_pictures(cfg, model, dataset, masker, run_dir, device, in_loader)
    print(f"[mgmae] wrote:\n  config      {run_dir / 'config.yaml'}\n  log         {log_path}\n"
          f"  checkpoint  {final}\n" + "".join(f"  {k:<11} {v}\n" for k, v in artefacts.items()))
    return run_dir


def summarize(losses: list[float], seconds: float) -> dict:
    if not losses:
        return {"message": "no steps were run", "seconds": seconds}
    n = max(1, min(10, len(losses) // 10))
    first, last = sum(losses[:n]) / n, sum(losses[-n:]) / n
    ratio = last / first if first else float("nan")
    verdict = ("went clearly down" if ratio < 0.7 else "went down" if ratio < 0.95 else "did NOT go down")
    msg = (f"loss {verdict}: {first:.4f} (mean of first {n} steps) -> {last:.4f} (mean of last {n}), "
           f"ratio {ratio:.3f}; {len(losses)} steps in {seconds / 60:.1f} min")
    return {"message": msg, "loss_start": first, "loss_end": last, "ratio": ratio,
            "steps": len(losses), "seconds": round(seconds, 1)}


@torch.no_grad()
def write_pictures(cfg: Config, model, dataset, masker, run_dir: Path, device, in_loader: bool) -> dict:
    """Input / visible cubes / reconstruction for a few clips (PNG grid + GIF) and the loss curve."""
    from mgmae.viz import plot_loss_curve, save_reconstructions

    out = {}
    plot_loss_curve(run_dir / "log.jsonl", run_dir / "loss.png")
    out["loss curve"] = run_dir / "loss.png"
    n = min(cfg.train.vis_clips, len(dataset))
    if n == 0:
        return out
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(cfg.train.seed)
    idx = torch.randperm(len(dataset), generator=g)[:n].tolist()
    state = torch.get_rng_state()
    torch.manual_seed(cfg.train.seed)
    items = [dataset[i] for i in idx]
    torch.set_rng_state(state)
    video = torch.stack([it["video"][0] for it in items]).to(device)  # [n, C, T, H, W]
    mask = (torch.stack([it["mask"][0] for it in items]) if in_loader else masker(video.cpu())).to(device)
    res = model(video, mask)
    recon = model.reconstruct(video, mask, res)  # [n, C, T, H, W] in [0, 1]
    save_reconstructions(denormalize(video).clamp(0, 1), mask, recon, model.grid, model.patch_size,
                         model.tubelet_size, run_dir / "reconstruction.png", run_dir / "reconstruction.gif")
    out["pictures"] = run_dir / "reconstruction.png"
    out["animation"] = run_dir / "reconstruction.gif"
    model.train(was_training)
    return out
