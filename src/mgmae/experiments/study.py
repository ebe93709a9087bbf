"""``mgmae study``: a reproducible small-scale study of masking strategies on the synthetic videos.

::

    mgmae study -c configs/study_small.yaml [--quick] [--out docs/experiments.md] [--seeds N]
                [--output-dir runs/study] [--report-only]

For every strategy of the recipe (random, tube, motion-guided with ground-truth / DIS flow,
motion-guided with the official code's flow direction before the base frame) and every seed, the
same tiny ViT MAE is pre-trained for the same number of steps (:func:`mgmae.engine.pretrain.pretrain`).
Then every encoder, and a randomly initialised one per seed ("from scratch"), is evaluated on the
held-out synthetic videos by

* a linear probe on frozen, mean-pooled features (:func:`mgmae.engine.linprobe.train_probe`), on the
  motion-defined labels and on the appearance-defined labels (one feature pass serves both);
* short fine-tuning (:func:`mgmae.engine.finetune.finetune`) on each label set;

and every masker by

* the tracking rate (:func:`mgmae.masking.metrics.tracking_rate`, ground-truth flow): the share of
  visible cubes whose scene point stays under a visible cube in the other temporal slices, on
  moving objects and everywhere;
* the reconstruction loss: at the end of pre-training (mean of the last logged steps) and, on fixed
  held-out clips, of every pre-trained model under every strategy's masks (same model, different
  masks: which masks are harder to reconstruct).

The recipe may also list ablations (one key of a reference strategy changed at a time). Everything
is written to a Markdown report (tables with mean ± std over seeds, the command, the machine, wall
times, plots, mask GIFs).

Every run is cached under ``<output_dir>/<name>/`` and named by a hash of the settings that
decide its result, so an interrupted study continues where it stopped (pre-training runs resume
from their last checkpoint) and a changed setting gives new runs instead of stale numbers.
Seeds are ``0 .. N-1``, fixed before anything runs; every run of every seed is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mgmae.commands import add_common_flags, command
from mgmae.config import Config, apply_overrides, flatten, load_config, validate
from mgmae.serialization import torch_load

__all__ = ["Plan", "Study", "load_plan", "cli_main", "build_parser", "mean_std"]

LABELS = ("motion", "appearance")
NUM_CLASSES = {"motion": 8, "appearance": 4}  # mgmae.data.synthetic MOTION_CLASSES / APPEARANCE_CLASSES
SCRATCH = "scratch"
# keys that do not change a run's result (left out of the cache hash)
_NO_HASH = ("train.output_dir", "train.run_name", "train.num_workers", "train.tensorboard",
            "train.log_every", "train.vis_clips", "train.resume", "train.save_every_steps",
            "train.save_every_epochs", "train.keep_last")


# ============================================================================ the plan
@dataclass
class Strategy:
    name: str  # identifier (run names, file names)
    label: str  # shown in tables
    overrides: dict[str, Any]  # dotted config keys on top of the base config
    note: str = ""


@dataclass
class Ablation:
    group: str  # e.g. "base_frame"
    title: str  # e.g. "base frame"
    reference: str  # label of the reference row (the reference strategy's own setting)
    variants: list[Strategy]


@dataclass
class Plan:
    """Everything a study does, resolved from the YAML recipe (``study:`` plus ``--quick``'s
    ``quick:`` block and command-line options)."""

    name: str
    mode: str  # "full" | "quick"
    base: dict[str, Any]  # dotted overrides shared by every run
    seeds: list[int]
    pretrain_steps: int
    strategies: list[Strategy]
    finetune_steps: int
    eval_videos: int  # held-out synthetic videos (seed data.synthetic_seed + 1) for LP / FT accuracy
    mask_clips: int  # held-out clips for the tracking rate and the held-out reconstruction loss
    loss_tail: int  # the last N logged steps give "loss at the end of pre-training"
    ablation_reference: str | None = None
    ablation_seeds: list[int] = field(default_factory=list)
    ablations: list[Ablation] = field(default_factory=list)
    output_dir: str = "runs/study"
    labels: tuple[str, ...] = LABELS
    finetune_overrides: dict[str, Any] = field(default_factory=dict)  # keys for the FT runs only
    example_clip: int | None = None  # mask clip drawn in the pictures (None: its main object moves fastest)
    ablation_finetune: bool = True  # also fine-tune the ablation encoders (else: linear probe only)
    threads: int | None = None  # torch threads of the study process (None: cores - loader workers)

    def config(self, *overrides: dict[str, Any]) -> Config:
        cfg = load_config(None)
        apply_overrides(cfg, self.base)
        for o in overrides:
            apply_overrides(cfg, o)
        validate(cfg)
        return cfg

    def strategy(self, name: str) -> Strategy:
        for s in self.strategies:
            if s.name == name:
                return s
        raise KeyError(f"no strategy named {name!r} (have: {', '.join(s.name for s in self.strategies)})")


def _strategies(raw: dict[str, Any], where: str) -> list[Strategy]:
    out = []
    for name, spec in (raw or {}).items():
        if not isinstance(spec, dict):
            raise ValueError(f"{where}.{name}: expected a mapping with 'set' (config keys), got {spec!r}")
        unknown = set(spec) - {"label", "set", "note"}
        if unknown:
            raise ValueError(f"{where}.{name}: unknown field(s) {sorted(unknown)}; use label, set, note")
        out.append(Strategy(str(name), str(spec.get("label", name)), flatten(spec.get("set") or {}),
                            str(spec.get("note", ""))))
    return out


_STUDY_KEYS = {"name", "seeds", "pretrain_steps", "strategies", "finetune_steps", "eval_videos",
               "mask_clips", "loss_tail", "ablation_reference", "ablation_seeds", "ablations",
               "output_dir", "labels", "finetune", "example_clip", "ablation_finetune", "threads"}


def load_plan(path: str | Path, *, quick: bool = False, seeds: int | None = None,
              output_dir: str | None = None) -> Plan:
    """Read a study recipe: ``base:`` (an mgmae config, nested or dotted keys), ``study:`` (what
    to run) and ``quick:`` (``base``/``study`` entries that ``--quick`` replaces)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"study recipe not found: {p}")
    raw = yaml.safe_load(p.read_text()) or {}
    unknown = set(raw) - {"base", "study", "quick"}
    if unknown:
        raise ValueError(f"{p}: unknown top-level section(s) {sorted(unknown)}; use base, study, quick")
    base = flatten(raw.get("base") or {})
    study = dict(raw.get("study") or {})
    if quick:
        q = raw.get("quick") or {}
        base.update(flatten(q.get("base") or {}))
        study.update(q.get("study") or {})
    bad = set(study) - _STUDY_KEYS
    if bad:
        raise ValueError(f"{p}: unknown study key(s) {sorted(bad)}; allowed: {', '.join(sorted(_STUDY_KEYS))}")
    n_seeds = int(seeds if seeds is not None else study.get("seeds", 3))
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    ablations = []
    for group, spec in (study.get("ablations") or {}).items():
        ablations.append(Ablation(str(group), str(spec.get("title", group)), str(spec.get("reference", "reference")),
                                  _strategies(spec.get("variants") or {}, f"ablations.{group}.variants")))
    n_abl = min(int(study.get("ablation_seeds", n_seeds)), n_seeds)
    plan = Plan(
        name=str(study.get("name", p.stem)) + ("-quick" if quick else ""),
        mode="quick" if quick else "full",
        base=base,
        seeds=list(range(n_seeds)),
        pretrain_steps=int(study.get("pretrain_steps", 200)),
        strategies=_strategies(study.get("strategies") or {}, "study.strategies"),
        finetune_steps=int(study.get("finetune_steps", 64)),
        eval_videos=int(study.get("eval_videos", 256)),
        mask_clips=int(study.get("mask_clips", 32)),
        loss_tail=int(study.get("loss_tail", 20)),
        ablation_reference=study.get("ablation_reference"),
        ablation_seeds=list(range(n_abl)),
        ablations=[a for a in ablations if a.variants],
        output_dir=str(output_dir or study.get("output_dir", "runs/study")),
        labels=tuple(study.get("labels", LABELS)),
        finetune_overrides=flatten(study.get("finetune") or {}),
        example_clip=None if study.get("example_clip") is None else int(study["example_clip"]),
        ablation_finetune=bool(study.get("ablation_finetune", True)),
        threads=None if study.get("threads") is None else int(study["threads"]),
    )
    if not plan.strategies:
        raise ValueError(f"{p}: study.strategies is empty")
    for lab in plan.labels:
        if lab not in LABELS:
            raise ValueError(f"study.labels: {lab!r} is not one of {LABELS}")
    if plan.ablations:
        if plan.ablation_reference is None:
            raise ValueError(f"{p}: ablations need study.ablation_reference (a strategy name)")
        plan.strategy(plan.ablation_reference)
    # fail early on a bad key anywhere (not after an hour of runs)
    plan.config()
    for s in plan.strategies:
        plan.config(s.overrides)
    for a in plan.ablations:
        for v in a.variants:
            plan.config(plan.strategy(plan.ablation_reference).overrides, v.overrides)
    plan.config(plan.finetune_overrides)
    if plan.example_clip is not None and not 0 <= plan.example_clip < plan.mask_clips:
        raise ValueError(f"study.example_clip={plan.example_clip} must be < mask_clips={plan.mask_clips}")
    return plan


