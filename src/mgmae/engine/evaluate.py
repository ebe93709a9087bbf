"""Multi-view evaluation of a video classifier: ``mgmae eval CHECKPOINT``.

Each test video gives ``V = T x S`` views (``T`` temporal clips x ``S`` spatial crops, from the
dataset's test mode, temporal-major); the softmax scores of its views are averaged and the
average is the video's prediction (VideoMAE's protocol). Outputs (``evaluate(..., out_dir=)``):

* ``metrics.json``: top-1 / top-5, mean per-class accuracy, per-class counts and accuracies;
* ``predictions.csv``: one row per video (index, path, label, prediction, confidence, top-5);
* ``scores.npy``: the averaged class probabilities ``(num_videos, num_classes)``;
* ``confusion.png``: the row-normalised confusion matrix.

Videos labelled ``-1`` (unlabelled) are predicted and written but left out of the metrics.
"""

from __future__ import annotations

import argparse
import csv
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mgmae.commands import (add_common_flags, check_keys_apply, check_output, command, show_progress,
                            split_positionals)
from mgmae.config import Config, apply_overrides, load_config, validate
from mgmae.data import SyntheticDataset, build_loader
from mgmae.data.synthetic import synthetic_videos
from mgmae.data.datasets import DatasetFailureError, ListFileError, build_dataset
from mgmae.engine.checkpoint import load_checkpoint
from mgmae.engine.distributed import cleanup, init_distributed
from mgmae.engine.loop import autocast_dtype
from mgmae.models.build import build_classifier


__all__ = ["EvalResult", "average_views", "classification_metrics", "check_labels", "cli_main",
           "evaluate", "evaluate_checkpoint", "predict", "predict_dataset", "save_confusion_png",
           "views_of", "write_predictions_csv"]


