"""The pre-training engine: one loop, one function (``pretrain(cfg)``).

Single process, ``torchrun`` (DDP; gloo on CPU, NCCL on GPUs) and gradient accumulation share the
same loop. Data order and every sample's augmentation and mask are pure functions of
``(seed, epoch, index)``, so a run resumed from a checkpoint (``train.resume=auto``) continues
exactly, and N ranks x batch b reproduce 1 rank x batch N*b.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mgmae.config import Config
from mgmae.data import build_loader, build_pretrain_dataset
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.distributed import DistInfo, ResumableSampler
from mgmae.engine.loop import (Position, Signals, StepLog, Stepper, autocast_dtype,
                               check_any_video_exists, check_resumable, data_report, encoder_check,
                               finished_run, load_resume, run_directory,
                               run_distributed, set_cpu_threads, summarize, train_epoch,
                               truncate_log)
from mgmae.engine.optim import build_optimizer, lr_at, weight_decay_schedule
from mgmae.masking import build_masker
from mgmae.masking.running_cell import running_cell_patterns, running_cell_starts
from mgmae.models import create_model
from mgmae.models.build import init_pretrain_model
from mgmae.viz import draw_reconstructions, plot_loss_curve

def build_model(cfg: Config) -> torch.nn.Module:
    m = cfg.model
    return create_model(m.name, num_frames=cfg.data.num_frames, img_size=cfg.data.img_size,
                        tubelet_size=m.tubelet_size, decoder_depth=m.decoder_depth,
                        decoder_embed_dim=m.decoder_embed_dim, decoder_num_heads=m.decoder_num_heads,
                        norm_pix_loss=m.norm_pix_loss, drop_path_rate=m.drop_path,
                        grad_checkpointing=m.grad_checkpointing, pos_embed=m.pos_embed)


def masker_from_config(cfg: Config, patch_size: int, seed: int | None = None):
    k = cfg.masking
    common = dict(input_size=(cfg.data.num_frames, cfg.data.img_size, cfg.data.img_size),
                  patch_size=patch_size, tubelet_size=cfg.model.tubelet_size,
                  mask_ratio=k.mask_ratio, seed=seed)
    if k.name != "motion_guided":
        return build_masker(k.name, **common)
    f = cfg.flow
    flow = None if f.name == "gt" else f.name
    if f.name == "codec":  # flows come with the decoded clips; pixels only for the fallback
        flow = f.fallback
    stride = k.map_stride
    # blocky flow: a 4-px map tracks as well (bench/codec_flow.py); official_compat: 1
    if stride is None and f.name == "codec" and not k.official_compat:
        stride = max(1, patch_size // 4)
    flow_options = {"size": f.size}
    if flow == "dis":
        flow_options["preset"] = f.preset
    elif f.name.startswith("raft"):
        flow_options.update(weights=f.weights, iters=f.iters, batch_size=f.batch_size, amp=f.amp)
    return build_masker("motion_guided", **common, flow=flow, flow_options=flow_options,
                        base_frame=k.base_frame, init_map=k.init_map, warp=k.warp,
                        hole_filling=k.hole_filling, topk_on_all=k.topk_on_all,
                        exposure_chance=k.exposure_chance, official_compat=k.official_compat,
                        map_stride=stride, visible_count=k.visible_count, exposure=k.exposure,
                        gauss_sigma=k.gauss_sigma, direction=k.direction)


def pretrain(cfg: Config, *, stop_at_step: int | None = None, progress: bool = True,
             quiet: bool = False) -> Path:
    """Pre-train the MAE described by ``cfg``; returns the run directory.

    ``stop_at_step`` behaves like a preemption signal arriving at that step (tests use it).
    ``progress``: the progress bar; ``quiet``: no description of the run at its start and no
    epoch lines (the summary at the end, warnings and errors stay)."""
    return run_distributed(cfg.train.device, lambda info, device, created: _pretrain(
        cfg, info, device, stop_at_step, created, progress, quiet))


def _pretrain(cfg: Config, info: DistInfo, device: torch.device, stop_at_step: int | None,
              created: list[Path], progress: bool = True, quiet: bool = False) -> Path:
    t_start = time.time()
    t = cfg.train
    main = info.is_main
    set_cpu_threads(device, t.num_workers, info)
    torch.manual_seed(t.seed)  # identical initial weights on every rank
    run_dir = run_directory(cfg, info, created=created)
    # what to resume from, checked before anything in the run dir is written
    resume, state = load_resume(run_dir, t.resume, map_location=device)
    if state is not None:
        check_resumable(state, cfg, resume, "pretrain")

    model = build_model(cfg)
    if t.init_from and state is None:  # a resume point wins: a requeued run continues, not restarts
        line = init_pretrain_model(model, t.init_from, cfg)
        if main:
            print(f"[mgmae] {line}")
    elif t.init_from and main:
        print(f"[mgmae] train.init_from not used: resuming from {resume}")
    model = model.to(device)
    patch = model.patch_size
    masker = masker_from_config(cfg, patch)
    in_loader = cfg.masking.where == "loader"
    dataset, class_names = build_pretrain_dataset(cfg, masker if in_loader else None)

    decode_patterns = None  # VideoMAE V2's running-cell decoder mask (checked before any step)
    if cfg.masking.decoder_mask == "run_cell":
        decode_patterns = running_cell_patterns(model.grid, cfg.masking.decoder_mask_ratio).to(device)
    accum = t.accum_steps
    sampler = ResumableSampler(len(dataset), rank=info.rank, world_size=info.world_size, seed=t.seed,
                               batch_size=t.batch_size, multiple=t.batch_size * accum)
    steps_per_epoch = sampler.per_rank // (t.batch_size * accum)
    if steps_per_epoch == 0:
        check_any_video_exists(dataset)
        raise ValueError(f"the dataset has {len(dataset)} videos, fewer than one optimizer step needs "
                         f"(train.batch_size={t.batch_size} x accum_steps={accum} x {info.world_size} "
                         f"ranks); lower the batch size")
    loader = build_loader(dataset, t.batch_size, num_workers=t.num_workers, seed=t.seed, sampler=sampler,
                          pin_memory=device.type == "cuda")
    total_steps = t.max_steps or t.epochs * steps_per_epoch
    if state is not None and finished_run(state, cfg, resume, total_steps, main):
        return run_dir
    if main:
        cfg.save(run_dir / "config.yaml")
        if class_names:
            (run_dir / "classes.json").write_text(json.dumps(list(class_names), indent=1))
    eff_videos = t.batch_size * accum * info.world_size
    lr = t.lr if t.lr is not None else t.blr * eff_videos / 256
    warmup_steps = int(t.warmup_epochs * steps_per_epoch)
    fsdp = t.fsdp and info.enabled
    if fsdp:  # shard parameters, gradients and optimizer state block by block (ViT-L/H/g)
        from torch.distributed.fsdp import fully_shard  # FSDP runs only

        for blk in [*model.encoder.blocks, *model.decoder.blocks]:
            fully_shard(blk)
        fully_shard(model)
    optimizer = build_optimizer(model, lr, t.weight_decay, t.betas)
    dtype = autocast_dtype(t.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if device.type == "cuda":  # TF32 matmuls when autocast is off (no effect under bf16)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ddp = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
           if info.enabled and not fsdp else model)
    saver = ckpt.CheckpointSaver(run_dir, model, cfg, "pretrain", optimizer=optimizer, scaler=scaler,
                                 fsdp=fsdp, main=main)
    fwd = torch.compile(ddp) if t.compile else ddp

    step, epoch, skip = 0, 0, 0
    if state is not None:
        saver.restore(state, resume)
        ckpt.set_rng_state(state["rng"])
        step, epoch = state["step"], state["epoch"]
        skip = state["extra"].get("steps_in_epoch", 0) * accum  # micro-batches already consumed
        if main:
            truncate_log(run_dir / "log.jsonl", step, resume)
            print(f"[mgmae] resumed from {resume} at step {step} (epoch {epoch})")
        del state
    start_step = step  # the ETA extrapolates from the steps this process has run

    if main and not quiet:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"[mgmae] run dir: {run_dir}")
        print(f"[mgmae] model {cfg.model.name}: {n_params / 1e6:.2f}M params, {model.num_patches} cubes "
              f"per clip; masker {masker!r} ({'in loader workers' if in_loader else 'in the training step'})")
        print(f"[mgmae] data: {len(dataset)} videos x {cfg.data.num_sample} views; {steps_per_epoch} "
              f"steps/epoch, {total_steps} steps; {info.world_size} process(es) on {device}, "
              f"autocast {dtype or 'fp32'}")
        print(f"[mgmae] global batch {eff_videos} videos (= {t.batch_size} x {accum} accum x "
              f"{info.world_size} ranks) x {cfg.data.num_sample} views; " +
              (f"lr {lr:.3g} (= blr {t.blr:g} x {eff_videos} / 256)" if t.lr is None else f"lr {lr:.3g} (set)"))

    log = StepLog(run_dir, main=main, prefix="pretrain", total_steps=total_steps, initial=step,
                  log_every=t.log_every, tensorboard=t.tensorboard, progress=progress,
                  wandb=t.wandb, config=cfg.to_dict())
    stepper = Stepper(model, ddp, optimizer, accum=accum, dtype=dtype, scaler=scaler, clip_grad=t.clip_grad,
                      max_bad_steps=t.max_bad_steps, info=info, device=device, log=log, fsdp=fsdp)

    def batch_loss(batch):
        video = batch["video"].to(device, non_blocking=True)  # [B, C, T, H, W]
        mask = batch["mask"] if in_loader else masker(video)  # [B, N]
        mask = mask.to(device, non_blocking=True).flatten(1)
        args = (video, mask)
        if decode_patterns is not None:  # [B, N]
            args += (decode_patterns[running_cell_starts(batch["index"], cfg.data.num_sample,
                                                         pos.epoch, t.seed).to(device)],)
        return (lambda: fwd(*args).loss), video.shape[0]

    pos = Position(step, epoch)
    losses: list[float] = []
    model.train()
    with Signals() as signals:
        while pos.step < total_steps:
            sampler.set_epoch(pos.epoch, start_batch=skip)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(pos.epoch)
            pos.steps_in_epoch = skip // accum
            skip = 0
            epoch_losses = train_epoch(
                loader, dataset, batch_loss, pos=pos, total_steps=total_steps, stepper=stepper,
                lr_at_step=lambda k: lr_at(k, total_steps, warmup_steps, lr, t.min_lr, t.warmup_lr),
                wd_at_step=weight_decay_schedule(total_steps, t.weight_decay, t.weight_decay_end),
                log=log, signals=signals, saver=saver, info=info, device=device,
                stop_at_step=stop_at_step, save_every_steps=t.save_every_steps)
            losses += epoch_losses
            pos.epoch += 1
            if pos.step < total_steps or epoch_losses:
                _end_of_epoch(saver, pos.epoch, pos.step, epoch_losses, dataset, t_start, total_steps,
                              pos.step >= total_steps, start_step, quiet)
    step, epoch = pos.step, pos.epoch
    log.close()
    final = saver.finish(epoch, step)  # finished: the final checkpoint is the resume point
    if not main:
        return run_dir
    summary = summarize(losses, time.time() - t_start)
    summary.update(data_report(dataset))
    if fsdp:  # checks and pictures from an unsharded copy (rank 0 alone cannot run a sharded model)
        model = build_model(cfg).to(device)
        model.load_state_dict(ckpt.load_checkpoint(final, map_location=device)["model"])
    # one sample of clips serves the check and the pictures (the pictures show its first clips)
    clips = _sample_batch(cfg, dataset, masker, device, in_loader, max(t.baseline_clips, t.vis_clips))
    check = _first(clips, t.baseline_clips)
    summary.update(baseline_check(model, check))
    if check is not None:
        summary.update(encoder_check(model.encoder, check[0][:8]))
    with log.path.open("a") as f:
        f.write(json.dumps({"summary": summary}) + "\n")
    print(f"[mgmae] {summary['message']}")
    for key in ("data_message", "baseline_message", "encoder_message"):
        if key in summary:
            print(f"[mgmae] {summary[key]}")
    artefacts = write_pictures(model, _first(clips, t.vis_clips), run_dir)
    print(f"[mgmae] wrote:\n  config      {run_dir / 'config.yaml'}\n  log         {log.path}\n"
          f"  checkpoint  {final}\n" + "".join(f"  {k:<11} {v}\n" for k, v in artefacts.items()))
    return run_dir


def eta_seconds(elapsed: float, start_step: int, step: int, total_steps: int) -> float:
    """Time left, from the pace of the steps this process ran (``start_step`` is where it began: a
    resumed run has not spent ``elapsed`` on the steps before it)."""
    return elapsed / max(step - start_step, 1) * max(total_steps - step, 0)


def _end_of_epoch(saver: ckpt.CheckpointSaver, epoch, step, epoch_losses, dataset, t_start,
                  total_steps, last, start_step: int = 0, quiet: bool = False) -> None:
    if not last:  # resume point at the epoch boundary, plus the kept epochs
        saver.end_of_epoch(epoch, step)
    if not saver.main or quiet:
        return
    elapsed = time.time() - t_start
    eta = eta_seconds(elapsed, start_step, step, total_steps)
    mean = sum(epoch_losses) / max(len(epoch_losses), 1)
    report = dataset.failure_report() if hasattr(dataset, "failure_report") else {}
    skipped = (f", {report['num_failed']} unreadable files skipped so far ({report['num_skipped']} samples "
               f"replaced)" if report.get("num_failed") else "")
    if report.get("num_short"):
        skipped += f", {report['num_short']} videos shorter than one clip (padded)"
    tqdm.write(f"[mgmae] epoch {epoch}: loss {mean:.4f}, step {step}/{total_steps}, "
               f"{elapsed / 60:.1f} min elapsed, ETA {eta / 60:.1f} min{skipped}")


def _sample_batch(cfg: Config, dataset, masker, device, in_loader: bool, n: int):
    """The first view of ``n`` clips drawn with the run's seed, and their masks."""
    n = min(n, len(dataset))
    if n == 0:
        return None
    g = torch.Generator().manual_seed(cfg.train.seed)
    idx = torch.randperm(len(dataset), generator=g)[:n].tolist()
    items = [dataset[i] for i in idx]
    video = torch.stack([it["video"][0] for it in items]).to(device)  # [n, C, T, H, W]
    mask = (torch.stack([it["mask"][0] for it in items]) if in_loader else masker(video)).to(device)  # step: on the device
    return video, mask