# ============================================================================ helpers
def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


# Config keys added after studies were cached, with the value that reproduces the behaviour from
# before: hashed only when set to something else, so a new key does not invalidate cached runs.
_HASH_UNLESS = {"model.pos_embed": "sincos_1d"}


def _hashed_keys(cfg: Config) -> dict[str, Any]:
    """The flattened config entries that identify a run (see ``_NO_HASH``, ``_HASH_UNLESS``)."""
    return {k: v for k, v in flatten(cfg.to_dict()).items()
            if k not in _NO_HASH and not (k in _HASH_UNLESS and v == _HASH_UNLESS[k])}


def _cfg_hash(cfg: Config, *extra: Any) -> str:
    return _hash([_hashed_keys(cfg), *extra])


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value), count; NaNs dropped."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan"), 0
    m = float(np.mean(v))
    s = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return m, s, len(v)


def _fmt(values: list[float], digits: int = 1, scale: float = 1.0) -> str:
    m, s, n = mean_std([None if x is None else x * scale for x in values])
    if n == 0:
        return "–"
    if n == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu or "unknown", "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gib": mem, "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform()}


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@contextlib.contextmanager
def _quiet(log_path: Path):
    """Send an engine's console output (prints, progress bars) to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_loss_curve(log_path: Path) -> list[float]:
    """Per-step training loss from a pre-training ``log.jsonl`` (the last record of each step
    wins, so a resumed run's repeated steps count once; skipped updates are left out)."""
    by_step: dict[int, float] = {}
    for line in log_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "step" in rec and "loss" in rec and not rec.get("skipped_update"):
            by_step[int(rec["step"])] = float(rec["loss"])
    return [by_step[k] for k in sorted(by_step)]


# ============================================================================ held-out data
@dataclass
class EvalData:
    """Centre views of the probe's training videos and of the held-out videos, rendered once."""

    train_x: torch.Tensor  # [N, C, T, H, W]
    train_y: dict[str, np.ndarray]  # label kind -> (N,)
    eval_x: torch.Tensor
    eval_y: dict[str, np.ndarray]


def _render(videos) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    from mgmae.data import SyntheticDataset

    ds = SyntheticDataset(videos, num_sample=1, train=False)
    xs, ys = [], {k: [] for k in LABELS}
    for i in range(len(ds)):
        item = ds[i]
        xs.append(item["video"][0])
        for k in LABELS:
            ys[k].append(item[f"{k}_label"])
    return torch.stack(xs), {k: np.asarray(v, dtype=np.int64) for k, v in ys.items()}


@torch.no_grad()
def _features(encoder, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    from mgmae.engine.extract import pooled_features

    encoder.eval()
    return torch.cat([pooled_features(encoder, x[i:i + batch]).float()
                      for i in range(0, len(x), batch)]).numpy()


@torch.no_grad()
def _logits(model, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i:i + batch]).float() for i in range(0, len(x), batch)]).numpy()


# ============================================================================ the study
class MissingRun(RuntimeError):
    """``--report-only`` and a result is not in the cache."""