# ----------------------------------------------------------------------------- pure functions
def average_views(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """``(B * V, K)`` logits of ``V`` consecutive views per video -> ``(B, K)`` mean softmax."""
    if logits.ndim != 2 or logits.shape[0] % num_views:
        raise ValueError(f"expected ({num_views} x videos, classes) logits, got {tuple(logits.shape)}")
    probs = logits.float().softmax(-1)  # [B*V, K]
    return probs.view(-1, num_views, probs.shape[-1]).mean(1)  # [B, K]


def classification_metrics(scores: np.ndarray, labels: np.ndarray,
                           num_classes: int | None = None) -> dict[str, Any]:
    """Top-1 / top-5 (in [0, 100]), the confusion matrix (rows: true class, columns: predicted),
    per-class accuracy and its mean over the classes present. Labels < 0 are ignored."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    K = num_classes or scores.shape[1]
    keep = labels >= 0
    s, y = scores[keep], labels[keep]
    n = len(y)
    confusion = np.zeros((K, K), dtype=np.int64)
    if n == 0:
        return {"num_videos": 0, "top1": float("nan"), "top5": float("nan"),
                "mean_class_acc": float("nan"), "per_class": [], "confusion": confusion.tolist()}
    if y.max() >= K:
        raise ValueError(f"label {int(y.max())} is outside the {K} classes of the scores")
    pred = s.argmax(1)
    k5 = min(5, s.shape[1])
    top5 = np.argsort(-s, axis=1, kind="stable")[:, :k5]
    np.add.at(confusion, (y, pred), 1)
    counts = confusion.sum(1)
    correct = np.diag(confusion)
    per_class = [{"class": c, "count": int(counts[c]), "correct": int(correct[c]),
                  "acc": float(100.0 * correct[c] / counts[c]) if counts[c] else None}
                 for c in range(K)]
    present = counts > 0
    return {"num_videos": int(n),
            "top1": float(100.0 * (pred == y).mean()),
            "top5": float(100.0 * (top5 == y[:, None]).any(1).mean()),
            "mean_class_acc": float(100.0 * (correct[present] / counts[present]).mean()),
            "per_class": per_class, "confusion": confusion.tolist()}


def views_of(dataset) -> int:
    """Views per video that ``dataset`` yields: ``views_per_video`` (VideoDataset) or ``num_sample``."""
    v = getattr(dataset, "views_per_video", None)
    return int(v if v is not None else getattr(dataset, "num_sample", 1))


def video_paths(dataset) -> list[str]:
    if hasattr(dataset, "entries"):
        return [e.path for e in dataset.entries]
    videos = getattr(dataset, "videos", None)
    if videos is not None and hasattr(videos, "seed"):
        return [f"synthetic:{videos.seed}:{i}" for i in range(len(dataset))]
    return [str(i) for i in range(len(dataset))]


# ----------------------------------------------------------------------------- label checks
def _data_lines(list_path: str | Path, num_entries: int) -> list[tuple[int, str]] | None:
    """``(line number, text)`` of each entry of a list file (header excluded), or None when the
    lines cannot be matched to the entries one to one."""
    try:
        text = Path(list_path).read_text(encoding="utf-8-sig")
    except OSError:
        return None
    rows = [(n, s.strip()) for n, s in enumerate(text.splitlines(), 1)]
    rows = [(n, s) for n, s in rows if s and not s.startswith("#")]
    if len(rows) == num_entries + 1:  # a csv header
        rows = rows[1:]
    return rows if len(rows) == num_entries else None


def check_labels(dataset, num_classes: int, source: str | None = None, *,
                 allow_unlabelled: bool = False, what: str = "the model") -> None:
    """Raise a clear error if a video's label is outside ``[0, num_classes)`` (``-1`` =
    unlabelled is allowed with ``allow_unlabelled``). For a list file the error is a
    :class:`~mgmae.data.datasets.ListFileError` naming the file and the line."""
    entries = getattr(dataset, "entries", None)
    if entries is None:  # synthetic data: labels are in range by construction
        return
    bad = [(k, e) for k, e in enumerate(entries)
           if e.label >= num_classes or (e.label < 0 and not allow_unlabelled)]
    if not bad:
        return
    k, e = bad[0]
    more = f" ({len(bad) - 1} more such entries)" if len(bad) > 1 else ""
    reason = (f"label {e.label} is outside [0, {num_classes}): {what} has {num_classes} classes"
              if e.label >= 0 else "no label (-1): a labelled list 'path [num_frames] label' is needed")
    if source is not None and Path(source).is_file():
        lines = _data_lines(source, len(entries))
        if lines is not None:
            lineno, raw = lines[k]
            raise ListFileError(source, lineno, reason + more, raw)
        raise ListFileError(source, 0, f"entry {k + 1} ({e.path}): {reason}{more}")
    raise ValueError(f"{source or 'dataset'}: {e.path}: {reason}{more}")


# ----------------------------------------------------------------------------- inference
@dataclass
class EvalResult:
    """What :func:`evaluate` computed; ``metrics`` is JSON-ready."""

    metrics: dict[str, Any]
    scores: np.ndarray  # (num_videos, num_classes) mean softmax over views
    labels: np.ndarray  # (num_videos,)
    indices: np.ndarray  # (num_videos,) dataset index of each row
    files: dict[str, str] = field(default_factory=dict)

    @property
    def top1(self) -> float:
        return self.metrics["top1"]

    @property
    def top5(self) -> float:
        return self.metrics["top5"]


@torch.no_grad()
def predict(model: torch.nn.Module, loader, device: torch.device | str = "cpu", num_views: int = 1,
            dtype: torch.dtype | None = None, progress: bool = True, desc: str = "eval",
            dataset=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of every video in ``loader`` (batches of ``(B * V, C, T, H, W)`` clips, labels and
    indices repeated per view, as :func:`mgmae.data.collate` makes them). Returns
    ``(scores (N, K), labels (N,), indices (N,))`` (empty arrays for an empty loader)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores, labels, indices = [], [], []
    dataset = dataset if dataset is not None else getattr(loader, "dataset", None)
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                      disable=not progress):
        if dataset is not None and hasattr(dataset, "update_failures"):
            dataset.update_failures(batch)
        video = batch["video"].to(device, non_blocking=True)  # [B*V, C, T, H, W]
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            logits = model(video)  # [B*V, K]
        scores.append(average_views(logits, num_views).cpu())  # [B, K]
        labels.append(torch.as_tensor(batch["label"])[::num_views])
        indices.append(torch.as_tensor(batch["index"])[::num_views])
    model.train(was_training)
    if not scores:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (torch.cat(scores).numpy(), torch.cat(labels).numpy().astype(np.int64),
            torch.cat(indices).numpy().astype(np.int64))


def predict_dataset(model: torch.nn.Module, dataset, *, batch_size: int = 8, device="cpu",
                    num_workers: int = 0, dtype: torch.dtype | None = None, progress: bool = True,
                    desc: str = "eval", info=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`predict` over a whole dataset (``batch_size`` videos per batch). Under
    ``torch.distributed`` (``info.enabled``), rank ``r`` scores videos ``r, r + world, ...`` and the
    results are gathered on every rank, in dataset order."""
    V = views_of(dataset)
    enabled = info is not None and info.enabled
    part = (torch.utils.data.Subset(dataset, range(info.rank, len(dataset), info.world_size))
            if enabled else dataset)
    loader = build_loader(part, batch_size, num_workers=num_workers, shuffle=False, drop_last=False,
                          pin_memory=torch.device(device).type == "cuda")
    out = predict(model, loader, device, V, dtype, progress and (not enabled or info.is_main), desc,
                  dataset=dataset)
    if enabled:
        parts = [None] * info.world_size
        dist.all_gather_object(parts, out)
        n = sum(len(p[1]) for p in parts)
        K = max(p[0].shape[1] for p in parts)
        scores = np.zeros((n, K), np.float32)
        labels, indices = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for r, (sc, lab, idx) in enumerate(parts):  # rank r holds positions r, r + world, ...
            if len(lab):
                scores[r::info.world_size], labels[r::info.world_size] = sc, lab
                indices[r::info.world_size] = idx
        out = (scores, labels, indices)
    if len(out[1]) == 0:
        raise ValueError("the evaluation dataset is empty")
    bad = ~np.isfinite(out[0]).all(1)
    if bad.any():  # NaN scores would give argmax 0: a plausible-looking but meaningless accuracy
        raise FloatingPointError(f"the model's scores are NaN or inf for {int(bad.sum())} of "
                                 f"{len(bad)} videos ({desc}): its weights or activations are not "
                                 f"finite, so there is no accuracy to report")
    keep = out[2] == np.arange(len(out[2]))  # row r is video r unless the dataset replaced it
    if not keep.all():  # an unreadable video answered by another one: never score it twice
        out = tuple(a[keep] for a in out)
    return out


