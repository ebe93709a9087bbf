"""Linear probing of a frozen encoder: ``mgmae linprobe PRETRAINED``.

The encoder runs once over the training and validation videos (test-mode views: centre crop,
``(1, 1)`` views; no augmentation), its mean-pooled features are cached in memory, and only a
linear classifier is trained on them: optionally preceded by a BatchNorm without affine
parameters (``finetune.linprobe_bn``, MAE's linear probe), AdamW (``finetune.linprobe_lr``,
``finetune.linprobe_weight_decay``), cosine schedule, ``finetune.linprobe_epochs`` epochs, batches
of 64 features (256 from 4096 videos up). Fast on a CPU for small data: the encoder's cost is one
forward pass per video.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mgmae.commands import add_common_flags, check_keys_apply, command, show_progress, split_positionals
from mgmae.config import Config, load_config
from mgmae.data import build_loader, uses_synthetic
from mgmae.engine.evaluate import (EvalResult, build_eval_dataset, check_labels, check_unreadable,
                                   classification_metrics, video_paths, views_of, write_eval_outputs)
from mgmae.engine.extract import iter_features
from mgmae.engine.loop import autocast_dtype, resolve_device
from mgmae.models.build import (SCRATCH, build_encoder, classifier_name, is_scratch,
                                sync_model_config)

__all__ = ["LinearProbe", "LinprobeResult", "cli_main", "compute_features", "linprobe",
           "train_probe"]


class LinearProbe(nn.Module):
    """``BatchNorm1d(affine=False)`` (optional) + ``Linear``; the linear layer starts at
    ``trunc_normal(std=0.01)`` weights and zero bias (MAE)."""

    def __init__(self, dim: int, num_classes: int, bn: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6) if bn else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(x))  # [B, K]


@torch.no_grad()
def compute_features(encoder: nn.Module, dataset, cfg: Config, device, dtype=None,
                     progress: bool = True,
                     desc: str = "features") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean-pooled features ``(N, D)`` (averaged over each video's views), labels ``(N,)`` and the
    paths of the unreadable videos, which have no row (a replacement video never stands in for
    one). More than ``data.max_fail_frac`` of them is an error
    (:func:`~mgmae.engine.evaluate.check_unreadable`)."""
    V = views_of(dataset)
    loader = build_loader(dataset, max(1, 2 * cfg.finetune.batch_size // V),
                          num_workers=cfg.train.num_workers, shuffle=False, drop_last=False,
                          pin_memory=torch.device(device).type == "cuda")
    feats, labels, indices = [], [], []
    for f, y, i, _ in iter_features(encoder, loader, device, V, dtype, progress=progress, desc=desc):
        feats.append(f)
        labels.append(y)
        indices.append(i)
    x, y, idx = np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int64), \
        np.concatenate(indices)
    keep = idx == np.arange(len(idx))  # row r is video r unless the dataset replaced it
    unreadable = [p for p, k in zip(video_paths(dataset), keep) if not k]
    check_unreadable(unreadable, len(keep), cfg.data.max_fail_frac, getattr(dataset, "failures", {}),
                     f"so no probe is trained or scored on the rest ({desc})")
    return x[keep], y[keep], unreadable


