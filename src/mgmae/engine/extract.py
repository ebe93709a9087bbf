"""Feature extraction with a (pre-)trained encoder: ``mgmae extract PRETRAINED VIDEOS -o feats/``.

Features are the encoder's tokens, mean-pooled (then ``fc_norm`` where the checkpoint has one, as
in fine-tuned models), one row per video (the mean over its test views) or, with ``per_view``,
one row per view. The output folder holds::

    features.npy | features.safetensors   (rows, dim) float32 (+ "labels" in safetensors)
    index.csv                              row, path, label[, view]
    meta.json                              encoder, clip size, views, dim, format
    failed.csv                             videos that could not be read (if any)
    per_video/<name>.npz                   with ``window``: ``features`` (num_windows, dim) and
                                           ``starts`` (each window's first frame) per video

With ``window``/``stride`` (temporal action detection, as VideoMAE V2's TAD features) every video
gives one row per sliding window (:func:`mgmae.data.sampling.window_starts`), listed in
``index.csv`` with its ``start`` frame, and the per-video files are written from them.

Extraction is batched and resumable: rows are written in shards (``shards/``) as they are
computed and listed in ``index.csv`` only once their shard is safely on disk; a second run with
the same output folder skips the videos already listed and, at the end, merges everything into
the features file (shards are then removed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from mgmae.commands import (add_common_flags, check_keys_apply, check_output, command, show_progress,
                            split_positionals)
from mgmae.data import SyntheticDataset, build_loader
from mgmae.data.synthetic import synthetic_videos
from mgmae.data.datasets import VideoDataset, VideoEntry, parse_list, scan_folder
from mgmae.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from mgmae.engine.evaluate import check_unreadable, config_for_checkpoint, stored_checkpoint, views_of
from mgmae.engine.loop import autocast_dtype, resolve_device
from mgmae.models.build import build_encoder, is_scratch


__all__ = ["ExtractResult", "extract", "cli_main", "pooled_features",
           "read_features", "video_source"]

SHARD_ROWS = 1024


# ----------------------------------------------------------------------------- features
def pooled_features(model: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` clips -> ``(B, D)`` mean-pooled token features (``fc_norm`` applied when
    the model has one)."""
    tokens = model.forward_features(video)  # [B, N, D]
    feats = tokens.mean(1)  # [B, D]
    fc_norm = getattr(model, "fc_norm", None)
    return fc_norm(feats) if fc_norm is not None else feats


@torch.no_grad()
def iter_features(model: nn.Module, loader, device, num_views: int | None, dtype=None, per_view=False,
                  progress: bool = True, desc: str = "features", dataset=None, chunk: int | None = None):
    """Yield ``(features (b, D) or (b * V, D), labels (b,), indices (b,), batch)`` per batch;
    unreadable videos reported by loader workers are merged into ``dataset`` (default: the
    loader's). ``num_views=None``: one video per batch, all its rows are views (sliding windows);
    ``chunk`` bounds the clips per forward pass."""
    device = torch.device(device)
    model.eval()
    dataset = dataset if dataset is not None else getattr(loader, "dataset", None)
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                      disable=not progress):
        if dataset is not None and hasattr(dataset, "update_failures"):
            dataset.update_failures(batch)
        V = num_views or len(batch["video"])
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            f = torch.cat([pooled_features(model, v.to(device, non_blocking=True)).float()
                           for v in batch["video"].split(chunk or len(batch["video"]))])  # [b*V, D]
        if not per_view:
            f = f.view(-1, V, f.shape[-1]).mean(1)  # [b, D]
        yield (f.cpu().numpy(), torch.as_tensor(batch["label"])[::V].numpy(),
               torch.as_tensor(batch["index"])[::V].numpy(), batch)


