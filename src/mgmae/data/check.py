"""``mgmae data check LIST``: scan a dataset before training on it.

Every entry of a list file (or folder-per-class tree) is opened with the same reader the training
uses; its first and last frames are decoded (``--full``: every frame), frame folders are checked
for missing images. Bad files (missing, unreadable, truncated, shorter than ``--min-frames``, by
default the frames one clip spans: ``(data.num_frames - 1) * data.sampling_rate + 1`` for dense
sampling, ``data.num_frames`` for segment sampling) are listed with the reason; frame counts, durations,
frame rates and resolutions are summarised.
Exit status 1 when any file is bad, 2 when the list itself cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from mgmae.commands import (add_common_flags, add_config_args, check_output, command, show_progress,
                            split_positionals)
from mgmae.data.datasets import VideoEntry, load_entries
from mgmae.data.video import FrameFolderReader, PyAVReader, VideoError, open_video

__all__ = ["check_video", "check_dataset", "format_report", "cli_main"]


def check_video(entry: VideoEntry | str, backend: str = "pyav", min_frames: int = 16,
                full: bool = False, template: str = "img_{:05d}.jpg", start_index: int = 1) -> dict:
    """One video: ``{"path", "ok", "reason", "num_frames", "fps", "height", "width", "duration"}``."""
    if not isinstance(entry, VideoEntry):
        entry = VideoEntry(os.fspath(entry))
    res = {"path": entry.path, "ok": False, "reason": None, "num_frames": None, "fps": None,
           "height": None, "width": None, "duration": None}
    try:
        with open_video(entry.path, backend, template=template, start_index=start_index,
                        num_frames=entry.num_frames) as v:
            res.update(num_frames=v.num_frames, fps=v.fps, height=v.height, width=v.width,
                       duration=v.duration)
            if isinstance(v, FrameFolderReader):
                _check_frame_files(v)
            if full and isinstance(v, PyAVReader):
                n, err = v.scan()
                if err or n < v.declared_frames:
                    raise VideoError(v.path, f"truncated: {n} of {v.declared_frames} frames decode"
                                     + (f" ({err})" if err else ""))
                res["num_frames"] = n
            elif full:
                for s in range(0, v.num_frames, 64):
                    v.get_frames(range(s, min(s + 64, v.num_frames)))
            else:
                v.get_frames([0, v.num_frames - 1])
            res["num_frames"] = v.num_frames
    except VideoError as e:
        res["reason"] = e.reason
        return res
    except (OSError, IndexError) as e:
        res["reason"] = f"{type(e).__name__}: {e}"
        return res
    if res["num_frames"] < min_frames:
        res["reason"] = f"too short: {res['num_frames']} frames < --min-frames {min_frames}"
        return res
    res["ok"] = True
    return res


def _check_frame_files(v: FrameFolderReader) -> None:
    present = set(os.listdir(v.path))
    for i in range(v.num_frames):
        name = v.template.format(i + v.start_index)
        if name not in present:
            raise VideoError(v.path, f"missing frame {os.path.join(v.path, name)}")


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values),
            "mean": sum(values) / len(values), "max": max(values)}


def _check_one(args):
    return check_video(*args)


def check_dataset(list_or_folder, root: str | None = None, backend: str = "pyav",
                  min_frames: int = 16, *, full: bool = False, workers: int = 1,
                  progress: bool = True, template: str = "img_{:05d}.jpg",
                  start_index: int = 1, list_format: str = "auto") -> dict:
    """Scan every entry (progress bar on stderr). Returns a JSON-able report: ``num_videos``,
    ``num_ok``, ``num_bad``, ``bad`` (``[{"path", "reason"}]``), summary stats of ``num_frames``
    and ``duration`` (min/median/mean/max), ``fps`` and ``resolutions`` (``"WxH"``) counts, label
    counts, ``list_format`` (the list file's format, see :func:`mgmae.data.datasets.parse_list`)
    and ``videos`` (one result per entry, see :func:`check_video`)."""
    from tqdm import tqdm

    info: dict = {}
    entries, class_names = load_entries(list_or_folder, root=root, fmt=list_format, info=info)
    jobs = [(e, backend, min_frames, full, template, start_index if e.start is None else e.start)
            for e in entries]
    bar = dict(total=len(jobs), desc="checking videos", unit="video", disable=not progress,
               file=sys.stderr)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            results = list(tqdm(ex.map(_check_one, jobs, chunksize=8), **bar))
    else:
        results = [_check_one(j) for j in tqdm(jobs, **bar)]
    ok = [r for r in results if r["ok"]]
    measured = [r for r in results if r["num_frames"] is not None]
    labels = Counter(e.label for e in entries if e.label >= 0)
    return {
        "source": os.fspath(list_or_folder),
        "list_format": info["format"] + (" (inferred)" if info["inferred"] else ""),
        "backend": backend,
        "min_frames": min_frames,
        "num_videos": len(results),
        "num_ok": len(ok),
        "num_bad": len(results) - len(ok),
        "bad": [{"path": r["path"], "reason": r["reason"]} for r in results if not r["ok"]],
        "num_frames": _stats([r["num_frames"] for r in measured]),
        "duration": _stats([r["duration"] for r in measured if r["duration"]]),
        "fps": {f"{k:g}": v for k, v in Counter(round(r["fps"], 3) for r in measured
                                                 if r["fps"]).most_common()},
        "resolutions": dict(Counter(f"{r['width']}x{r['height']}" for r in measured).most_common()),
        "labels": {"num_labelled": sum(labels.values()), "num_classes": len(labels),
                   "min_per_class": min(labels.values()) if labels else None,
                   "max_per_class": max(labels.values()) if labels else None,
                   "class_names": class_names},
        "videos": results,
    }


def format_report(rep: dict, max_bad: int = 50) -> str:
    """A human-readable report of :func:`check_dataset`'s result."""
    def fmt(s, unit="", nd=1):
        if not s:
            return "n/a"
        return "  ".join(f"{k} {v:.{nd}f}{unit}" if isinstance(v, float) else f"{k} {v}{unit}"
                         for k, v in s.items())

    def top(d, k=5):
        items = list(d.items())
        more = f", ... ({len(items) - k} more)" if len(items) > k else ""
        return ", ".join(f"{key} ({n})" for key, n in items[:k]) + more or "n/a"

    lines = [f"{rep['source']}: {rep['num_videos']} videos, backend {rep['backend']}",
             f"  list format {rep.get('list_format', 'n/a')}",
             f"  frames      {fmt(rep['num_frames'])}",
             f"  duration    {fmt(rep['duration'], 's', 2)}",
             f"  fps         {top(rep['fps'])}",
             f"  resolution  {top(rep['resolutions'])}"]
    lab = rep["labels"]
    if lab["num_labelled"]:
        lines.append(f"  labels      {lab['num_classes']} classes, {lab['min_per_class']}.."
                     f"{lab['max_per_class']} videos per class")
    if rep["num_bad"]:
        frac = rep["num_bad"] / max(rep["num_videos"], 1)
        lines.append(f"  BAD: {rep['num_bad']} of {rep['num_videos']} ({frac:.2%})")
        for b in rep["bad"][:max_bad]:
            lines.append(f"    {b['path']}: {b['reason']}")
        if rep["num_bad"] > max_bad:
            lines.append(f"    ... and {rep['num_bad'] - max_bad} more (--json for all)")
    else:
        lines.append(f"  all {rep['num_videos']} videos readable with >= {rep['min_frames']} frames")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mgmae data check", description=__doc__.split("\n\n")[0])
    add_config_args(ap, positionals="LIST")
    ap.add_argument("--root", default=None, help="alias of data.root=R: prepended to relative "
                                                 "paths in the list")
    ap.add_argument("--backend", default=None, choices=("pyav", "torchcodec", "decord", "frames"),
                    help="alias of data.backend")
    ap.add_argument("--min-frames", type=int, default=None,
                    help="shorter videos count as bad (default: the frames one clip spans, "
                         "(data.num_frames - 1) x data.sampling_rate + 1; data.num_frames for "
                         "segment sampling)")
    ap.add_argument("--full", action="store_true", help="decode every frame (slow, thorough)")
    ap.add_argument("--workers", type=int, default=1, help="parallel processes")
    ap.add_argument("--template", default=None, help="alias of data.frame_template (frame folder file names)")
    ap.add_argument("--start-index", type=int, default=None,
                    help="alias of data.frame_start_index (number of the first frame image)")
    ap.add_argument("--json", default=None, help="write the full report (every video) here")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common_flags(ap, checkpoints=False)
    return ap


@command("data check")
def cli_main(argv: list[str]) -> int:
    """``mgmae data check [LIST] [-c CONFIG] [key=value ...] [--min-frames N] [--json out.json] ...``;
    returns the exit status (0 all good, 1 bad files, 2 the list cannot be read). Like every
    command it reads a config: ``data.root`` (``--root`` is an alias), ``data.num_frames``,
    ``data.sampling_rate`` and ``data.sampling`` (the default of ``--min-frames``: the frames one
    clip spans) and, without ``LIST``, ``data.train_list``."""
    from mgmae.config import load_config

    args = build_parser().parse_intermixed_args(argv)
    pos, overrides = split_positionals(args.args, 1)
    cfg = load_config(args.config, overrides)
    for flag, key in (("root", "root"), ("backend", "backend"), ("template", "frame_template"),
                      ("start_index", "frame_start_index")):
        if getattr(args, flag) is not None:  # the old flags: aliases of data.* keys (a flag wins)
            setattr(cfg.data, key, getattr(args, flag))
    source = pos[0] if pos else cfg.data.train_list
    if not source:
        raise ValueError("give the list to check (mgmae data check LIST) or set data.train_list")
    from mgmae.data.sampling import frames_needed

    d = cfg.data
    min_frames = (frames_needed(d.num_frames, d.sampling_rate, d.sampling) if args.min_frames is None
                  else args.min_frames)
    if args.json:
        check_output(args.json, "--json", directory=False)
    rep = check_dataset(source, root=cfg.data.root, backend=cfg.data.backend, min_frames=min_frames,
                        full=args.full, workers=args.workers, progress=show_progress(args.quiet),
                        template=cfg.data.frame_template, start_index=cfg.data.frame_start_index,
                        list_format=cfg.data.list_format)
    print(format_report(rep))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
        print(f"report written to {args.json}")
    return 1 if rep["num_bad"] else 0


if __name__ == "__main__":
    sys.exit(cli_main())
