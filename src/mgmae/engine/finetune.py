"""The fine-tuning engine: ``finetune(cfg, pretrained)``, one loop, one function (like pre-training).

A pre-trained encoder (any checkpoint :func:`mgmae.convert.load_model` reads, or ``"scratch"``
for random initialisation) gets mean pooling + ``fc_norm`` + a linear head (weights scaled by
``finetune.head_init_scale``) and is trained with the VideoMAE / MGMAE recipe: AdamW
(betas 0.9/0.999), layer-wise lr decay, linear warm-up + cosine, drop path, label smoothing,
Mixup/CutMix with mixed labels, RandAugment + random erasing (real videos), repeated
augmentation (``data.num_sample`` clips per video), optional EMA and gradient clipping. After
every ``finetune.eval_every`` epochs the model is validated (one view per video) and the best one
is kept (``checkpoint-best.pth``); at the end the best model gets the multi-view test
(``test/``: metrics, predictions, confusion matrix).

Learning rate: ``lr = finetune.blr * videos per optimizer step / 256`` (videos, not clips: repeated
augmentation does not change it), as in the official VideoMAE V2 / MGMAE fine-tuning script.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn

from mgmae.commands import add_common_flags, check_keys_apply, command, show_progress, split_positionals
from mgmae.config import Config, load_config
from mgmae.convert import arch_of
from mgmae.data import SyntheticDataset, build_loader, uses_synthetic
from mgmae.data.synthetic import synthetic_videos
from mgmae.data.datasets import build_dataset
from mgmae.data.transforms import VideoAugment
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.distributed import DistInfo, ResumableSampler, env_info
from mgmae.engine.evaluate import (build_eval_dataset, check_labels, classification_metrics,
                                   evaluate, format_metrics, predict_dataset, views_of)
from mgmae.engine.loop import (Position, Signals, StepLog, Stepper, autocast_dtype,
                               check_any_video_exists, check_resumable, data_report, encoder_check,
                               finished_run, load_resume, run_directory, run_distributed, summarize, train_epoch,
                               truncate_log)
from mgmae.engine.optim import build_optimizer, lr_at, weight_decay_schedule
from mgmae.models.build import (SCRATCH, build_classifier, classifier_name, is_scratch,
                                sync_model_config)
from mgmae.viz import log_records

__all__ = ["FinetuneResult", "VideoMixup", "build_criterion", "build_mixup", "build_train_dataset",
           "cli_main", "finetune"]


# ----------------------------------------------------------------------------- mixup
class VideoMixup(Mixup):
    """timm's Mixup/CutMix for clip batches ``(B, C, T, H, W)``.

    timm indexes the last two dimensions as the box, but writes ``x[:, :, y0:y1, x0:x1]``, which on
    a 5-D clip cuts a T x H slab across the whole width. Folding time into channels
    (``(B, C*T, H, W)``, a view) makes CutMix cut the same H x W box out of every frame; mixup is
    unchanged. Targets are ``lam * onehot_s(y) + (1 - lam) * onehot_s(y.flip(0))`` with
    ``onehot_s`` the label-smoothed one-hot (timm's ``mixup_target``)."""

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if x.ndim != 5:
            return super().__call__(x, target)
        B, C, T, H, W = x.shape
        x = x.contiguous()
        x4, target = super().__call__(x.view(B, C * T, H, W), target)  # in place on the view
        return x4.view(B, C, T, H, W), target


def build_mixup(f, num_classes: int) -> VideoMixup | None:
    if not (f.mixup > 0 or f.cutmix > 0 or f.cutmix_minmax is not None):
        return None
    return VideoMixup(mixup_alpha=f.mixup, cutmix_alpha=f.cutmix, cutmix_minmax=f.cutmix_minmax,
                      prob=f.mixup_prob, switch_prob=f.mixup_switch_prob, mode=f.mixup_mode,
                      label_smoothing=f.label_smoothing, num_classes=num_classes)


def build_criterion(f, mixup_active: bool) -> nn.Module:
    """Soft-target CE with mixup (smoothing is in the mixed targets), else label-smoothing CE."""
    if mixup_active:
        return SoftTargetCrossEntropy()
    if f.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=f.label_smoothing)
    return nn.CrossEntropyLoss()