def check_unreadable(unreadable: list[str], total: int, max_fail_frac: float | None,
                     reasons: dict[str, str] | None = None,
                     consequence: str = "so no accuracy on the rest is reported") -> None:
    """Raise :class:`DatasetFailureError` (one line for the user, the first files named) when more
    than ``max_fail_frac`` of ``total`` videos are ``unreadable``: a result on what is left would
    be a different test set's. None: any share is accepted (and reported by the caller)."""
    if max_fail_frac is None or not unreadable or len(unreadable) <= max_fail_frac * total:
        return
    reasons = reasons or {}
    examples = "; ".join(f"{p}: {reasons.get(p, 'unreadable')}" for p in unreadable[:3])
    more = f"; ... and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
    raise DatasetFailureError(
        f"{len(unreadable)} of {total} videos could not be read ({examples}{more}), more than "
        f"data.max_fail_frac={max_fail_frac:g}, {consequence}; fix or remove them (`mgmae data "
        f"check LIST`), or raise data.max_fail_frac to accept a partial result")


def evaluate(model: torch.nn.Module, dataset, *, batch_size: int = 8, device="cpu",
             num_workers: int = 0, dtype: torch.dtype | None = None, out_dir: str | Path | None = None,
             class_names: list[str] | None = None, progress: bool = True,
             extra: dict[str, Any] | None = None, info=None,
             max_fail_frac: float | None = None) -> EvalResult:
    """Multi-view evaluation of ``model`` on ``dataset`` (its test mode decides the views);
    ``batch_size`` counts videos. With ``out_dir`` the metrics, predictions, scores and the
    confusion matrix are written there (:attr:`EvalResult.files`; by rank 0 under
    ``torch.distributed``, where every rank must call this). Unreadable videos are not scored:
    more than ``max_fail_frac`` of them is an error (:func:`check_unreadable`); fewer are counted
    in ``metrics["num_unreadable"]`` and listed in ``metrics["unreadable"]``."""
    V = views_of(dataset)
    scores, labels, indices = predict_dataset(model, dataset, batch_size=batch_size, device=device,
                                              num_workers=num_workers, dtype=dtype,
                                              progress=progress, info=info)
    K = scores.shape[1]
    metrics = classification_metrics(scores, labels, K)
    metrics.update(num_views=V, num_classes=K, num_predicted=int(len(labels)), **(extra or {}))
    metrics["num_unreadable"] = 0
    if len(indices) < len(dataset):
        paths = video_paths(dataset)
        missing = sorted(set(range(len(dataset))) - set(indices.tolist()))
        check_unreadable([paths[i] for i in missing], len(dataset), max_fail_frac,
                         getattr(dataset, "failures", {}))
        metrics["unreadable"] = [paths[i] for i in missing]
        metrics["num_unreadable"] = len(missing)
        if info is None or info.is_main:
            print(f"[mgmae] warning: {len(missing)} of {len(dataset)} videos could not be read and "
                  f"are not scored (listed in metrics.json 'unreadable')")
    res = EvalResult(metrics, scores, labels, indices)
    if out_dir is not None and (info is None or info.is_main):
        res.files = write_eval_outputs(out_dir, res, dataset, class_names)
    return res