class Study:
    """Runs (or reads from the cache) every piece of a :class:`Plan`; :meth:`report` writes the
    Markdown file and the pictures."""

    def __init__(self, plan: Plan, *, log=print, cache_only: bool = False):
        self.plan = plan
        self.cache_only = cache_only  # raise MissingRun instead of computing
        self.root = Path(plan.output_dir) / plan.name
        self.results = self.root / "results"
        self.logs = self.root / "logs"
        self.log = log
        self._eval: EvalData | None = None
        self._mask_items: dict[str, Any] = {}
        self._mask_x: torch.Tensor | None = None
        self.computed_seconds = 0.0  # work done by this invocation
        self.done = 0
        self.total = 0

    # ------------------------------------------------------------------ configs
    def strategy_cfg(self, strategy: Strategy, seed: int, ablation: Strategy | None = None) -> Config:
        p = self.plan
        parts = [strategy.overrides] + ([ablation.overrides] if ablation else [])
        cfg = p.config(*parts)
        cfg.train.seed = seed
        cfg.train.max_steps = p.pretrain_steps
        return cfg

    def encoder_runs(self) -> list[tuple[str, Strategy, Strategy | None, int]]:
        """``(kind, strategy, ablation variant or None, seed)`` for every pre-training run."""
        p = self.plan
        runs = [("main", s, None, seed) for seed in p.seeds for s in p.strategies]
        if p.ablations:
            ref = p.strategy(p.ablation_reference)
            for seed in p.ablation_seeds:
                for a in p.ablations:
                    for v in a.variants:
                        runs.append(("ablation", ref, v, seed))
        return runs

    def pretrain_key(self, strategy: Strategy, seed: int, ablation: Strategy | None = None) -> str:
        cfg = self.strategy_cfg(strategy, seed, ablation)
        name = strategy.name + (f"+{ablation.name}" if ablation else "")
        return f"pt-{name}-s{seed}-{_cfg_hash(cfg)}"

    def masker_name(self, strategy: Strategy, ablation: Strategy | None = None) -> str:
        return strategy.name + (f"+{ablation.name}" if ablation else "")

    def _need(self, key: str) -> None:
        if self.cache_only:
            raise MissingRun(f"{key} is not in the cache {self.results}; run the study without --report-only")

    def _cached(self, key: str, compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The record ``results/<key>.json``, computed by ``compute()`` (timed into its
        ``seconds``) and stored when it is not there yet; returns ``(record, was_cached)``."""
        path = self.results / f"{key}.json"
        rec = _read_json(path)
        if rec is not None:
            return rec, True
        self._need(key)
        t0 = time.time()
        rec = compute()
        rec["seconds"] = round(time.time() - t0, 1)
        _write_json(path, rec)
        self.computed_seconds += rec["seconds"]
        return rec, False

    # ------------------------------------------------------------------ progress
    def _step(self, what: str, seconds: float, cached: bool, extra: str = "") -> None:
        self.done += 1
        tag = "cached" if cached else f"{seconds:.0f} s"
        self.log(f"[study] ({self.done}/{self.total}) {what}: {extra}{' ' if extra else ''}({tag})")
        sys.stdout.flush()

    # ------------------------------------------------------------------ data
    def eval_data(self) -> EvalData:
        if self._eval is None:
            from mgmae.data import SyntheticVideos

            cfg = self.plan.config()
            d = cfg.data
            tr = SyntheticVideos(d.synthetic_videos, d.num_frames, d.img_size, seed=d.synthetic_seed)
            ev = SyntheticVideos(self.plan.eval_videos, d.num_frames, d.img_size, seed=d.synthetic_seed + 1)
            t0 = time.time()
            train_x, train_y = _render(tr)
            eval_x, eval_y = _render(ev)
            self._eval = EvalData(train_x, train_y, eval_x, eval_y)
            self.log(f"[study] rendered {len(tr)} probe-training and {len(ev)} held-out videos "
                     f"({time.time() - t0:.0f} s)")
        return self._eval

    # ------------------------------------------------------------------ masks: tracking + examples
    def masks(self, strategy: Strategy, ablation: Strategy | None = None) -> dict[str, Any]:
        """Masks of the held-out mask clips, tracking rates (GT flow) and the timing; cached."""
        from mgmae.data import SyntheticDataset, SyntheticVideos
        from mgmae.engine.pretrain import masker_from_config
        from mgmae.masking.metrics import tracking_rate

        name = self.masker_name(strategy, ablation)
        if name in self._mask_items:
            return self._mask_items[name]
        p = self.plan
        cfg = self.strategy_cfg(strategy, 0, ablation)
        d = cfg.data
        key_cfg = {k: v for k, v in _hashed_keys(cfg).items()
                   if k.startswith(("masking.", "flow.", "data.", "model."))}
        key = f"masks-{name}-{_hash([key_cfg, p.mask_clips])}"
        path = self.results / f"{key}.json"
        mpath = self.results / f"{key}.pt"
        rec = _read_json(path)
        videos = SyntheticVideos(p.mask_clips, d.num_frames, d.img_size, seed=d.synthetic_seed + 1)
        cached = rec is not None and mpath.is_file()
        if not cached:
            self._need(key)
            t0 = time.time()
            from mgmae.models import parse_name

            patch = parse_name(cfg.model.name)[2]
            masker = masker_from_config(cfg, patch)
            ds = SyntheticDataset(videos, masker=masker, num_sample=1, train=False,
                                  gt_flow=cfg.flow.name == "gt", seed=12345)
            grid = (d.num_frames // cfg.model.tubelet_size, d.img_size // patch, d.img_size // patch)
            masks, mov, allr = [], [0, 0], [0, 0]
            t_mask = 0.0
            for i in range(len(ds)):
                t1 = time.time()
                item = ds[i]
                t_mask += time.time() - t1
                m = item["mask"][0]
                masks.append(m)
                clip = videos[i]
                region = torch.from_numpy(clip.layers >= 1)  # [T, H, W] objects (they all move)
                h, c = tracking_rate(m, grid, patch, cfg.model.tubelet_size, clip.flow, region)
                mov[0] += h
                mov[1] += c
                h, c = tracking_rate(m, grid, patch, cfg.model.tubelet_size, clip.flow, None)
                allr[0] += h
                allr[1] += c
            rec = {"key": key, "masker": name, "grid": list(grid), "patch": patch,
                   "tubelet": cfg.model.tubelet_size, "tracking_moving": mov, "tracking_all": allr,
                   "ms_per_clip": round(1000 * t_mask / max(1, len(ds)), 1),
                   "seconds": round(time.time() - t0, 1)}
            torch.save(torch.stack(masks), mpath)
            _write_json(path, rec)
            self.computed_seconds += rec["seconds"]
        masks = torch_load(mpath)
        out = dict(rec)
        out["masks"] = masks
        out["videos"] = videos
        self._mask_items[name] = out
        tm, ta = rec["tracking_moving"], rec["tracking_all"]
        self._step(f"masks {name}", rec["seconds"], cached,
                   f"tracking moving {tm[0] / max(tm[1], 1):.3f}, all {ta[0] / max(ta[1], 1):.3f};")
        return out

    # ------------------------------------------------------------------ pre-training
    def pretrain(self, strategy: Strategy, seed: int, ablation: Strategy | None = None) -> dict[str, Any]:
        from mgmae.engine.pretrain import pretrain

        key = self.pretrain_key(strategy, seed, ablation)
        path = self.results / f"{key}.json"
        rec = _read_json(path)
        run_dir = self.root / key
        if rec is not None and (run_dir / "checkpoint-final.pth").is_file():
            self._step(f"pre-train {key}", rec["seconds"], True, f"loss end {rec['loss_end']:.4f};")
            return rec
        self._need(key)
        cfg = self.strategy_cfg(strategy, seed, ablation)
        cfg.train.output_dir = str(self.root)
        cfg.train.run_name = key
        cfg.train.resume = "auto"
        cfg.train.vis_clips = 0
        cfg.train.tensorboard = False
        t0 = time.time()
        prior = _read_json(run_dir / "study_seconds.json") or {"seconds": 0.0}  # earlier partial runs
        try:
            with _quiet(self.logs / f"{key}.log"):
                pretrain(cfg)
        finally:
            _write_json(run_dir / "study_seconds.json", {"seconds": prior["seconds"] + time.time() - t0})
        seconds = prior["seconds"] + time.time() - t0
        curve = read_loss_curve(run_dir / "log.jsonl")
        tail = curve[-self.plan.loss_tail:]
        rec = {"key": key, "strategy": strategy.name, "ablation": ablation.name if ablation else None,
               "seed": seed, "steps": len(curve), "loss_curve": curve,
               "loss_end": float(np.mean(tail)) if tail else float("nan"),
               "loss_start": float(np.mean(curve[:self.plan.loss_tail])) if curve else float("nan"),
               "seconds": round(seconds, 1), "checkpoint": str(run_dir / "checkpoint-final.pth")}
        _write_json(path, rec)
        self.computed_seconds += time.time() - t0
        self._step(f"pre-train {key}", seconds, False, f"loss end {rec['loss_end']:.4f};")
        return rec

    # ------------------------------------------------------------------ linear probe
    def linprobe(self, enc_key: str, checkpoint: str, seed: int) -> dict[str, Any]:
        from mgmae.engine.evaluate import classification_metrics
        from mgmae.models.build import build_encoder
        from mgmae.engine.linprobe import probe_scores, train_probe

        cfg = self.plan.config()
        cfg.train.seed = seed
        f = cfg.finetune
        settings = [enc_key, f.linprobe_bn, f.linprobe_epochs, f.linprobe_lr, f.linprobe_weight_decay,
                    flatten(cfg.to_dict())["data.synthetic_videos"], self.plan.eval_videos,
                    cfg.data.synthetic_seed, seed]
        key = f"lp-{enc_key}-{_hash(settings)}"

        def compute() -> dict[str, Any]:
            data = self.eval_data()
            torch.manual_seed(seed)
            encoder = build_encoder(checkpoint, cfg)
            x_tr = _features(encoder, data.train_x)
            x_ev = _features(encoder, data.eval_x)
            rec = {"key": key, "encoder": enc_key, "seed": seed, "dim": int(x_tr.shape[1])}
            for lab in self.plan.labels:
                K = NUM_CLASSES[lab]
                probe, _ = train_probe(x_tr, data.train_y[lab], K, bn=f.linprobe_bn,
                                       epochs=f.linprobe_epochs, lr=f.linprobe_lr,
                                       weight_decay=f.linprobe_weight_decay, seed=seed)
                tr = classification_metrics(probe_scores(probe, x_tr), data.train_y[lab], K)
                ev = classification_metrics(probe_scores(probe, x_ev), data.eval_y[lab], K)
                rec[lab] = {"train_acc1": tr["top1"], "acc1": ev["top1"], "acc5": ev["top5"]}
            return rec

        rec, cached = self._cached(key, compute)
        accs = ", ".join(f"{lab} {rec[lab]['acc1']:.1f}%" for lab in self.plan.labels)
        self._step(f"linear probe {enc_key}", rec["seconds"], cached, accs + ";")
        return rec

    # ------------------------------------------------------------------ fine-tuning
    def finetune(self, enc_key: str, checkpoint: str, seed: int, label: str) -> dict[str, Any]:
        from mgmae.engine.evaluate import classification_metrics
        from mgmae.models.build import build_classifier
        from mgmae.engine.finetune import finetune

        p = self.plan
        cfg = p.config(p.finetune_overrides)
        cfg.train.seed = seed
        cfg.train.max_steps = p.finetune_steps
        cfg.data.synthetic_label = label
        key = f"ft-{enc_key}-{label}-{_cfg_hash(cfg, enc_key, p.eval_videos)}"
        run_dir = self.root / key  # train.output_dir / train.run_name

        def compute() -> dict[str, Any]:
            cfg.train.output_dir = str(self.root)
            cfg.train.run_name = key
            cfg.train.resume = "auto"
            with _quiet(self.logs / f"{key}.log"):
                res = finetune(cfg, checkpoint, progress=False)
            data = self.eval_data()
            model = build_classifier(res.checkpoints["final"], cfg)
            K = model.head.out_features
            scores = torch.as_tensor(_logits(model, data.eval_x)).softmax(-1).numpy()
            m = classification_metrics(scores, data.eval_y[label], K)
            return {"key": key, "encoder": enc_key, "seed": seed, "label": label,
                    "acc1": m["top1"], "acc5": m["top5"], "steps": res.steps,
                    "train_loss_end": _last_loss(run_dir / "log.jsonl")}

        rec, cached = self._cached(key, compute)
        if not cached:  # stored: the numbers are kept, the weights are not
            for ck in run_dir.glob("checkpoint-*.pth"):
                ck.unlink()
        self._step(f"fine-tune {enc_key} on {label} labels", rec["seconds"], cached,
                   f"top-1 {rec['acc1']:.1f}%;")
        return rec

    # ------------------------------------------------------------------ held-out reconstruction
    def heldout_loss(self, pt: dict[str, Any], maskers: list[str]) -> dict[str, float]:
        """Reconstruction loss of one pre-trained model on the held-out mask clips under each
        masker's masks (the same clips and masks for every model)."""
        from mgmae.engine import checkpoint as ckpt
        from mgmae.engine.pretrain import build_model

        key = f"recon-{pt['key']}-{_hash([maskers, self.plan.mask_clips])}"

        def compute() -> dict[str, Any]:
            state = ckpt.load_checkpoint(pt["checkpoint"])
            cfg = Config.from_dict(state["config"])
            model = build_model(cfg)
            model.load_state_dict(state["model"])
            model.eval()
            out = {}
            with torch.no_grad():
                for name in maskers:
                    item = self._mask_items[name]
                    x = self._mask_video(name)
                    masks = item["masks"]
                    losses = [float(model(x[i:i + 16], masks[i:i + 16]).loss) * len(x[i:i + 16])
                              for i in range(0, len(x), 16)]
                    out[name] = sum(losses) / len(x)
            return {"key": key, "loss": out}

        return self._cached(key, compute)[0]["loss"]

    def _mask_video(self, name: str) -> torch.Tensor:
        """Centre views of the mask clips (the same held-out clips for every masker)."""
        if self._mask_x is None:
            from mgmae.data import SyntheticDataset

            ds = SyntheticDataset(self._mask_items[name]["videos"], num_sample=1, train=False)
            self._mask_x = torch.stack([ds[i]["video"][0] for i in range(len(ds))])
        return self._mask_x

    # ------------------------------------------------------------------ everything
    def count(self) -> int:
        p = self.plan
        runs = self.encoder_runs()
        maskers = len(p.strategies) + sum(len(a.variants) for a in p.ablations)
        n_main = sum(kind == "main" for kind, *_ in runs)
        n_abl = len(runs) - n_main
        per_encoder = 2 + len(p.labels)  # pre-train, linear probe, fine-tunes
        abl = 2 + (len(p.labels) if p.ablation_finetune else 0)
        scratch = len(p.seeds) * (1 + len(p.labels))
        return maskers + n_main * per_encoder + n_abl * abl + scratch

    def run(self) -> dict[str, Any]:
        self.results.mkdir(parents=True, exist_ok=True)
        self.total = self.count()
        _single_thread_opencv()
        threads = self.threads()
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return self._run(threads)
        finally:
            torch.set_num_threads(prev_threads)

    def threads(self) -> int:
        """Torch threads of this process: by default one per core not taken by a loader worker.
        Oversubscribed cores make every small tensor op wait for a descheduled OpenMP thread
        (measured here: 10x slower masking, 2-5x slower training steps with 2 threads + 1 worker
        on 2 cores)."""
        if self.plan.threads:
            return self.plan.threads
        workers = self.plan.config().train.num_workers
        return max(1, (os.cpu_count() or 1) - workers)

    def _run(self, threads: int) -> dict[str, Any]:
        p = self.plan
        t0 = time.time()
        self.log(f"[study] {p.name}: {len(p.strategies)} strategies x {len(p.seeds)} seeds, "
                 f"{sum(len(a.variants) for a in p.ablations)} ablation variants x "
                 f"{len(p.ablation_seeds) if p.ablations else 0} seeds; {p.pretrain_steps} pre-training "
                 f"steps, {p.finetune_steps} fine-tuning steps; {threads} torch thread(s); runs in {self.root}")
        main_maskers = [s.name for s in p.strategies]
        for s in p.strategies:
            self.masks(s)
        for a in p.ablations:
            for v in a.variants:
                self.masks(p.strategy(p.ablation_reference), v)
        records: dict[str, Any] = {"pretrain": [], "linprobe": [], "finetune": [], "recon": []}
        for seed in p.seeds:
            # baseline: no pre-training
            records["linprobe"].append(self.linprobe(f"{SCRATCH}-s{seed}", SCRATCH, seed))
            for lab in p.labels:
                records["finetune"].append(self.finetune(f"{SCRATCH}-s{seed}", SCRATCH, seed, lab))
            for s in p.strategies:
                self._encoder(s, seed, None, records, main_maskers)
        for seed in p.ablation_seeds if p.ablations else []:
            ref = p.strategy(p.ablation_reference)
            for a in p.ablations:
                for v in a.variants:
                    self._encoder(ref, seed, v, records, [self.masker_name(ref, v)],
                                  finetune=p.ablation_finetune)
        records["threads"] = threads
        records["wall_seconds"] = round(time.time() - t0, 1)
        records["computed_seconds"] = round(self.computed_seconds, 1)
        return records

    def _encoder(self, s: Strategy, seed: int, v: Strategy | None, records, maskers,
                 finetune: bool = True) -> None:
        pt = self.pretrain(s, seed, v)
        records["pretrain"].append(pt)
        enc = pt["key"]
        records["linprobe"].append(self.linprobe(enc, pt["checkpoint"], seed))
        for lab in self.plan.labels if finetune else ():
            records["finetune"].append(self.finetune(enc, pt["checkpoint"], seed, lab))
        records["recon"].append({"pretrain": enc, "loss": self.heldout_loss(pt, maskers)})


def _single_thread_opencv() -> None:
    """The study computes DIS flow in this process (tracking masks) and then forks DataLoader
    workers, whose ``seed_worker`` calls ``cv2.setNumThreads(1)``: if OpenCV's thread pool was
    started here, that call deadlocks in the forked child. A single-threaded pool here avoids it."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)


def _last_loss(log_path: Path) -> float | None:
    vals = [json.loads(x).get("loss") for x in log_path.read_text().splitlines() if '"loss"' in x]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return float(np.mean(vals[-10:])) if vals else None


# ============================================================================ the report
CHANCE = {"motion": 100 / 8, "appearance": 100 / 4}


@dataclass
class Row:
    name: str
    label: str
    loss_end: list[float]
    track_moving: float | None
    track_all: float | None
    lp: dict[str, list[float]]
    ft: dict[str, list[float]]
    seeds: list[int]
    pretrain_seconds: list[float]
    mask_ms: float | None = None


def collect_rows(study: Study, records: dict[str, Any]) -> tuple[list[Row], dict[str, list[Row]]]:
    """Main rows (scratch first, then strategies) and ablation rows per group (reference first)."""
    p = study.plan
    lp = {r["encoder"]: r for r in records["linprobe"]}
    ft = {(r["encoder"], r["label"]): r for r in records["finetune"]}

    def row(name, label, pts, mask_item, seeds):
        encs = [r["key"] for r in pts] if pts is not None else [f"{SCRATCH}-s{s}" for s in seeds]
        tm = ta = None
        ms = None
        if mask_item is not None:
            a, b = mask_item["tracking_moving"]
            tm = a / b if b else None
            a, b = mask_item["tracking_all"]
            ta = a / b if b else None
            ms = mask_item.get("ms_per_clip")
        return Row(name, label, [r["loss_end"] for r in pts] if pts else [], tm, ta,
                   {lab: [lp[e][lab]["acc1"] for e in encs if e in lp] for lab in p.labels},
                   {lab: [ft[(e, lab)]["acc1"] for e in encs if (e, lab) in ft] for lab in p.labels},
                   list(seeds), [r["seconds"] for r in pts] if pts else [], ms)

    pts = records["pretrain"]
    rows = [row(SCRATCH, "from scratch (no pre-training)", None, None, p.seeds)]
    for s in p.strategies:
        sel = [r for r in pts if r["strategy"] == s.name and r["ablation"] is None]
        rows.append(row(s.name, s.label, sel, study._mask_items.get(s.name), [r["seed"] for r in sel]))
    groups: dict[str, list[Row]] = {}
    if p.ablations:
        ref = p.strategy(p.ablation_reference)
        ref_pts = [r for r in pts if r["strategy"] == ref.name and r["ablation"] is None
                   and r["seed"] in p.ablation_seeds]
        for a in p.ablations:
            rs = [row(ref.name, f"{a.reference} (reference: {ref.label})", ref_pts,
                      study._mask_items.get(ref.name), p.ablation_seeds)]
            for v in a.variants:
                sel = [r for r in pts if r["ablation"] == v.name]
                rs.append(row(f"{ref.name}+{v.name}", v.label, sel,
                              study._mask_items.get(study.masker_name(ref, v)), [r["seed"] for r in sel]))
            groups[a.title] = rs
    return rows, groups


def _paired(a: Row, b: Row, what: str, lab: str | None,
            resolution: float = 0.0) -> tuple[list[float], str]:
    """Per-seed differences a - b (same seed: same initialisation, data order and eval set)."""
    def by_seed(r: Row):
        vals = r.loss_end if what == "loss" else (r.lp if what == "lp" else r.ft)[lab]
        return dict(zip(r.seeds, vals))

    da, db = by_seed(a), by_seed(b)
    diffs = [da[s] - db[s] for s in sorted(set(da) & set(db))]
    return diffs, _verdict(diffs, 0.0 if what == "loss" else resolution)


def _verdict(diffs: list[float], resolution: float = 0.0) -> str:
    """Paired two-sided t-test at 95%: ``higher`` / ``lower`` when the mean difference is
    significant, ``n.s.`` otherwise, ``n=1`` without an error estimate. ``resolution``: the
    metric's step (one held-out video for an accuracy); the standard deviation is floored at it,
    so differences of exactly one video on every seed do not count as certain."""
    m, s, n = mean_std(diffs)
    if n < 2:
        return "n=1"
    s = max(s, resolution)
    if s == 0:
        return "n.s." if m == 0 else ("higher" if m > 0 else "lower")
    t = abs(m) / (s / math.sqrt(n))
    if t >= _t_crit(n - 1):
        return "higher" if m > 0 else "lower"
    return "n.s."


def _t_crit(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # table (scipy is optional)
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
                 9: 2.262, 10: 2.228}
        return table.get(df, 2.0 + 2.5 / df)


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _example_clip(study: Study) -> int:
    """The tracking clip that shows motion-guided masking best: most (visible cube on the main
    object) x (object speed) under the best-tracking masker, summed over the slices."""
    p = study.plan
    best = max(p.strategies, key=lambda s: _rate(study._mask_items[s.name]["tracking_moving"]))
    item = study._mask_items[best.name]
    t, h, w = item["grid"]
    patch, tub = item["patch"], item["tubelet"]
    scores = []
    for k, mask in enumerate(item["masks"]):
        clip = item["videos"][k]
        main = len(clip.velocities) - 1  # the top layer
        centres = clip.layers[::tub, patch // 2::patch, patch // 2::patch][:t, :h, :w]  # [t, h, w]
        on_main = torch.from_numpy(centres == main) & ~mask.reshape(t, h, w)
        scores.append(float(on_main.sum()) * float(np.hypot(*clip.velocities[main])))
    return int(np.argmax(scores))


def _encoder_desc(cfg: Config) -> str:
    from mgmae.models import parse_name

    _, spec, patch = parse_name(cfg.model.name)
    return (f"encoder {spec.embed_dim}-d x {spec.depth} blocks, {_encoder_params(cfg) / 1e6:.2f}M "
            f"parameters; decoder depth {cfg.model.decoder_depth or spec.decoder_depth}; patch {patch}")


def _encoder_params(cfg: Config) -> int:
    from mgmae.models import create_model

    enc = create_model(cfg.model.name.removeprefix("mae_"), num_frames=cfg.data.num_frames,
                       img_size=cfg.data.img_size, tubelet_size=cfg.model.tubelet_size)
    return sum(p.numel() for p in enc.parameters())


def _rate(hits_count) -> float:
    h, c = hits_count
    return h / c if c else 0.0


def write_plots(study: Study, records: dict[str, Any], rows: list[Row], img_dir: Path,
                prefix: str = "study_") -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = study.plan
    img_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # reconstruction-loss curves: mean over seeds (thin: each seed); right: paired difference to tube
    curves: dict[str, dict[int, np.ndarray]] = {}
    for s in p.strategies:
        curves[s.name] = {r["seed"]: np.asarray(r["loss_curve"]) for r in records["pretrain"]
                          if r["strategy"] == s.name and r["ablation"] is None and r["loss_curve"]}
    ref = "tube" if curves.get("tube") else None
    fig, axes = plt.subplots(1, 2 if ref else 1, figsize=(13 if ref else 8, 4.5), dpi=110, squeeze=False)
    ax, axd = axes[0][0], (axes[0][1] if ref else None)

    def smooth(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = max(1, len(c) // 25)
        return np.arange(w, len(c) + 1), np.convolve(c, np.ones(w) / w, "valid")

    for i, s in enumerate(p.strategies):
        cs = curves[s.name]
        if not cs:
            continue
        n = min(len(c) for c in cs.values())
        arr = np.stack([c[:n] for c in cs.values()])
        col = colors[i % len(colors)]
        for c in arr:
            ax.plot(*smooth(c), color=col, lw=0.5, alpha=0.35)
        ax.plot(*smooth(arr.mean(0)), color=col, lw=2, label=f"{s.label} (n={len(cs)})")
        if axd is not None and s.name != ref:
            seeds = sorted(set(cs) & set(curves[ref]))
            if seeds:
                n2 = min(n, *(len(curves[ref][k]) for k in seeds))
                diff = np.stack([cs[k][:n2] - curves[ref][k][:n2] for k in seeds]).mean(0)
                axd.plot(*smooth(diff), color=col, lw=1.5, label=s.label)
    ax.set_yscale("log")
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("reconstruction loss (moving mean, log scale)")
    ax.set_title("pre-training loss (thick: mean over seeds; thin: each seed)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if axd is not None:
        axd.axhline(0, color="black", lw=1)
        axd.set_xlabel("pre-training step")
        axd.set_ylabel("loss minus tube's (same seed), moving mean")
        axd.set_title("difference to tube masking (> 0: higher loss than tube)", fontsize=10)
        axd.grid(alpha=0.3)
        axd.legend(fontsize=8)
    fig.tight_layout()
    files["loss"] = img_dir / f"{prefix}loss.png"
    fig.savefig(files["loss"])
    plt.close(fig)

    # accuracy bars
    panels = [("lp", lab) for lab in p.labels] + [("ft", lab) for lab in p.labels]
    fig, axes = plt.subplots(2, len(p.labels), figsize=(5.5 * len(p.labels), 7.5), dpi=110, squeeze=False)
    for k, (kind, lab) in enumerate(panels):
        ax = axes[k // len(p.labels)][k % len(p.labels)]
        for j, r in enumerate(rows):
            vals = (r.lp if kind == "lp" else r.ft)[lab]
            m, s, n = mean_std(vals)
            col = "lightgray" if r.name == SCRATCH else colors[(j - 1) % len(colors)]
            ax.bar(j, m if n else 0, yerr=s if n > 1 else None, color=col, capsize=3, alpha=0.85)
            ax.scatter([j] * len(vals), vals, s=10, color="black", zorder=3)
        ax.axhline(CHANCE[lab], color="red", lw=1, ls="--", label="chance")
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("held-out top-1 (%)")
        ax.set_title(f"{'linear probe' if kind == 'lp' else 'fine-tuning'}: {lab} labels", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("downstream accuracy (bars: mean, whiskers: std over seeds, dots: seeds)", fontsize=10)
    fig.tight_layout()
    files["accuracy"] = img_dir / f"{prefix}accuracy.png"
    fig.savefig(files["accuracy"])
    plt.close(fig)

    # masks of one held-out clip per strategy: a GIF each (input | visible cubes) + one PNG
    from mgmae.models.mae import denormalize
    from mgmae.viz import darken, mask_to_pixels, save_panels, to_uint8

    i = p.example_clip
    if i is None:
        i = _example_clip(study)
    panels_rows = []
    inp = to_uint8(denormalize(study._mask_video(p.strategies[0].name)[i:i + 1])[0])
    panels_rows.append((f"input (held-out clip {i})", inp))
    for s in p.strategies:
        item = study._mask_items[s.name]
        grid, patch, tub = tuple(item["grid"]), item["patch"], item["tubelet"]
        pm = mask_to_pixels(item["masks"][i], grid, patch, tub).numpy()
        shown = darken(inp, pm, 0.2)
        panels_rows.append((s.label, shown))
        gif = img_dir / f"{prefix}masks_{s.name}.gif"
        tmp_png = img_dir / f".{prefix}masks_{s.name}.png"
        save_panels([("input", inp), (s.label, shown)], tmp_png, gif, frame_step=2, fps=4)
        tmp_png.unlink(missing_ok=True)
        files[f"gif_{s.name}"] = gif
    files["masks"] = img_dir / f"{prefix}masks.png"
    save_panels(panels_rows, files["masks"], None, frame_step=2)
    return files


def write_report(study: Study, records: dict[str, Any], out: Path, *, command: str,
                 started: str, machine: dict[str, Any], invocations: list[dict[str, Any]]) -> Path:
    """Write the Markdown report ``out`` and its pictures (``images/`` next to it).
    ``invocations``: the study runs that computed the cached results (wall time, load)."""
    p = study.plan
    rows, groups = collect_rows(study, records)
    img_dir = out.parent / "images"
    tag = out.stem.removeprefix("experiments").strip("_-")
    files = write_plots(study, records, rows, img_dir, f"study_{tag}_" if tag else "study_")
    rel = lambda f: os.path.relpath(f, out.parent)  # noqa: E731
    cfg = p.config()
    ft_cfg = p.config(p.finetune_overrides)
    labs = p.labels
    by = {r.name: r for r in rows}

    L: list[str] = []
    L.append("# Evidence: motion-guided vs tube vs random masking at small scale")
    L.append("")
    L.append(f"*Generated by `mgmae study` ({p.mode} mode) on {started}. Do not edit by hand: re-run "
             f"the command below (cached runs are reused).*")
    L.append("")
    L.append("```bash\n" + command + "\n```")
    L.append("")
    cpu = machine
    L.append(f"**Machine:** {cpu['cpu']}, {cpu['cores']} cores (the study ran {records.get('threads', '?')} torch thread(s) "
             f"next to {cfg.train.num_workers} data-loader worker(s)), "
             f"{cpu['memory_gib']} GiB RAM, GPU: {cpu['gpu'] or 'none'}; torch {cpu['torch']}, "
             f"Python {cpu['python']}, {cpu['os']}.  ")
    pt_sec = sum(r["seconds"] for r in records["pretrain"])
    lp_sec = sum(r["seconds"] for r in records["linprobe"])
    ft_sec = sum(r["seconds"] for r in records["finetune"])
    runs = [i for i in invocations if i.get("computed_seconds", 0) > 0]
    total = sum(i["wall_seconds"] for i in runs)
    L.append(f"**Wall time:** {total / 60:.1f} min in {len(runs)} invocation(s) of the command; the "
             f"runs themselves took {pt_sec / 60:.1f} min pre-training, {lp_sec / 60:.1f} min linear "
             f"probes (feature extraction included), {ft_sec / 60:.1f} min fine-tuning (the rest: "
             f"masks, tracking, held-out losses, pictures).")
    L.append("")
    if runs:
        L.append(_table(["started", "command", "wall time", "new work", "load average at start → end"],
                        [[i["started"], f"`{i['command']}`", f"{i['wall_seconds'] / 60:.1f} min",
                          f"{i['computed_seconds'] / 60:.1f} min",
                          f"{i.get('load_start')} → {i.get('load_end')}"] for i in runs]))
        L.append("")
        L.append("Load average = runnable processes (1/5/15-minute means); above the core count other "
                 "processes shared the CPU during the study (this is a shared development machine) and "
                 "the wall times are inflated accordingly.")
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append(_table(["what", "setting"], [
        ["data", f"built-in synthetic videos, {cfg.data.num_frames} frames x {cfg.data.img_size}x"
                 f"{cfg.data.img_size}; {cfg.data.synthetic_videos} training videos (seed "
                 f"{cfg.data.synthetic_seed}), {p.eval_videos} held-out videos (seed "
                 f"{cfg.data.synthetic_seed + 1})"],
        ["labels", "motion: direction x speed of the main object (8 classes, chance 12.5%); "
                   "appearance: its shape (4 classes, chance 25%)"],
        ["model", f"`{cfg.model.name}` ({_encoder_desc(cfg)}), tubelet {cfg.model.tubelet_size}, "
                  f"target {'per-patch normalised' if cfg.model.norm_pix_loss else 'raw'} pixels"],
        ["pre-training", f"{p.pretrain_steps} steps x {cfg.train.batch_size} clips, blr "
                         f"{cfg.train.blr:g}, warm-up {cfg.train.warmup_epochs:g} epoch(s), mask ratio "
                         f"{cfg.masking.mask_ratio} (unless the row says otherwise)"],
        ["linear probe", f"frozen encoder, mean-pooled features of the centre view, BatchNorm + "
                         f"linear, {cfg.finetune.linprobe_epochs} epochs AdamW lr "
                         f"{cfg.finetune.linprobe_lr:g} on the {cfg.data.synthetic_videos} training "
                         f"videos; top-1 on the {p.eval_videos} held-out videos"],
        ["fine-tuning", f"{p.finetune_steps} steps x {ft_cfg.finetune.batch_size} clips, blr "
                        f"{ft_cfg.finetune.blr:g}, layer decay {ft_cfg.finetune.layer_decay}, drop path "
                        f"{ft_cfg.finetune.drop_path}, label smoothing {ft_cfg.finetune.label_smoothing}; "
                        f"top-1 of the final model on the {p.eval_videos} held-out videos (no "
                        f"checkpoint selection)"],
        ["seeds", f"{', '.join(map(str, p.seeds))} (fixed in advance; every seed is reported). A seed "
                  f"sets the initialisation, data order, augmentation and masks of pre-training and "
                  f"fine-tuning, and the probe's initialisation"],
        ["tracking rate", f"{p.mask_clips} held-out clips, one mask each, ground-truth flow from the "
                          f"middle slice to every other slice (`mgmae.masking.metrics.tracking_rate`); "
                          f"'moving' = cubes whose centre is on an object (every object moves)"],
    ]))
    L.append("")
    L.append("Strategies (each is the base config plus these keys):")
    L.append("")
    for s in p.strategies:
        keys = ", ".join(f"`{k}={v}`" for k, v in s.overrides.items())
        L.append(f"- **{s.label}**: {keys}" + (f". {s.note}" if s.note else ""))
    L.append("")

    # main table
    L.append("## Results")
    L.append("")
    n_seeds = len(p.seeds)
    L.append(f"Mean ± standard deviation over {n_seeds} seed{'s' if n_seeds > 1 else ''}; "
             f"accuracies are held-out top-1 (%).")
    L.append("")
    header = ["strategy", "loss at end of pre-training", "tracking: moving", "tracking: all"]
    header += [f"linear probe: {lab}" for lab in labs] + [f"fine-tune: {lab}" for lab in labs]
    body = []
    for r in rows:
        body.append([r.label, _fmt(r.loss_end, 4) if r.loss_end else "–", _pct(r.track_moving),
                     _pct(r.track_all)] + [_fmt(r.lp[lab]) for lab in labs] + [_fmt(r.ft[lab]) for lab in labs])
    L.append(_table(header, body))
    L.append("")
    L.append(f"Chance: motion 12.5%, appearance 25%. Loss: mean of the last {p.loss_tail} logged "
             f"training steps (each strategy's own masks). Tracking rate: one number per masker "
             f"(deterministic masks on the fixed clips, not per seed).")
    L.append("")
    L.append(f"![accuracy]({rel(files['accuracy'])})")
    L.append("")

    # paired differences
    pairs = []
    names = [s.name for s in p.strategies]
    for a, b in (("motion_guided_dis", "tube"), ("motion_guided_gt", "tube"),
                 ("motion_guided_gt", "motion_guided_dis"), ("motion_guided_official", "motion_guided_gt"),
                 ("tube", "random")):
        if a in names and b in names:
            pairs.append((a, b))
    for s in p.strategies:
        pairs.append((s.name, SCRATCH))
    res = 100.0 / p.eval_videos
    if pairs:
        L.append("### Paired differences (same seed)")
        L.append("")
        L.append("Per-seed difference, first strategy minus second (a seed fixes the initialisation "
                 "and data order of both), mean ± std over seeds; in brackets the paired two-sided "
                 "t-test at 95%: 'higher'/'lower' when significant, else 'n.s.' (not distinguishable "
                 f"from noise). For accuracies the standard deviation is floored at one held-out video "
                 f"({100 / p.eval_videos:.2f} points), the metric's resolution.")
        L.append("")
        header = ["comparison", "loss at end"] + [f"LP {lab}" for lab in labs] + \
                 [f"FT {lab}" for lab in labs]
        body = []
        for a, b in pairs:
            ra, rb = by[a], by[b]
            cells = [f"{ra.label} − {rb.label}"]
            if b == SCRATCH:
                cells.append("–")
            else:
                d, v = _paired(ra, rb, "loss", None)
                cells.append(f"{_fmt(d, 5)} ({v})")
            for kind in ("lp", "ft"):
                for lab in labs:
                    d, v = _paired(ra, rb, kind, lab, res)
                    cells.append(f"{_fmt(d)} ({v})")
            body.append(cells)
        L.append(_table(header, body))
        L.append("")

    # held-out reconstruction
    recon = [r for r in records["recon"]]
    if recon:
        L.append("### Reconstruction difficulty: every model under every strategy's masks")
        L.append("")
        L.append(f"Loss (raw-pixel MSE on the hidden cubes) on the {p.mask_clips} held-out clips; rows: "
                 f"the strategy a model was pre-trained with (mean over seeds), columns: the masks it "
                 f"is evaluated with (the same clips and masks for every model). Reading along a row "
                 f"compares masks with the model fixed.")
        L.append("")
        header = ["pre-trained with ↓ / masks →"] + [s.label for s in p.strategies]
        body = []
        pt_by_key = {r["key"]: r for r in records["pretrain"]}
        for s in p.strategies:
            cells = [s.label]
            for t in p.strategies:
                vals = [r["loss"].get(t.name) for r in recon
                        if pt_by_key[r["pretrain"]]["strategy"] == s.name
                        and pt_by_key[r["pretrain"]]["ablation"] is None]
                cells.append(_fmt([v for v in vals if v is not None], 4))
            body.append(cells)
        L.append(_table(header, body))
        L.append("")
    L.append(f"![loss curves]({rel(files['loss'])})")
    L.append("")

    # reading
    L.append("## Reading")
    L.append("")
    L.extend(_reading(study, rows, records))
    L.append("")

    # ablations
    if groups:
        L.append("## Ablations")
        L.append("")
        L.append(f"One key of **{p.strategy(p.ablation_reference).label}** changed at a time; "
                 f"{len(p.ablation_seeds)} seed{'s' if len(p.ablation_seeds) > 1 else ''} "
                 f"({', '.join(map(str, p.ablation_seeds))}); the reference row is the main run of the "
                 f"same seeds.")
        L.append("")
        header = ["ablation", "setting", "loss at end", "tracking: moving", "tracking: all"]
        header += [f"LP {lab}" for lab in labs] + [f"FT {lab}" for lab in labs]
        body = []
        for title, rs in groups.items():
            for k, r in enumerate(rs):
                body.append([title if k == 0 else "", r.label, _fmt(r.loss_end, 4) if r.loss_end else "–",
                             _pct(r.track_moving), _pct(r.track_all)]
                            + [_fmt(r.lp[lab]) for lab in labs] + [_fmt(r.ft[lab]) for lab in labs])
        L.append(_table(header, body))
        L.append("")
    else:
        L.append("## Ablations")
        L.append("")
        L.append(f"Not run in this mode ({p.mode}). The full mode (`mgmae study -c "
                 f"configs/study_small.yaml`) runs base frame first/middle/random, initial map "
                 f"mix_gauss/pixel_rand/token_rand, backward vs forward warping, mask ratio "
                 f"0.75/0.9/0.95 and flow at full vs half resolution.")
        L.append("")

    # masks
    L.append("## Masks")
    L.append("")
    L.append("The same held-out clip under each strategy (hidden cubes darkened; every second frame; "
             "the clip is the one of the tracking set where the best-tracking strategy keeps most "
             "visible cubes on the main object, weighted by its speed). "
             "Animated, one per strategy: " + ", ".join(
                 f"[{s.label}]({rel(files['gif_' + s.name])})" for s in p.strategies) + ".")
    L.append("")
    L.append(f"![masks]({rel(files['masks'])})")
    L.append("")
    for s in p.strategies:
        L.append(f"![{s.label}]({rel(files['gif_' + s.name])})")
    L.append("")
    mrows = []
    for s in p.strategies:
        item = study._mask_items.get(s.name)
        if item:
            mrows.append([s.label, f"{item['ms_per_clip']:.0f}"])
    L.append("Masking cost on this machine (ms per clip, including rendering and augmentation of the "
             "clip, single process): " + "; ".join(f"{a} {b}" for a, b in mrows) + ".")
    L.append("")

    # per-seed details
    L.append("## Every run")
    L.append("")
    header = ["strategy", "seed", "loss at end", "pre-training s"] + [f"LP {lab}" for lab in labs] + \
             [f"FT {lab}" for lab in labs]
    body = []
    all_rows = rows + [r for rs in groups.values() for r in rs[1:]]
    for r in all_rows:
        for k, seed in enumerate(r.seeds):
            body.append([r.label, str(seed), f"{r.loss_end[k]:.4f}" if r.loss_end else "–",
                         f"{r.pretrain_seconds[k]:.0f}" if r.pretrain_seconds else "–"]
                        + [f"{r.lp[lab][k]:.1f}" if k < len(r.lp[lab]) else "–" for lab in labs]
                        + [f"{r.ft[lab][k]:.1f}" if k < len(r.ft[lab]) else "–" for lab in labs])
    L.append(_table(header, body))
    L.append("")
    L.append("## Reproduce, continue, scale up")
    L.append("")
    L.append(f"Runs are cached in `{study.root}` (one folder per pre-training / fine-tuning run, "
             f"`results/*.json` per evaluation, `logs/` with each engine's console output); their names "
             f"carry a hash of the settings, so re-running the command skips finished runs, resumes an "
             f"interrupted pre-training from its last checkpoint, and recomputes only what a changed "
             f"setting affects. `--seeds N` changes the number of seeds, `--quick` the reduced "
             f"budget of the recipe's `quick:` block, `--report-only` rewrites this page from the "
             f"cache.")
    others = sorted(f for f in out.parent.glob("experiments*.md") if f.resolve() != out.resolve())
    if others:
        L.append("")
        L.append("Other generated study reports: " + ", ".join(f"[{f.name}]({f.name})" for f in others) + ".")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L) + "\n")
    return out


def _reading(study: Study, rows: list[Row], records) -> list[str]:
    """Statements that follow from the numbers (no hand-written conclusions)."""
    p = study.plan
    res = 100.0 / p.eval_videos
    by = {r.name: r for r in rows}
    out = []
    n = len(p.seeds)
    if n < 3:
        out.append(f"- Only {n} seed{'s' if n > 1 else ''}: differences below cannot be told from noise "
                   f"reliably; run with `--seeds 3` or more.")
    # tracking
    tr = [(r.label, r.track_moving, r.track_all) for r in rows if r.track_moving is not None]
    if tr:
        out.append("- **Tracking.** Share of visible cubes on moving objects whose scene point is "
                   "under a visible cube in the other slices: " + "; ".join(f"{a} {_pct(b)}" for a, b, _ in tr)
                   + ". Everywhere (mostly static or slowly moving background): "
                   + "; ".join(f"{a} {_pct(c)}" for a, _, c in tr) + ".")
        if "motion_guided_official" in by and "motion_guided_gt" in by:
            o, g = by["motion_guided_official"], by["motion_guided_gt"]
            if o.track_moving is not None and g.track_moving is not None:
                out.append(f"  The official flow direction before the base frame (same GT flow) tracks "
                           f"{_pct(o.track_moving)} vs {_pct(g.track_moving)} for ours: the mask moves "
                           f"against the motion on the slices before the base frame.")
    # loss
    if "tube" in by and by["tube"].loss_end:
        parts = []
        for s in p.strategies:
            if s.name == "tube" or not by[s.name].loss_end:
                continue
            d, v = _paired(by[s.name], by["tube"], "loss", None)
            m, sd, k = mean_std(d)
            parts.append(f"{s.label} {m:+.5f} ± {sd:.5f} ({v})")
        out.append("- **Reconstruction loss at the end of pre-training**, difference to tube masking "
                   "(same seed): " + "; ".join(parts) + ". A higher training loss under a strategy's "
                   "own masks is what the paper means by a harder task; the held-out matrix above "
                   "separates the masks' difficulty from the model (read along a row).")
        recon = records.get("recon") or []
        pt_by_key = {r["key"]: r for r in records["pretrain"]}
        tube_rows = [r["loss"] for r in recon if pt_by_key[r["pretrain"]]["strategy"] == "tube"
                     and pt_by_key[r["pretrain"]]["ablation"] is None]
        if tube_rows and all("tube" in x for x in tube_rows):
            mg = [s.name for s in p.strategies if s.name.startswith("motion_guided")]
            comps = []
            for name in mg:
                d = [x[name] - x["tube"] for x in tube_rows if name in x]
                if d:
                    m, sd, k = mean_std(d)
                    comps.append(f"{by[name].label} masks {m:+.5f}")
            rnd = [x["random"] - x["tube"] for x in tube_rows if "random" in x]
            if rnd:
                comps.append(f"random masks {mean_std(rnd)[0]:+.5f}")
            if comps:
                out.append("  With the tube-pre-trained models fixed, held-out loss relative to tube "
                           "masks: " + "; ".join(comps) + " (positive = harder).")
    # downstream
    for key in ("motion_guided_dis", "motion_guided_gt"):
        if key in by and "tube" in by:
            parts = []
            wins = 0
            for kind, name in (("lp", "linear probe"), ("ft", "fine-tuning")):
                for lab in p.labels:
                    d, v = _paired(by[key], by["tube"], kind, lab, res)
                    m, sd, k = mean_std(d)
                    if k == 0:
                        continue
                    parts.append(f"{name} {lab} {m:+.1f} ± {sd:.1f} points ({v})")
                    wins += v.startswith("higher")
            if parts:
                out.append(f"- **{by[key].label} vs tube**, downstream (paired): " + "; ".join(parts) + ".")
                if wins == 0:
                    out.append(f"  At this scale {by[key].label} does **not** beat tube masking "
                               f"significantly on any downstream metric.")
    flat = []
    for kind, name in (("lp", "linear probe"), ("ft", "fine-tuning")):
        for lab in p.labels:
            means = [mean_std((r.lp if kind == "lp" else r.ft)[lab])[0] for r in rows]
            means = [m for m in means if math.isfinite(m)]
            if means and max(means) <= CHANCE[lab] + 2 * res:
                flat.append(f"{name} on {lab} labels (best row {max(means):.1f}%, chance {CHANCE[lab]:.1f}%)")
    if flat:
        out.append("- **At chance.** No row, pre-trained or not, is more than two held-out videos above "
                   "chance for: " + "; ".join(flat) + ". These columns carry no evidence for or "
                   "against any masking strategy.")
    if "tube" in by:
        parts = []
        for kind, name in (("lp", "linear probe"), ("ft", "fine-tuning")):
            for lab in p.labels:
                d, v = _paired(by["tube"], by[SCRATCH], kind, lab, res)
                m, sd, k = mean_std(d)
                if k:
                    parts.append(f"{name} {lab} {m:+.1f} ± {sd:.1f} ({v})")
        out.append("- **Does pre-training help at all here?** Tube masking vs no pre-training: "
                   + "; ".join(parts) + ". Where pre-training itself barely moves the numbers, "
                   "differences between masking strategies cannot show either.")
    out.append("- **What it would take.** The paper's gains over VideoMAE (about one point of top-1) "
               "come from ViT-S/B/L models pre-trained for hundreds of epochs on Something-Something V2 "
               "(169k real videos) or Kinetics-400 (240k), fine-tuned for tens of epochs with the full "
               f"recipe. Here a {_encoder_params(study.plan.config()) / 1e6:.1f}M-parameter encoder "
               f"sees {p.pretrain_steps} steps of {study.plan.config().train.batch_size} clips on "
               f"{study.plan.config().data.synthetic_videos} synthetic videos. A fair test at small "
               "scale would need: pre-training long enough for the loss to flatten under every "
               "strategy (thousands of steps: the demo, the same model and budget as here, does not "
               "beat even spatial smoothing of the visible cubes in the end-of-run check of "
               "`mgmae pretrain`), the "
               "separable position table (`model.pos_embed=sincos_3d`) with a higher learning rate, "
               "which in 2000 steps at mask ratio 0.75 beat smoothing clearly (0.68 of its loss) where "
               "VideoMAE's 1D table barely starts (docs/finetune.md), "
               "more seeds (differences of ~1 point need standard "
               "errors well below 1 point), a larger encoder (ViT-S/tiny), per-patch normalised "
               "targets (the paper's; with raw pixels the model can lean on low-frequency colour), "
               "and data where leakage between frames is the shortcut tube masking leaves open "
               "(fast, textured objects over a static, textured background).")
    return out


# ============================================================================ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae study",
        description="Small-scale study of masking strategies (random, tube, motion-guided) on the "
                    "built-in synthetic videos: pre-training, linear probe and fine-tuning on motion "
                    "and appearance labels, tracking rate, reconstruction loss; writes a Markdown "
                    "report with plots. Runs are cached: re-running continues a study.")
    p.add_argument("-c", "--config", default="configs/study_small.yaml", help="study recipe (YAML)")
    p.add_argument("--quick", action="store_true",
                   help="the recipe's reduced budget (its quick: block); ~13 min on 2 idle CPU cores")
    p.add_argument("--out", default="docs/experiments.md",
                   help="Markdown report (pictures go to images/ next to it)")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1) instead of the recipe's")
    p.add_argument("--output-dir", help="where runs are cached (default: the recipe's study.output_dir)")
    p.add_argument("--skip-ablations", action="store_true",
                   help="leave the recipe's ablations out (the main table alone; runs stay cached, so "
                        "a later run without this flag adds the ablations)")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from cached runs; fail if a run is missing")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    add_common_flags(p, checkpoints=False)
    return p


def _command(argv: list[str]) -> str:
    import shlex

    return "mgmae study " + " ".join(shlex.quote(a) for a in argv)


@command("study")
def cli_main(argv: list[str]) -> int:
    """``mgmae study -c RECIPE [--quick] [--out FILE] [--seeds N]``; returns the exit status."""
    args = build_parser().parse_args(argv)
    plan = load_plan(args.config, quick=args.quick, seeds=args.seeds, output_dir=args.output_dir)
    if args.skip_ablations:
        plan.ablations = []
    study = Study(plan)
    if args.dry_run:
        runs = study.encoder_runs()
        print(f"[study] {plan.name} ({plan.mode}): {len(runs)} pre-training runs, "
              f"{study.count()} tasks in all; runs cached in {study.root}")
        for kind, s, v, seed in runs:
            print(f"  {kind:<9} {study.masker_name(s, v):<40} seed {seed}")
        return 0
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load0 = _loadavg()
    t0 = time.time()
    machine = machine_info()
    command = _command([a for a in argv if a != "--report-only"])
    if args.report_only:
        study.cache_only = True
        study.log = lambda *a, **k: None
    inv_path = study.root / "invocations.jsonl"

    def record(interrupted: bool) -> None:  # wall time of every invocation that computed something
        if args.report_only:
            return
        inv = {"started": started, "command": command, "mode": plan.mode,
               "wall_seconds": round(time.time() - t0, 1),
               "computed_seconds": round(study.computed_seconds, 1), "load_start": load0,
               "load_end": _loadavg(), "threads": study.threads(), "interrupted": interrupted,
               "machine": machine}
        inv_path.parent.mkdir(parents=True, exist_ok=True)
        with inv_path.open("a") as fh:
            fh.write(json.dumps(inv) + "\n")

    def on_term(signum, frame):  # `kill PID`: record the time spent, then stop (runs stay cached)
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        records = study.run()
    except MissingRun as e:
        print(f"mgmae study: error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        record(True)
        print("[study] interrupted; finished runs are cached: run the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
    wall = time.time() - t0
    record(False)
    invocations = [json.loads(x) for x in inv_path.read_text().splitlines()] if inv_path.is_file() else []
    out = write_report(study, records, Path(args.out), command=command, started=started,
                       machine=machine, invocations=invocations)
    _write_json(study.root / "records.json", {k: v for k, v in records.items()})
    print(f"[study] wrote {out} ({wall / 60:.1f} min); runs in {study.root}")
    return 0