# ----------------------------------------------------------------------------- inputs
def video_source(videos: str, cfg, views: tuple[int, int] = (1, 1), window_stride: int | None = None):
    """``(dataset, paths, labels, description)`` for ``videos``: ``"synthetic"``, one video file or
    frame folder, a folder of videos, a folder-per-class tree, or a list file."""
    d = cfg.data
    if videos == "synthetic" and window_stride is not None:
        raise ValueError("sliding windows (--window) need video files or frame folders; the synthetic "
                         "videos are one clip each")
    if videos == "synthetic":
        vids = synthetic_videos(d, encode=False)
        ds = SyntheticDataset(vids, num_sample=1, train=False, label=d.synthetic_label)
        paths = [f"synthetic:{vids.seed}:{i}" for i in range(len(vids))]
        return ds, paths, None, f"synthetic (seed {vids.seed}, {len(vids)} videos)"  # labels: per item
    p = Path(videos)
    if not p.exists():
        raise FileNotFoundError(f"videos not found: {p} (a video, a folder, a list file or 'synthetic')")
    exts = tuple(VIDEO_EXTENSIONS)
    if p.is_file() and p.suffix.lower() in exts:
        entries, what = [VideoEntry(str(p))], "1 video"
    elif p.is_dir():
        files = sorted(e for e in p.iterdir() if e.is_file() and e.suffix.lower() in exts)
        subdirs = [e for e in p.iterdir() if e.is_dir() and not e.name.startswith(".")]
        if files or not subdirs:
            if not files and _is_frame_folder(p):
                entries, what = [VideoEntry(str(p))], "1 frame folder"
            else:
                entries, what = [VideoEntry(str(f)) for f in files], f"folder {p}"
        else:
            entries, _ = scan_folder(p)
            what = f"folder-per-class tree {p}"
    else:
        entries, _ = parse_list(p, root=d.root, fmt=d.list_format)
        what = f"list {p}"
    if not entries:
        raise ValueError(f"{p}: no videos found")
    ds = VideoDataset(entries, num_frames=d.num_frames, sampling_rate=d.sampling_rate,
                      sampling=d.sampling, img_size=d.img_size, train=False,
                      test_views=tuple(views), max_fail_frac=1.0, pad=d.pad,
                      window_stride=window_stride, backend=d.backend, template=d.frame_template,
                      start_index=d.frame_start_index, short_side=d.short_side_size,
                      max_tries=d.max_tries)
    return ds, [e.path for e in entries], [e.label for e in entries], f"{what} ({len(entries)} videos)"


def _is_frame_folder(p: Path) -> bool:
    return any(e.suffix.lower() in IMAGE_EXTENSIONS for e in p.iterdir())