# ----------------------------------------------------------------------------- outputs
def write_predictions_csv(path: str | Path, scores: np.ndarray, labels: np.ndarray,
                          indices: np.ndarray, paths: list[str] | None = None,
                          class_names: list[str] | None = None) -> Path:
    """One row per video: ``index, path, label, label_name, pred, pred_name, correct, confidence,
    top5`` (top-5 class ids separated by spaces; ``correct`` empty for unlabelled videos)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = (lambda c: class_names[c] if class_names and 0 <= c < len(class_names) else "")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "label", "label_name", "pred", "pred_name", "correct",
                    "confidence", "top5"])
        for row in range(len(labels)):
            i, y, p = int(indices[row]), int(labels[row]), int(order[row, 0])
            w.writerow([i, paths[i] if paths else "", y, name(y), p, name(p),
                        "" if y < 0 else int(p == y), f"{scores[row, p]:.6f}",
                        " ".join(str(int(c)) for c in order[row])])
    return path


def save_confusion_png(confusion, path: str | Path, class_names: list[str] | None = None,
                       title: str = "confusion matrix (rows: true class, normalised)") -> Path:
    """Row-normalised confusion matrix as a PNG (class names on the axes up to 40 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=np.float64)
    K = cm.shape[0]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(16.0, max(4.0, 0.35 * K + 2))
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if K <= 40:
        names = class_names if class_names and len(class_names) == K else [str(c) for c in range(K)]
        ax.set_xticks(range(K), names, rotation=90, fontsize=8)
        ax.set_yticks(range(K), names, fontsize=8)
        if K <= 20:
            for r in range(K):
                for c in range(K):
                    if cm[r, c]:
                        ax.text(c, r, int(cm[r, c]), ha="center", va="center", fontsize=7,
                                color="white" if norm[r, c] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_eval_outputs(out_dir: str | Path, res: EvalResult, dataset=None,
                       class_names: list[str] | None = None) -> dict[str, str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = video_paths(dataset) if dataset is not None else None
    metrics = dict(res.metrics)
    if class_names:
        metrics["class_names"] = list(class_names)
        for pc in metrics.get("per_class", []):
            if pc["class"] < len(class_names):
                pc["name"] = class_names[pc["class"]]
    files = {
        "metrics": out / "metrics.json",
        "predictions": write_predictions_csv(out / "predictions.csv", res.scores, res.labels,
                                             res.indices, paths, class_names),
        "scores": out / "scores.npy",
        "confusion": save_confusion_png(res.metrics["confusion"], out / "confusion.png",
                                        class_names),
    }
    np.save(files["scores"], res.scores.astype(np.float32))
    files["metrics"].write_text(json.dumps(metrics, indent=1) + "\n")
    return {k: str(v) for k, v in files.items()}


# ----------------------------------------------------------------------------- from a checkpoint
def config_for_checkpoint(config_path: str | None, overrides: list[str] | None,
                          stored: dict | None):
    """The config of an evaluation: ``-c`` recipe, else the checkpoint's own config, else the
    defaults; then the ``key=value`` overrides."""
    if config_path is not None or not stored:
        return load_config(config_path, overrides)
    try:
        cfg = Config.from_dict(stored)
    except (KeyError, ValueError) as e:
        print(f"[mgmae] the checkpoint's config does not load ({e}); using the defaults")
        cfg = Config()
    apply_overrides(cfg, list(overrides or []))
    validate(cfg)
    return cfg


def class_names_for(checkpoint: str | Path, stored_extra: dict | None, dataset_names) -> list[str] | None:
    if stored_extra and stored_extra.get("class_names"):
        return list(stored_extra["class_names"])
    side = Path(checkpoint).parent / "classes.json"
    if side.is_file():
        try:
            return list(json.loads(side.read_text()))
        except ValueError:
            pass
    return list(dataset_names) if dataset_names else None


def build_eval_dataset(cfg, split: str = "test", views: tuple[int, int] | None = None,
                       synthetic: bool | None = None):
    """The multi-view test set of ``cfg``: ``(dataset, class_names, source)``. Synthetic data:
    the held-out synthetic videos (one centre view). List files / folders: ``data.test_list``
    (``split="test"``) or ``data.val_list`` with ``views`` = (temporal clips, spatial crops),
    default ``(finetune.test_num_segment, finetune.test_num_crop)``. ``synthetic``: force the
    choice (default: synthetic unless a list file is set, :func:`eval_uses_synthetic`)."""
    d, f = cfg.data, cfg.finetune
    if eval_uses_synthetic(cfg) if synthetic is None else synthetic:
        if split == "train":
            videos = synthetic_videos(d, encode=False)
        else:
            videos = synthetic_videos(d, f.synthetic_val_videos, seed_offset=1, encode=False)
        videos.cache_all()
        ds = SyntheticDataset(videos, num_sample=1, train=False, label=d.synthetic_label)
        return ds, ds.class_names, f"synthetic (seed {videos.seed}, {len(videos)} videos)"
    views = views or (f.test_num_segment, f.test_num_crop)
    # unreadable videos are left out of the scores and listed (evaluate), never fatal here
    ds, names = build_dataset(d, None, train=False, split=split, test_views=tuple(views),
                              max_fail_frac=1.0)
    source = {"train": d.train_list, "val": d.val_list or d.test_list,
              "test": d.test_list or d.val_list}[split]
    return ds, names, source


def eval_uses_synthetic(cfg) -> bool:
    """Synthetic data unless a list (train, val or test) is given (``data.dataset=auto``)."""
    d = cfg.data
    return d.dataset == "synthetic" or (d.dataset == "auto" and not (d.train_list or d.val_list
                                                                      or d.test_list))


def evaluate_checkpoint(checkpoint: str | Path, cfg, *, split: str = "test",
                        out_dir: str | Path | None = None, views: tuple[int, int] | None = None,
                        batch_size: int | None = None, progress: bool = True) -> EvalResult:
    """Load ``checkpoint`` (a classifier) and evaluate it on ``cfg``'s test data (under
    ``torchrun``, the videos are shared out among the ranks)."""
    info, device = init_distributed(cfg.train.device)
    try:
        return _evaluate_checkpoint(checkpoint, cfg, split, out_dir, views, batch_size, progress,
                                    info, device)
    finally:
        cleanup()


def _evaluate_checkpoint(checkpoint, cfg, split, out_dir, views, batch_size, progress, info,
                         device) -> EvalResult:
    model = build_classifier(checkpoint, cfg)
    report = model.load_report
    stored_extra = _stored_extra(checkpoint)
    K = model.head.out_features
    dataset, data_names, source = build_eval_dataset(cfg, split, views)
    check_labels(dataset, K, source if isinstance(source, str) else None, allow_unlabelled=True,
                 what="the checkpoint's head")
    data_k = getattr(dataset, "num_classes", None)
    if data_k and data_k > K and not hasattr(dataset, "entries"):
        raise ValueError(f"the checkpoint's head has {K} classes, the {source} data {data_k}")
    if data_k and data_k != K:
        print(f"[mgmae] note: the checkpoint's head has {K} classes, the data {data_k}")
    names = class_names_for(checkpoint, stored_extra, data_names)
    model.to(device)
    V = views_of(dataset)
    bs = batch_size or max(1, 2 * cfg.finetune.batch_size * max(1, cfg.data.num_sample) // V)
    if info.is_main:
        print(f"[mgmae] evaluating {checkpoint} ({report.source}, {K} classes) on {source}: "
              f"{len(dataset)} videos x {V} views, {info.world_size} process(es) on {device}")
    try:
        return evaluate(model, dataset, batch_size=bs, device=device,
                        num_workers=cfg.train.num_workers,
                        dtype=autocast_dtype(cfg.train.amp, device), out_dir=out_dir,
                        class_names=names, progress=progress, info=info,
                        extra={"checkpoint": str(checkpoint), "data": str(source), "split": split},
                        max_fail_frac=cfg.data.max_fail_frac)
    except FloatingPointError as e:
        raise FloatingPointError(f"{checkpoint}: {e}") from None


def stored_checkpoint(checkpoint: str | Path) -> dict | None:
    """Our checkpoint's top-level dict (config, extra), or None for other formats. A hub id,
    URL or name of the weights table is fetched (or found in its cache) first."""
    from mgmae.convert import resolve_checkpoint

    p = resolve_checkpoint(checkpoint)
    if not p.is_file() or p.suffix == ".safetensors":
        return None
    try:
        return load_checkpoint(p)
    except ValueError:
        return None


def _stored_extra(checkpoint) -> dict | None:
    obj = stored_checkpoint(checkpoint)
    return obj.get("extra") if obj else None


def format_metrics(m: dict[str, Any]) -> str:
    skipped = (f"; {m['num_unreadable']} of {m['num_videos'] + m['num_unreadable']} videos unreadable, "
               f"not scored" if m.get("num_unreadable") else "")
    return (f"top-1 {m['top1']:.2f}%  top-5 {m['top5']:.2f}%  mean class acc "
            f"{m['mean_class_acc']:.2f}%  ({m['num_videos']} videos x {m.get('num_views', 1)} views{skipped})")


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae eval",
        description="Multi-view evaluation of a fine-tuned checkpoint: top-1/top-5, per-class "
                    "accuracy, confusion matrix, predictions CSV.")
    p.add_argument("args", nargs="*", metavar="CHECKPOINT [key=value ...]",
                   help="classifier checkpoint (ours, official fine-tuned .pth, HF dir), then "
                        "key=value overrides, e.g. data.test_list=test.txt (in any order)")
    p.add_argument("-c", "--config", help="YAML recipe (default: the checkpoint's own config)")
    p.add_argument("-o", "--output", help="output folder (default: <checkpoint dir>/eval-<split>)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--views", type=int, nargs=2, metavar=("CLIPS", "CROPS"),
                   help="temporal clips x spatial crops (default: finetune.test_num_segment/crop)")
    p.add_argument("--batch-size", type=int, help="videos per batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common_flags(p)
    return p


@command("eval")
def cli_main(argv: list[str]) -> int:
    """``mgmae eval CHECKPOINT [-c CONFIG] [key=value ...]``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    pos, args.overrides = split_positionals(args.args, 1)
    if not pos:
        parser.error("give the fine-tuned checkpoint to evaluate")
    args.checkpoint = pos[0]
    stored = stored_checkpoint(args.checkpoint)
    check_keys_apply("eval", args.overrides)
    cfg = config_for_checkpoint(args.config, args.overrides, stored.get("config") if stored else None)
    from mgmae.weights import is_reference

    # next to a local checkpoint; in the current folder for a hub id, URL or name (not the cache)
    out = args.output or (f"eval-{args.split}" if is_reference(args.checkpoint)
                          else str(Path(args.checkpoint).parent / f"eval-{args.split}"))
    check_output(out, "the output folder (-o)", directory=True)
    res = evaluate_checkpoint(args.checkpoint, cfg, split=args.split, out_dir=out,
                              views=tuple(args.views) if args.views else None,
                              batch_size=args.batch_size, progress=show_progress(args.quiet))
    if res.files:  # rank 0
        print(f"[mgmae] {format_metrics(res.metrics)}")
        print("[mgmae] wrote:\n" + "".join(f"  {k:<11} {v}\n" for k, v in res.files.items()), end="")
    return 0