def train_probe(x_train: np.ndarray, y_train: np.ndarray, num_classes: int, *, bn: bool = True,
                epochs: int = 100, lr: float = 1e-3, weight_decay: float = 0.0,
                batch_size: int | None = None, seed: int = 0,
                log=None) -> tuple[LinearProbe, list[dict[str, float]]]:
    """Train a :class:`LinearProbe` on cached features (CPU); returns it (in eval mode) and the
    per-epoch history ``[{"epoch", "loss", "lr"}]``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.as_tensor(x_train, dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.long)
    n = len(x)
    if n < 2:
        raise ValueError(f"a linear probe needs at least 2 training videos, got {n}")
    bs = batch_size or (256 if n >= 4096 else 64)
    bs = min(bs, n)
    probe = LinearProbe(x.shape[1], num_classes, bn=bn)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = n // bs
    total = epochs * steps_per_epoch
    warmup = min(total // 10, 10 * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    step = 0
    for epoch in range(epochs):
        probe.train()
        perm = torch.randperm(n, generator=g)
        running = 0.0
        for k in range(steps_per_epoch):
            idx = perm[k * bs:(k + 1) * bs]
            cur = lr * (step + 1) / warmup if step < warmup else \
                0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            for group in opt.param_groups:
                group["lr"] = cur
            loss = loss_fn(probe(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
            step += 1
        rec = {"epoch": epoch + 1, "loss": round(running / steps_per_epoch, 6), "lr": cur}
        history.append(rec)
        if log is not None:
            log(rec)
    probe.eval()
    return probe, history


@torch.no_grad()
def probe_scores(probe: LinearProbe, x: np.ndarray) -> np.ndarray:
    return probe(torch.as_tensor(x, dtype=torch.float32)).softmax(-1).numpy()


@dataclass
class LinprobeResult:
    run_dir: str
    pretrained: str
    train_acc1: float
    val_acc1: float | None
    val_acc5: float | None
    num_train: int
    num_val: int
    dim: int
    seconds: float
    feature_seconds: float
    files: dict[str, str] = field(default_factory=dict)
    unreadable_train: list[str] = field(default_factory=list)  # videos without a feature row
    unreadable_val: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def linprobe(cfg: Config, pretrained: str | Path | None, *, progress: bool = True) -> LinprobeResult:
    """Linear probe of ``pretrained``'s frozen encoder (or ``"scratch"``: a random encoder, the
    baseline) on ``cfg``'s data (train split to fit, val split to score)."""
    t0 = time.time()
    cfg = copy.deepcopy(cfg)
    f, t = cfg.finetune, cfg.train
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    synth = uses_synthetic(cfg)
    train_set, names, train_src = build_eval_dataset(cfg, "train", views=(1, 1), synthetic=synth)
    data_k = len(names) if names else getattr(train_set, "num_classes", 0)
    K = f.num_classes or data_k
    if K < 1:
        raise ValueError(f"no classes: the training labels are all -1 ({train_src})")
    check_labels(train_set, K, train_src if isinstance(train_src, str) else None,
                 what="the training data")
    val_set = val_src = None
    try:
        val_set, _, val_src = build_eval_dataset(cfg, "val", views=(1, 1), synthetic=synth)
    except ValueError as e:
        print(f"[mgmae] no validation data ({e}); reporting training accuracy only")
    if val_set is not None:
        check_labels(val_set, K, val_src if isinstance(val_src, str) else None,
                     allow_unlabelled=True, what="the training data")

    encoder = build_encoder(pretrained, cfg).to(device)
    for p in encoder.parameters():
        p.requires_grad_(False)
    dtype = autocast_dtype(t.amp, device)
    src = SCRATCH if is_scratch(pretrained) else Path(str(pretrained)).stem
    cfg.train.run_name = t.run_name or (f"lp-{classifier_name(cfg)}-{src}-"
                                        f"{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(t.output_dir) / cfg.train.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    print(f"[mgmae] linear probe of {pretrained or SCRATCH} on {train_src} "
          f"({len(train_set)} videos), val {val_src or 'none'}; device {device}; run dir {run_dir}")

    t_feat = time.time()
    x_tr, y_tr, bad_tr = compute_features(encoder, train_set, cfg, device, dtype, progress,
                                          "train features")
    x_va = y_va = None
    bad_va: list[str] = []
    if val_set is not None:
        x_va, y_va, bad_va = compute_features(encoder, val_set, cfg, device, dtype, progress,
                                              "val features")
    t_feat = time.time() - t_feat
    keep = y_tr >= 0
    log_path = run_dir / "log.jsonl"
    with log_path.open("w") as fh:
        probe, history = train_probe(x_tr[keep], y_tr[keep], K, bn=f.linprobe_bn,
                                     epochs=f.linprobe_epochs, lr=f.linprobe_lr,
                                     weight_decay=f.linprobe_weight_decay, seed=t.seed,
                                     log=lambda r: fh.write(json.dumps(r) + "\n"))
        train_m = classification_metrics(probe_scores(probe, x_tr[keep]), y_tr[keep], K)
        files = {"config": str(run_dir / "config.yaml"), "log": str(log_path)}
        val_m = None
        if x_va is not None:
            scores = probe_scores(probe, x_va)
            val_m = classification_metrics(scores, y_va, K)
            val_m.update(num_unreadable=len(bad_va), unreadable=bad_va)
            readable = [i for i, p in enumerate(video_paths(val_set)) if p not in set(bad_va)]
            ev = EvalResult(val_m, scores, y_va, np.asarray(readable, np.int64))
            files.update(write_eval_outputs(run_dir / "val", ev, val_set, names))
        fh.write(json.dumps({"summary": {"train_acc1": train_m["top1"],
                                         "val_acc1": val_m["top1"] if val_m else None}}) + "\n")
    torch.save({"probe": probe.state_dict(), "dim": int(x_tr.shape[1]), "num_classes": K,
                "bn": f.linprobe_bn, "pretrained": str(pretrained or SCRATCH),
                "class_names": names}, run_dir / "probe.pth")
    files["probe"] = str(run_dir / "probe.pth")
    res = LinprobeResult(str(run_dir), str(pretrained or SCRATCH), train_m["top1"],
                         val_m["top1"] if val_m else None, val_m["top5"] if val_m else None,
                         int(keep.sum()), 0 if y_va is None else int(len(y_va)),
                         int(x_tr.shape[1]), round(time.time() - t0, 1), round(t_feat, 1), files,
                         bad_tr, bad_va)
    (run_dir / "result.json").write_text(json.dumps(res.to_dict(), indent=1) + "\n")
    files["result"] = str(run_dir / "result.json")
    val_txt = (f"val top-1 {res.val_acc1:.2f}%, top-5 {res.val_acc5:.2f}%" if val_m
               else "no validation data")
    bad = "".join(f", {len(v)} {k} videos unreadable, left out" for k, v in
                  (("train", bad_tr), ("val", bad_va)) if v)
    print(f"[mgmae] linear probe: train top-1 {res.train_acc1:.2f}%, {val_txt} "
          f"({res.num_train} train videos, dim {res.dim}{bad}; features {t_feat:.0f} s, "
          f"total {res.seconds:.0f} s)")
    return res


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae linprobe",
        description="Linear probe of a frozen encoder on cached features. No config: the built-in "
                    "synthetic data (motion labels).")
    p.add_argument("args", nargs="*", metavar="PRETRAINED [key=value ...]",
                   help="checkpoint or 'scratch' (a random encoder), then config overrides")
    p.add_argument("-c", "--config", help="YAML recipe (data settings, finetune.linprobe_*)")
    p.add_argument("--compare-scratch", action="store_true",
                   help="also probe a randomly initialised encoder and print both accuracies")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common_flags(p)
    return p


@command("linprobe")
def cli_main(argv: list[str]) -> int:
    """``mgmae linprobe PRETRAINED [-c CONFIG] [key=value ...] [--compare-scratch]``."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    pos, overrides = split_positionals(args.args, 1)
    check_keys_apply("linprobe", overrides)
    if not pos:
        parser.error("give the checkpoint whose encoder to probe (or 'scratch')")
    cfg = load_config(args.config, overrides)
    res = linprobe(cfg, pos[0], progress=show_progress(args.quiet))
    if args.compare_scratch and not is_scratch(pos[0]):
        c = copy.deepcopy(cfg)
        sync_model_config(c, build_encoder(pos[0], cfg))  # the random encoder: same architecture
        c.train.run_name = f"{Path(res.run_dir).name}-scratch"
        base = linprobe(c, "scratch", progress=show_progress(args.quiet))
        print(f"[mgmae] linear probe val top-1: {pos[0]} {_f(res.val_acc1)} vs random "
              f"encoder {_f(base.val_acc1)}")
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.2f}%"