# ----------------------------------------------------------------------------- model
def check_encoder(model: nn.Module, dataset, device: torch.device, clips: int = 4) -> str:
    """:func:`mgmae.engine.loop.encoder_check` of a loaded encoder on the first view of the first
    ``clips`` videos of ``dataset``, leaving every random generator as it was (so the check does
    not change the run)."""
    rng = ckpt.rng_state()
    try:
        n = min(clips, len(dataset))
        video = torch.stack([dataset[i]["video"][0] for i in range(n)]).to(device)  # [n, C, T, H, W]
        return encoder_check(model, video)["encoder_message"]
    finally:
        ckpt.set_rng_state(rng)


# ----------------------------------------------------------------------------- data
def build_train_dataset(cfg: Config):
    """``(dataset, class_names, source)`` for training. Synthetic data: multi-scale crops (no flip
    with motion labels: it would turn 'left' into 'right'); real videos: the official random
    resized crop (``finetune.crop``), RandAugment + random erasing through
    :class:`mgmae.data.transforms.VideoAugment`."""
    d, f = cfg.data, cfg.finetune
    if uses_synthetic(cfg):
        videos = synthetic_videos(d, encode=False)
        videos.cache_all()  # rendered once, shared by the loader workers
        flip = d.flip and d.synthetic_label != "motion"
        ds = SyntheticDataset(videos, num_sample=d.num_sample, scales=d.scales, flip=flip,
                              train=True, label=d.synthetic_label, seed=cfg.train.seed)
        return ds, ds.class_names, f"synthetic (seed {d.synthetic_seed}, {len(videos)} videos)"
    augment = None
    if f.rand_aug or f.reprob > 0:
        augment = VideoAugment(f.rand_aug or None, f.reprob, f.remode)
    ds, names = build_dataset(d, None, train=True, augment=augment, crop=f.crop,
                              crop_scale=f.crop_scale, crop_ratio=f.crop_ratio)
    return ds, names, d.train_list


def has_val_data(cfg: Config) -> bool:
    """Validation/test data to use: list files, or held-out synthetic videos
    (``finetune.synthetic_val_videos=0`` turns them off: no validation, no test, final model only)."""
    if uses_synthetic(cfg):
        return cfg.finetune.synthetic_val_videos > 0
    return bool(cfg.data.val_list or cfg.data.test_list)


# ----------------------------------------------------------------------------- results
@dataclass
class FinetuneResult:
    run_dir: str
    pretrained: str
    best_acc1: float | None  # best validation top-1 (%)
    best_epoch: int | None
    final_val_acc1: float | None  # validation top-1 of the last epoch
    test: dict[str, Any] | None  # multi-view test metrics of the best model
    epochs: int
    steps: int
    seconds: float
    checkpoints: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # validation records per epoch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["test"]:
            d["test"] = {k: v for k, v in d["test"].items() if k not in ("confusion", "per_class")}
        return d


# ----------------------------------------------------------------------------- the loop
def run_prefix(cfg: Config, pretrained) -> str:
    """A new fine-tuning run without ``train.run_name`` is ``<prefix>-<time>``."""
    src = SCRATCH if is_scratch(pretrained) else Path(str(pretrained)).stem
    return f"ft-{classifier_name(cfg)}-{src}"