# ----------------------------------------------------------------------------- storage
def _atomic_npy(arr: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_features(out_dir: str | Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    """The merged features and index rows of an extraction folder."""
    out = Path(out_dir)
    rows = _read_index(out / "index.csv")
    if (out / "features.safetensors").is_file():
        feats = load_file(str(out / "features.safetensors"))["features"]
    elif (out / "features.npy").is_file():
        feats = np.load(out / "features.npy")
    else:
        raise FileNotFoundError(f"{out} holds no merged features (features.npy / .safetensors)")
    return feats, rows


def _read_index(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _load_merged(out: Path) -> np.ndarray | None:
    if (out / "features.npy").is_file():
        return np.load(out / "features.npy")
    if (out / "features.safetensors").is_file():
        return load_file(str(out / "features.safetensors"))["features"]
    return None


def _shards(out: Path) -> list[tuple[int, Path]]:
    d = out / "shards"
    if not d.is_dir():
        return []
    return sorted((int(p.stem.split("-")[1]), p) for p in d.glob("shard-*.npy"))


def _stored_rows(out: Path, index_rows: int) -> int:
    """Rows on disk that the index covers: the merged file, then contiguous shards. Shards past
    the index (a crash between writing a shard and its index rows) or already merged are removed."""
    merged = _load_merged(out)
    n = 0 if merged is None else len(merged)
    for start, p in _shards(out):
        m = len(np.load(p, mmap_mode="r"))
        if start != n or start + m > index_rows:
            p.unlink()  # merged already, or (partly) missing from the index
            continue
        n += m
    return n


# ----------------------------------------------------------------------------- the command
@dataclass
class ExtractResult:
    out_dir: str
    features: str  # the merged features file
    index: str
    num_rows: int
    dim: int
    new: int  # videos extracted by this call
    skipped: int  # videos already done by an earlier call
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    padded: list[str] = field(default_factory=list)  # videos shorter than one window (padded)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extract(pretrained: str | Path | None, videos: str, out_dir: str | Path, cfg, *,
            fmt: str = "npy", views: tuple[int, int] = (1, 1), per_view: bool = False,
            batch_size: int | None = None, progress: bool = True,
            stride: int | None = None) -> ExtractResult:
    """Extract features of ``videos`` with the encoder of ``pretrained`` into ``out_dir``
    (resumable; see the module docstring). ``stride``: sliding windows of ``data.num_frames``
    frames (``data.sampling_rate`` apart) every ``stride`` frames, one row each."""
    if fmt not in ("npy", "safetensors"):
        raise ValueError(f"format must be 'npy' or 'safetensors', got {fmt!r}")
    windows = stride is not None
    if windows and (tuple(views) != (1, 1) or per_view):
        raise ValueError("views and per_view do not apply to sliding windows (one row per window)")
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset, paths, labels, what = video_source(videos, cfg, views, stride)
    V = views_of(dataset)
    meta = {"pretrained": str(pretrained), "videos": str(videos), "num_frames": cfg.data.num_frames,
            "img_size": cfg.data.img_size, "sampling": cfg.data.sampling,
            "sampling_rate": cfg.data.sampling_rate, "views": list(views), "per_view": per_view,
            "pooling": "mean of tokens (+ fc_norm)"}
    if windows:  # (not in older folders' meta.json: absent = no windows)
        meta.update(sampling="windows", stride=stride, pad=cfg.data.pad)
    column = "start" if windows else "view" if per_view else None
    meta_path = out / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        diff = [k for k in meta if k not in ("videos",) and old.get(k) != meta[k]]
        if diff:
            raise ValueError(f"{out} holds features made with other settings ({', '.join(diff)}: "
                             f"{[old.get(k) for k in diff]} vs {[meta[k] for k in diff]}); use "
                             f"another output folder")
    index_path = out / "index.csv"
    index = _read_index(index_path)
    n_stored = _stored_rows(out, len(index))
    if n_stored < len(index):  # index rows whose features are gone: forget them
        index = index[:n_stored]
        _write_index(index_path, index, column)
    rows_per_video = V if per_view else 1  # (windows: at least one)
    done: dict[str, int] = {}
    for r in index:
        done[r["path"]] = done.get(r["path"], 0) + 1
    failed_path = out / "failed.csv"
    failed_before = {r["path"] for r in _read_index(failed_path)}
    todo = [i for i, p in enumerate(paths)
            if done.get(p, 0) < rows_per_video and p not in failed_before]
    skipped = len(paths) - len(todo)

    device = resolve_device(cfg.train.device)
    model = build_encoder(pretrained, cfg).to(device)
    dtype = autocast_dtype(cfg.train.amp, device)
    views_said = (f"windows of {cfg.data.num_frames} frames (rate {cfg.data.sampling_rate}) starting every "
                  f"{stride} frames" if windows else f"{V} views")
    print(f"[mgmae] extracting {what}: {len(todo)} to do, {skipped} already done; "
          f"{views_said} per video, device {device} -> {out}")

    new, failed, padded = 0, [], []
    dim = None
    if todo:
        subset = torch.utils.data.Subset(dataset, todo)
        bs = 1 if windows else batch_size or max(1, 2 * cfg.finetune.batch_size // V)
        loader = build_loader(subset, bs, num_workers=cfg.train.num_workers, shuffle=False,
                              drop_last=False, pin_memory=device.type == "cuda")
        buf_f, buf_rows = [], []
        pos = 0
        (out / "shards").mkdir(exist_ok=True)
        with failed_path.open("a", newline="") as ff:
            fw = csv.writer(ff)
            if not failed_before and failed_path.stat().st_size == 0:
                fw.writerow(["path", "reason"])
            for feats, labs, idx, batch in iter_features(
                    model, loader, device, None if windows else V, dtype, per_view or windows, progress,
                    desc="extract", dataset=dataset,
                    chunk=(batch_size or 2 * cfg.finetune.batch_size) if windows else None):
                dim = feats.shape[-1]
                b = len(idx)
                want = todo[pos:pos + b]
                pos += b
                feats = feats.reshape(b, -1, dim)
                extra = batch["starts"][0] if windows else range(feats.shape[1])
                for k in range(b):
                    i = want[k]
                    if int(idx[k]) != i:  # the dataset substituted an unreadable video
                        reason = getattr(dataset, "failures", {}).get(paths[i], "unreadable")
                        fw.writerow([paths[i], reason])
                        failed.append(paths[i])
                        continue
                    label = int(labs[k]) if labels is None else int(labels[i])
                    for v in range(feats.shape[1]):
                        buf_f.append(feats[k, v])
                        buf_rows.append((paths[i], label, extra[v]))
                    if windows and bool(batch["padded"][0]):
                        padded.append(paths[i])
                    new += 1
                if len(buf_rows) >= SHARD_ROWS:
                    n_stored = _flush(out, buf_f, buf_rows, n_stored, index_path, column)
                    buf_f, buf_rows = [], []
                    ff.flush()
            if buf_rows:
                n_stored = _flush(out, buf_f, buf_rows, n_stored, index_path, column)
    merged = _merge(out, fmt, meta)
    if windows:
        _per_video(out, merged)
    meta.update(dim=int(merged.shape[1]) if merged.ndim == 2 else dim, rows=int(len(merged)),
                format=fmt)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    res = ExtractResult(str(out), str(out / f"features.{fmt}"), str(index_path), int(len(merged)),
                        int(meta["dim"] or 0), new, skipped, failed, round(time.time() - t0, 1), padded)
    print(f"[mgmae] {new} videos extracted, {skipped} skipped (done before), {len(failed)} "
          f"unreadable; {res.num_rows} rows x {res.dim} in {res.features}, index {res.index}")
    if padded:
        print(f"[mgmae] {len(padded)} videos shorter than one window (e.g. {padded[0]}): one window "
              f"each, padded as data.pad={cfg.data.pad}")
    check_unreadable(failed, len(todo), cfg.data.max_fail_frac, getattr(dataset, "failures", {}),
                     f"so the extraction is incomplete (the {new} readable ones are kept in {out}, "
                     f"the failures listed in {failed_path.name})")
    return res


def _write_index(path: Path, rows: list[dict[str, str]], column: str | None) -> None:
    """``column``: the index's fourth column, ``view`` (per_view), ``start`` (windows) or None."""
    tmp = path.with_name(".index.csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "path", "label"] + ([column] if column else []))
        for r in rows:
            w.writerow([r["row"], r["path"], r["label"]] + ([r[column]] if column else []))
    os.replace(tmp, path)


def _flush(out: Path, feats: list, rows: list, start: int, index_path: Path, column: str | None) -> int:
    """Write one shard (atomically), then append its rows to the index."""
    _atomic_npy(np.stack(feats).astype(np.float32), out / "shards" / f"shard-{start:010d}.npy")
    new_file = not index_path.is_file()
    with index_path.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new_file:
            w.writerow(["row", "path", "label"] + ([column] if column else []))
        for k, (p, label, v) in enumerate(rows):
            w.writerow([start + k, p, label] + ([v] if column else []))
        fh.flush()
        os.fsync(fh.fileno())
    return start + len(rows)


def _merge(out: Path, fmt: str, meta: dict) -> np.ndarray:
    """Merge the features file and the shards into ``features.<fmt>``; remove the shards."""
    parts = []
    merged = _load_merged(out)
    if merged is not None:
        parts.append(merged)
    shards = _shards(out)
    parts += [np.load(p) for _, p in shards]
    feats = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    index = _read_index(out / "index.csv")
    if len(feats) != len(index):
        raise RuntimeError(f"{out}: {len(feats)} feature rows but {len(index)} index rows")
    if fmt == "npy":
        _atomic_npy(feats, out / "features.npy")
        (out / "features.safetensors").unlink(missing_ok=True)
    else:
        labels = np.array([int(r["label"]) for r in index], dtype=np.int64)
        tmp = out / ".features.safetensors.tmp"
        save_file({"features": np.ascontiguousarray(feats), "labels": labels}, str(tmp),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
        os.replace(tmp, out / "features.safetensors")
        (out / "features.npy").unlink(missing_ok=True)
    for _, p in shards:
        p.unlink()
    if (out / "shards").is_dir() and not any((out / "shards").iterdir()):
        (out / "shards").rmdir()
    return feats


def _per_video(out: Path, feats: np.ndarray) -> None:
    """``per_video/<name>.npz`` (``features`` (num_windows, dim), ``starts``) for each video of the
    index that has none yet; ``<name>``: the file or folder name, ``-<k>`` added where two clash."""
    rows: dict[str, list[int]] = {}
    index = _read_index(out / "index.csv")
    for r in index:
        rows.setdefault(r["path"], []).append(int(r["row"]))
    starts = np.array([int(r["start"]) for r in index], np.int64)
    d = out / "per_video"
    d.mkdir(exist_ok=True)
    seen: dict[str, int] = {}
    for k, (path, rs) in enumerate(rows.items()):
        name = Path(path).stem
        seen[name] = seen.get(name, 0) + 1
        target = d / (f"{name}.npz" if seen[name] == 1 else f"{name}-{k}.npz")
        if target.is_file():
            continue
        tmp = d / f".{target.name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, features=feats[rs], starts=starts[rs])
        os.replace(tmp, target)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae extract",
        description="Extract mean-pooled encoder features of videos (resumable).")
    p.add_argument("args", nargs="*", metavar="PRETRAINED VIDEOS [key=value ...]",
                   help="checkpoint (or 'scratch'), then a video / folder / list file / "
                        "'synthetic', then config overrides (data.num_frames=16 ...)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-c", "--config", help="YAML recipe for the data settings")
    p.add_argument("--format", choices=("npy", "safetensors"), default="npy")
    p.add_argument("--views", type=int, nargs=2, metavar=("CLIPS", "CROPS"),
                   help="temporal clips x spatial crops per video (default 1 1)")
    p.add_argument("--per-view", action="store_true", help="one row per view instead of their mean")
    p.add_argument("--batch-size", type=int, help="videos per batch (--window: windows per forward pass)")
    p.add_argument("--window", type=int, metavar="FRAMES",
                   help="sliding windows of FRAMES frames, one row each (temporal action detection); "
                        "consecutive frames unless data.sampling_rate=N is given")
    p.add_argument("--stride", type=int, metavar="FRAMES",
                   help="with --window: a window starts every FRAMES frames (default: window // 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common_flags(p)
    return p


@command("extract")
def cli_main(argv: list[str]) -> int:
    """``mgmae extract PRETRAINED VIDEOS -o OUT [key=value ...]``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    pos, overrides = split_positionals(args.args, 2)
    check_keys_apply("extract", overrides)
    if len(pos) < 2:
        parser.error("give PRETRAINED (a checkpoint or 'scratch') and VIDEOS (a video, a folder, "
                     "a list file or 'synthetic')")

    if args.window is None and args.stride is not None:
        parser.error("--stride needs --window (the window length in frames)")
    if args.window is not None:
        for flag, v in (("--window", args.window), ("--stride", args.stride)):
            if v is not None and v < 1:
                parser.error(f"{flag} must be >= 1 (frames), got {v}")
        if args.views is not None or args.per_view:
            parser.error("--views and --per-view do not apply with --window (one row per window)")
        rate = [o for o in overrides if o.startswith("data.sampling_rate=")]
        overrides = [*overrides, f"data.num_frames={args.window}"] + ([] if rate else ["data.sampling_rate=1"])
    check_output(args.output, "the output folder (-o)", directory=True)
    stored = None if is_scratch(pos[0]) else stored_checkpoint(pos[0])  # ours know their clips
    cfg = config_for_checkpoint(args.config, overrides, stored.get("config") if stored else None)
    stride = None if args.window is None else args.stride or max(1, args.window // 4)
    extract(pos[0], pos[1], args.output, cfg, fmt=args.format, views=tuple(args.views or (1, 1)),
            per_view=args.per_view, batch_size=args.batch_size, progress=show_progress(args.quiet), stride=stride)
    return 0