def _first(batch, n: int):
    """The first ``n`` clips of a ``(video, mask)`` sample (None when there are none)."""
    if batch is None or n <= 0:
        return None
    video, mask = batch
    return video[:n], mask[:n]


@torch.no_grad()
def baseline_check(model, batch, chunk: int = 16) -> dict:
    """The trained model's loss on ``batch`` next to the trivial predictor's
    (:meth:`PretrainVideoMAE.baseline_loss`): has it learned structure, or only colours?"""
    if batch is None:
        return {}
    video, mask = batch
    was_training = model.training
    model.eval()
    smoothing = not model.norm_pix_loss
    losses, bases, smooths = [], [], []
    for i in range(0, len(video), chunk):
        v, m = video[i:i + chunk], mask[i:i + chunk]
        losses.append(float(model(v, m).loss) * len(v))
        bases.append(float(model.baseline_loss(v, m)) * len(v))
        if smoothing:
            smooths.append(float(model.smoothing_loss(v, m)) * len(v))
    model.train(was_training)
    loss, base = sum(losses) / len(video), sum(bases) / len(video)
    ratio = loss / base if base > 0 else float("nan")
    trivial = "zeros (norm-pix target)" if model.norm_pix_loss else "each clip's mean visible colour"
    verdict = ("it has learned structure beyond that" if ratio < 0.8 else
               "it has learned a little beyond that" if ratio < 0.95 else
               "it has learned little beyond that: train longer (more steps) for useful features"
               if ratio < 1.0 else "it does not beat that yet: train longer (more steps)")
    msg = (f"on {len(video)} clips the model's loss is {loss:.4f} vs {base:.4f} for predicting {trivial} "
           f"(ratio {ratio:.3f}): {verdict}")
    out = {"check_clips": len(video), "check_loss": loss, "baseline_loss": base, "baseline_ratio": ratio}
    if smoothing:
        smooth = sum(smooths) / len(video)
        out["smoothing_loss"] = smooth
        out["smoothing_ratio"] = loss / smooth if smooth > 0 else float("nan")
        msg += (f"; spatial smoothing of the visible cubes' colours scores {smooth:.4f} (ratio "
                f"{out['smoothing_ratio']:.3f}: {'beaten' if loss < smooth else 'not beaten'})")
    out["baseline_message"] = msg
    return out


@torch.no_grad()
def write_pictures(model, batch, run_dir: Path) -> dict:
    """The loss curve, and input / visible cubes / reconstruction of the clips of ``batch``
    (``(video, mask)`` or None) as a PNG grid and a GIF."""
    out = {}
    plot_loss_curve(run_dir / "log.jsonl", run_dir / "loss.png")
    out["loss curve"] = run_dir / "loss.png"
    if batch is None:
        return out
    video, mask = batch
    draw_reconstructions(model, video, mask, run_dir / "reconstruction.png", run_dir / "reconstruction.gif")
    out["pictures"] = run_dir / "reconstruction.png"
    out["animation"] = run_dir / "reconstruction.gif"
    return out