# the config keys that decide the shapes of a fine-tuned model's weights
RESUME_KEYS = ("model.name", "model.tubelet_size", "model.pos_embed", "data.num_frames",
               "data.img_size", "finetune.num_classes")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def finetune(cfg: Config, pretrained: str | Path | None = SCRATCH, *, progress: bool = True,
             stop_at_step: int | None = None) -> FinetuneResult:
    """Fine-tune ``pretrained`` (a checkpoint path or ``"scratch"``) as described by ``cfg``.
    Writes ``config.yaml``, ``classes.json``, ``log.jsonl``, ``checkpoint-best.pth``,
    ``checkpoint-final.pth``, ``curves.png``, ``result.json`` and ``test/`` into the run directory.

    Single process or ``torchrun`` (DDP), like pre-training; ``train.resume=auto`` continues an
    interrupted run exactly (``checkpoint-last.pth``). ``stop_at_step`` behaves like a preemption
    signal arriving at that step (tests use it)."""
    return run_distributed(cfg.train.device, lambda info, device, created: _finetune(
        cfg, pretrained, info, device, progress, stop_at_step, created))


def _finetune(cfg: Config, pretrained, info: DistInfo, device: torch.device, progress: bool,
              stop_at_step: int | None, created: list[Path]) -> FinetuneResult:
    t_start = time.time()
    cfg = copy.deepcopy(cfg)
    f, t = cfg.finetune, cfg.train
    main = info.is_main
    say = print if main else (lambda *a, **k: None)
    torch.manual_seed(t.seed)  # identical initial weights (new head) on every rank
    np.random.seed((t.seed + info.rank) % 2**32)  # timm Mixup draws from numpy's global generator
    random.seed(t.seed + info.rank)

    # data
    train_set, class_names, train_source = build_train_dataset(cfg)
    data_classes = len(class_names) if class_names else getattr(train_set, "num_classes", 0)
    num_classes = f.num_classes or data_classes
    if num_classes < 1:
        raise ValueError(f"no classes: the training labels are all -1 ({train_source}); "
                         f"fine-tuning needs 'path label' list files or set finetune.num_classes")
    check_labels(train_set, num_classes, train_source if isinstance(train_source, str) else None,
                 what=("finetune.num_classes" if f.num_classes else "the training data"))
    val_set = val_source = None
    if has_val_data(cfg):
        val_set, _, val_source = build_eval_dataset(cfg, "val", views=(1, 1),
                                                    synthetic=uses_synthetic(cfg))
        check_labels(val_set, num_classes, val_source if isinstance(val_source, str) else None,
                     what="the training data")
    f.num_classes = num_classes

    # model, run directory
    model = build_classifier(pretrained, cfg, num_classes)  # with model.load_report
    report = model.load_report
    sync_model_config(cfg, model)
    model.to(device)
    if report is not None and main:
        say(f"[mgmae] {check_encoder(model, val_set if val_set is not None else train_set, device)}")
    run_dir = run_directory(cfg, info, prefix=run_prefix(cfg, pretrained), created=created)
    cfg.train.run_name = run_dir.name
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    # what to resume from, checked before anything in the run dir is written
    resume, state = load_resume(run_dir, t.resume, ("checkpoint-last.pth", "checkpoint-final.pth"),
                                map_location=device)
    if state is not None:
        check_resumable(state, cfg, resume, "classify", keys=RESUME_KEYS)
        if not state.get("optimizer"):
            raise ValueError(f"{resume} is not a fine-tuning resume point (no optimizer state)")

    # optimisation
    accum = t.accum_steps
    sampler = ResumableSampler(len(train_set), rank=info.rank, world_size=info.world_size,
                               seed=t.seed, batch_size=f.batch_size, multiple=f.batch_size * accum)
    steps_per_epoch = sampler.per_rank // (f.batch_size * accum)
    if steps_per_epoch == 0:
        check_any_video_exists(train_set)
        raise ValueError(f"the training set has {len(train_set)} videos, fewer than one optimizer "
                         f"step needs (finetune.batch_size={f.batch_size} x accum_steps={accum} x "
                         f"{info.world_size} ranks); lower the batch size")
    loader = build_loader(train_set, f.batch_size, num_workers=t.num_workers, seed=t.seed,
                          sampler=sampler, pin_memory=device.type == "cuda")
    total_steps = t.max_steps or f.epochs * steps_per_epoch
    if state is not None and finished_run(state, cfg, resume, total_steps, main):
        return _stored_result(run_dir, pretrained, state)
    if main:
        cfg.save(run_dir / "config.yaml")
        (run_dir / "classes.json").write_text(json.dumps(names, indent=1))
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    eff_videos = f.batch_size * accum * info.world_size
    lr = f.lr if f.lr is not None else f.blr * eff_videos / 256
    warmup_steps = int(f.warmup_epochs * steps_per_epoch)
    depth = len(model.blocks)
    layer_decay = f.layer_decay if f.layer_decay < 1.0 else None
    optimizer = build_optimizer(model, lr, f.weight_decay, f.betas, layer_decay=layer_decay,
                                num_layers=depth)
    dtype = autocast_dtype(t.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    clips_per_step = f.batch_size * max(1, cfg.data.num_sample)
    mixup = build_mixup(f, num_classes)
    if mixup is not None and clips_per_step % 2:
        say(f"[mgmae] note: mixup/cutmix need an even number of clips per batch, got "
            f"{clips_per_step}; mixup is off")
        mixup = None
    criterion = build_criterion(f, mixup is not None)
    ema = None
    if f.ema:
        ema = ModelEmaV3(model, decay=f.ema_decay)
    ddp = (torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None) if info.enabled else model)
    fwd = torch.compile(ddp) if t.compile else ddp
    eval_bs = max(1, 2 * clips_per_step)  # clips per evaluation batch (no gradients)

    # resume
    step, epoch, skip = 0, 0, 0
    best_acc1, best_epoch, history, best_state = None, None, [], None
    saver = ckpt.CheckpointSaver(
        run_dir, model, cfg, "classify", optimizer=optimizer, scaler=scaler, main=main,
        extra=lambda steps_in_epoch: _extra(model, names, pretrained, best_acc1, best_epoch,
                                            history=history, ema=ema,
                                            steps_in_epoch=steps_in_epoch))
    if state is not None:
        saver.restore(state, resume)
        extra = state.get("extra") or {}
        if ema is not None and extra.get("model_ema"):
            ema.module.load_state_dict(extra["model_ema"])
        best_acc1, best_epoch = extra.get("best_acc1"), extra.get("best_epoch")
        history = list(extra.get("history") or [])
        if (run_dir / "checkpoint-best.pth").is_file():
            best_state = ckpt.load_checkpoint(run_dir / "checkpoint-best.pth")["model"]
        ckpt.set_rng_state(state["rng"])
        step, epoch = state["step"], state["epoch"]
        skip = extra.get("steps_in_epoch", 0) * accum  # micro-batches already consumed
        if main:
            truncate_log(run_dir / "log.jsonl", step, resume)
        say(f"[mgmae] resumed from {resume} at step {step} (epoch {epoch})")
        del state

    src = SCRATCH if report is None else f"{pretrained} ({report.source}, {report.source_kind})"
    say(f"[mgmae] run dir: {run_dir}")
    say(f"[mgmae] fine-tuning {src}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
        f"params, {depth} blocks, {num_classes} classes")
    if report is not None:
        say("[mgmae] " + report.summary().replace("\n", "\n[mgmae] "))
    say(f"[mgmae] data: {train_source}: {len(train_set)} videos x {cfg.data.num_sample} clips; "
        f"val: {val_source or 'none'}; {steps_per_epoch} steps/epoch, {total_steps} steps; "
        f"{info.world_size} process(es) on {device}, autocast {dtype or 'fp32'}")
    say(f"[mgmae] global batch {eff_videos} videos (= {f.batch_size} x {accum} accum x "
        f"{info.world_size} ranks) x {cfg.data.num_sample} clips; lr {lr:.3g} "
        + (f"(= blr {f.blr:g} x {eff_videos} / 256)" if f.lr is None else "(set)")
        + f", layer decay {f.layer_decay}, weight decay {f.weight_decay}, drop path {f.drop_path}, "
        f"label smoothing {f.label_smoothing}, mixup {f.mixup if mixup else 0} / cutmix "
        f"{f.cutmix if mixup else 0}, EMA {('%g' % f.ema_decay) if ema else 'off'}")

    log = StepLog(run_dir, main=main, prefix="finetune", total_steps=total_steps, initial=step,
                  log_every=t.log_every, tensorboard=t.tensorboard, progress=progress,
                  wandb=t.wandb, config=cfg.to_dict())
    stepper = Stepper(model, ddp, optimizer, accum=accum, dtype=dtype, scaler=scaler,
                      clip_grad=f.clip_grad, max_bad_steps=t.max_bad_steps, info=info,
                      device=device, log=log, config_prefix="finetune")

    def batch_loss(batch):
        video = batch["video"].to(device, non_blocking=True)  # [B*S, C, T, H, W]
        target = torch.as_tensor(batch["label"]).to(device, non_blocking=True)  # [B*S]
        if mixup is not None:
            video, target = mixup(video, target)  # target: [B*S, K] soft
        return (lambda: criterion(fwd(video).float(), target)), video.shape[0]

    def ema_update(k: int) -> None:
        ema.update(model, step=k + 1)

    pos = Position(step, epoch)
    losses: list[float] = []
    val_every = max(1, f.eval_every)
    with Signals() as signals:
        while pos.step < total_steps:
            model.train()
            sampler.set_epoch(pos.epoch, start_batch=skip)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(pos.epoch)
            pos.steps_in_epoch = skip // accum
            skip = 0
            losses += train_epoch(
                loader, train_set, batch_loss, pos=pos, total_steps=total_steps, stepper=stepper,
                lr_at_step=lambda k: lr_at(k, total_steps, warmup_steps, lr, f.min_lr, f.warmup_lr),
                wd_at_step=weight_decay_schedule(total_steps, f.weight_decay, f.weight_decay_end),
                log=log, signals=signals, saver=saver, info=info, device=device,
                stop_at_step=stop_at_step, save_every_steps=t.save_every_steps,
                after_update=ema_update if ema is not None else None)
            pos.epoch += 1
            step, epoch = pos.step, pos.epoch
            # validation and best-model selection (every rank takes part)
            if val_set is not None and (epoch % val_every == 0 or step >= total_steps):
                rec = {"epoch": epoch, "step": step}
                rec.update(_validate(model, val_set, cfg, device, dtype, "val", progress, info,
                                     eval_bs))
                selected, sel_key = model, "val_acc1"
                if ema is not None:  # with EMA, its weights are the ones selected and kept
                    rec.update(_validate(ema.module, val_set, cfg, device, dtype, "val_ema",
                                         progress, info, eval_bs))
                    selected, sel_key = ema.module, "val_ema_acc1"
                if best_acc1 is None or rec[sel_key] > best_acc1:
                    best_acc1, best_epoch = rec[sel_key], epoch
                    best_state = _state(selected)
                    saver.save_weights("checkpoint-best.pth", selected, epoch, step,
                                       _extra(model, names, pretrained, best_acc1, best_epoch))
                rec["best_acc1"] = best_acc1
                history.append(rec)
                log.record(rec)
                log.scalars({k: v for k, v in rec.items() if k.startswith("val")}, step)
                if main:
                    log.write(f"[mgmae] epoch {epoch}/{total_epochs}: val top-1 "
                              f"{rec['val_acc1']:.2f}%"
                              + (f" (EMA {rec['val_ema_acc1']:.2f}%)" if ema is not None else "")
                              + f", top-5 {rec['val_acc5']:.2f}%, loss {rec['val_loss']:.4f}; "
                                f"best {best_acc1:.2f}% (epoch {best_epoch})")
            if step < total_steps:
                saver.end_of_epoch(epoch, step)
    log.close()
    final = saver.finish(epoch, step)
    checkpoints = {"final": str(final)}
    if best_state is not None:
        checkpoints["best"] = str(run_dir / "checkpoint-best.pth")

    # multi-view test of the best model
    test_metrics = None
    if val_set is not None:
        if best_state is not None:
            model.load_state_dict(best_state)
        test_set, _, test_source = build_eval_dataset(cfg, "test", synthetic=uses_synthetic(cfg))
        check_labels(test_set, num_classes, test_source if isinstance(test_source, str) else None,
                     allow_unlabelled=True, what="the training data")
        V = views_of(test_set)
        res = evaluate(model, test_set, batch_size=max(1, eval_bs // V), device=device,
                       num_workers=t.num_workers, dtype=dtype, out_dir=run_dir / "test",
                       class_names=names, progress=progress, info=info,
                       extra={"checkpoint": checkpoints.get("best", str(final)),
                              "data": str(test_source), "best_epoch": best_epoch},
                       max_fail_frac=cfg.data.max_fail_frac)
        test_metrics = res.metrics
        say(f"[mgmae] test ({test_source}, best model of epoch {best_epoch}): "
            f"{format_metrics(res.metrics)}")

    seconds = time.time() - t_start
    result = FinetuneResult(run_dir=str(run_dir), pretrained=str(pretrained or SCRATCH),
                            best_acc1=best_acc1, best_epoch=best_epoch,
                            final_val_acc1=history[-1]["val_acc1"] if history else None,
                            test=test_metrics, epochs=epoch, steps=step, seconds=round(seconds, 1),
                            checkpoints=checkpoints, history=history)
    if not main:
        return result
    summary = summarize(losses, seconds)
    summary.update(best_acc1=best_acc1, best_epoch=best_epoch,
                   test_acc1=test_metrics["top1"] if test_metrics else None,
                   test_acc5=test_metrics["top5"] if test_metrics else None)
    summary.update(data_report(train_set))
    with log.path.open("a") as fh:
        fh.write(json.dumps({"summary": summary}) + "\n")
    _plot_curves(log.path, run_dir / "curves.png")
    (run_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    print(f"[mgmae] {summary['message']}")
    if "data_message" in summary:
        print(f"[mgmae] {summary['data_message']}")
    files = {"config": run_dir / "config.yaml", "log": log.path, **checkpoints,
             "curves": run_dir / "curves.png", "result": run_dir / "result.json"}
    if test_metrics:
        files["test"] = run_dir / "test"
    print("[mgmae] wrote:\n" + "".join(f"  {k:<11} {v}\n" for k, v in files.items()), end="")
    return result


def _stored_result(run_dir: Path, pretrained, state: dict) -> FinetuneResult:
    """A finished run's result, read back (``result.json``, else its checkpoint's record)."""
    path = run_dir / "result.json"
    if path.is_file():
        try:
            return FinetuneResult(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass
    extra = state.get("extra") or {}
    history = list(extra.get("history") or [])
    return FinetuneResult(run_dir=str(run_dir), pretrained=str(pretrained or SCRATCH),
                          best_acc1=extra.get("best_acc1"), best_epoch=extra.get("best_epoch"),
                          final_val_acc1=history[-1].get("val_acc1") if history else None, test=None,
                          epochs=state["epoch"], steps=state["step"], seconds=0.0,
                          checkpoints={}, history=history)


def _extra(model, names, pretrained, best_acc1, best_epoch, history=None, ema=None,
           steps_in_epoch: int | None = None) -> dict:
    extra = {"arch": arch_of(model)[0].to_dict(), "class_names": names,
             "pretrained": str(pretrained or SCRATCH), "best_acc1": best_acc1,
             "best_epoch": best_epoch}
    if history is not None:
        extra["history"] = history
    if ema is not None:
        extra["model_ema"] = ema.module.state_dict()
    if steps_in_epoch is not None:
        extra["steps_in_epoch"] = steps_in_epoch
    return extra


@torch.no_grad()
def _validate(model, dataset, cfg: Config, device, dtype, prefix: str, progress: bool, info,
              clips_per_batch: int) -> dict:
    """Validation top-1/top-5 and loss. Non-finite scores stop the run (FloatingPointError): a
    diverged model is never "best" (the best checkpoint so far stays as it was)."""
    V = views_of(dataset)
    try:
        scores, labels, _ = predict_dataset(model, dataset, batch_size=max(1, clips_per_batch // V),
                                            device=device, num_workers=cfg.train.num_workers,
                                            dtype=dtype, progress=progress, desc=prefix, info=info)
    except FloatingPointError as e:
        raise FloatingPointError(f"fine-tuning diverged: {e}. Lower finetune.lr / finetune.blr or "
                                 f"set finetune.clip_grad; checkpoint-best.pth (if any) holds the "
                                 f"best model before it") from None
    m = classification_metrics(scores, labels)
    keep = labels >= 0
    p = torch.as_tensor(scores[keep]).clamp_min(1e-12)
    nll = float(-p.log().gather(1, torch.as_tensor(labels[keep]).view(-1, 1)).mean()) \
        if keep.any() else float("nan")
    return {f"{prefix}_acc1": round(m["top1"], 4), f"{prefix}_acc5": round(m["top5"], 4),
            f"{prefix}_loss": round(nll, 6)}


def _plot_curves(log_path: Path, png: Path) -> None:
    """Training loss per step and validation top-1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = log_records(log_path, "loss"), log_records(log_path, "val_acc1")
    steps, loss = [r["step"] for r in train], [r["loss"] for r in train]
    vs, acc = [r["step"] for r in val], [r["val_acc1"] for r in val]
    if not steps:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, loss, lw=0.8, alpha=0.6, label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()
    if acc:
        ax2 = ax.twinx()
        ax2.plot(vs, acc, "o-", color="tab:green", label="val top-1 (%)")
        ax2.set_ylabel("val top-1 (%)")
        h2 = ax2.get_legend_handles_labels()
        handles = (handles[0] + h2[0], handles[1] + h2[1])
    ax.legend(*handles, loc="center right")
    ax.set_title("fine-tuning")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae finetune",
        description="Fine-tune a pre-trained encoder for action recognition. No config: the "
                    "built-in demo (synthetic videos, motion labels).")
    p.add_argument("args", nargs="*", metavar="PRETRAINED [key=value ...]",
                   help="checkpoint (ours, official .pth, HF dir) or 'scratch', then overrides "
                        "such as finetune.epochs=10")
    p.add_argument("-c", "--config", help="YAML recipe (e.g. configs/finetune_vit_base_ssv2.yaml)")
    p.add_argument("--resume", help="'auto' (checkpoint-last.pth of the run dir) or a path")
    p.add_argument("--compare-scratch", action="store_true",
                   help="also fine-tune from random initialisation with the same settings and "
                        "print both accuracies")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="with --compare-scratch: repeat the pair for N seeds (train.seed, +1, ...) "
                        "and judge by the paired t-test of the differences")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common_flags(p)
    return p


@command("finetune")
def cli_main(argv: list[str]) -> int:
    """``mgmae finetune PRETRAINED|scratch [-c CONFIG] [key=value ...] [--compare-scratch [--seeds N]]``."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    pos, overrides = split_positionals(args.args, 1)
    check_keys_apply("finetune", overrides)
    if not pos:
        parser.error("give the pre-trained checkpoint to fine-tune, or 'scratch' for random "
                     "initialisation (e.g. mgmae finetune runs/demo/checkpoint-final.pth)")
    pretrained = pos[0]
    cfg = load_config(args.config, overrides)
    if args.resume:
        cfg.train.resume = args.resume
    if args.seeds != 1 and not args.compare_scratch:
        parser.error("--seeds goes with --compare-scratch")
    if args.compare_scratch:
        if is_scratch(pretrained):
            parser.error("--compare-scratch needs a pre-trained checkpoint")
        # the experiment harness builds on this module (imported here, not at the top: no cycle)
        from mgmae.experiments.compare import compare_scratch

        out = compare_scratch(cfg, pretrained, seeds=args.seeds, progress=show_progress(args.quiet))
        if env_info().is_main:
            print(out["table"])
            print(f"[mgmae] comparison written to {out['summary']}")
    else:
        finetune(cfg, pretrained, progress=show_progress(args.quiet))
    return 0
