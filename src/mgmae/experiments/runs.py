"""Running a study (:class:`Study`): every pre-training, probe, fine-tuning and mask run of a
:class:`~mgmae.experiments.plan.Plan`, each cached.

Every run is cached under ``<output_dir>/<name>/`` and named by a hash of the settings that
decide its result, so an interrupted study continues where it stopped (pre-training runs resume
from their last checkpoint) and a changed setting gives new runs instead of stale numbers.

Several processes may run the same study at once (on one machine's cores, or on machines that
share the cache directory): before computing a run, a process claims it with a lock file
``results/<key>.lock`` (created exclusively; it holds the process id and host). A run claimed by
another live process is left to it, together with the runs that need it (a fine-tuning needs its
pre-training), and this process goes on with the next. A lock whose process is gone (on the same
host) is taken over; one left by a dead process on another host has to be deleted by hand. The
process that finds nothing left to compute and nothing claimed by others writes the report.

The records (``results/``, with ``invocations/`` for the wall time) are the study: copied to another
machine's cache they continue it there. Weights are needed only by runs not yet recorded: a
pre-training whose probe, fine-tunings and reconstruction losses are all recorded is reused from
its record alone; otherwise it runs again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgmae.config import Config, ProbeConfig, flatten
from mgmae.data import SyntheticDataset, SyntheticVideos
from mgmae.data.synthetic import synthetic_videos
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.evaluate import classification_metrics
from mgmae.engine.extract import pooled_features
from mgmae.engine.finetune import finetune
from mgmae.engine.linprobe import probe_scores, train_probe
from mgmae.engine.probe import Tokens, score, train_attentive
from mgmae.engine.pretrain import build_model, masker_from_config, pretrain
from mgmae.experiments.plan import LABELS, NUM_CLASSES, Plan, Strategy
from mgmae.masking.metrics import tracking_rate
from mgmae.models import parse_name
from mgmae.models.build import SCRATCH, build_classifier, build_encoder
from mgmae.serialization import torch_load

__all__ = ["Busy", "MissingRun", "OthersRunning", "Study", "claim", "loadavg", "machine_info", "read_json",
           "read_loss_curve", "write_json"]

# keys that do not change a run's result (left out of the cache hash)
_NO_HASH = ("train.output_dir", "train.run_name", "train.num_workers", "train.tensorboard", "train.wandb",
            "train.log_every", "train.vis_clips", "train.resume", "train.save_every_steps",
            "train.save_every_epochs", "train.keep_last")


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


# Config keys added after studies were cached, with the value that reproduces the behaviour from
# before: hashed only when set to something else, so a new key does not invalidate cached runs.
_HASH_UNLESS = {"model.pos_embed": "sincos_1d", "flow.fallback": None, "data.synthetic_encode": False,
                "flow.batch_size": 32, "flow.amp": "auto", "masking.visible_count": "tube",
                "masking.exposure": "scaled", "masking.gauss_sigma": None, "data.list_format": "auto",
                "data.backend": "pyav", "data.frame_template": "img_{:05d}.jpg",
                "data.frame_start_index": 1, "data.pad": "loop", "data.max_fail_frac": 0.05,
                "data.max_tries": 10, "train.init_from": None, "train.weight_decay_end": None,
                "finetune.weight_decay_end": None, "masking.direction": None,
                "data.synthetic_speed": 1.0}
_HASH_UNLESS.update({f"probe.{f.name}": f.default for f in dataclasses.fields(ProbeConfig)})
# keys whose default changed without changing what runs: hashed as the old default
_HASH_AS = {("flow.iters", None): 6,  # null = the model's standard, 6 for raft_small (the old default)
            ("masking.visible_count", None): "tube", ("masking.exposure", None): "scaled"}


def _hashed_keys(cfg: Config) -> dict[str, Any]:
    """The flattened config entries that identify a run (see ``_NO_HASH``, ``_HASH_UNLESS``)."""
    flat = {k: _HASH_AS.get((k, v), v) if v is None else v for k, v in flatten(cfg.to_dict()).items()}
    if flat.get("masking.official_compat"):  # the switch: the official masks (not its old meaning)
        flat["masking.official_compat"] = "official masks"
    elif flat.get("masking.direction") is not None:
        # before masking.direction existed, official_compat=true meant the official direction
        # alone (and false the corrected one): hashed as then, so cached runs stay valid
        flat["masking.official_compat"] = flat.pop("masking.direction") == "official"
    return {k: v for k, v in flat.items()
            if k not in _NO_HASH and not (k in _HASH_UNLESS and v == _HASH_UNLESS[k])}


def _cfg_hash(cfg: Config, *extra: Any) -> str:
    return _hash([_hashed_keys(cfg), *extra])


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


def loadavg() -> list[float] | None:
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


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
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
    encoder.eval()
    return torch.cat([pooled_features(encoder, x[i:i + batch]).float()
                      for i in range(0, len(x), batch)]).numpy()


@torch.no_grad()
def _tokens(encoder, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """The frozen encoder's tokens ``(N, n_tokens, D)`` of clips ``x``, as float16 (the probe's cache)."""
    encoder.eval()
    return torch.cat([encoder.forward_features(x[i:i + batch]).to(torch.float16)
                      for i in range(0, len(x), batch)])


@torch.no_grad()
def _logits(model, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i:i + batch]).float() for i in range(0, len(x), batch)]).numpy()


# ============================================================================ the study
class MissingRun(RuntimeError):
    """``--report-only`` and a result is not in the cache."""


class OthersRunning(RuntimeError):
    """Everything this process could compute is done; ``busy`` runs are still with other processes
    (the last of them to finish writes the report)."""

    def __init__(self, busy: list["Busy"]):
        self.busy = busy
        pids = sorted({f"pid {b.holder.get('pid', '?')} on {b.holder.get('host', '?')}" for b in busy})
        super().__init__(f"{len(busy)} run(s) are still being computed by {', '.join(pids)}; "
                         "the last process to finish writes the report (or run the command again "
                         "when they are done)")


class Busy(RuntimeError):
    """Another live process has claimed this run (its lock file exists)."""

    def __init__(self, key: str, holder: dict[str, Any] | None):
        self.key = key
        self.holder = holder or {}
        who = f"pid {self.holder.get('pid', '?')} on {self.holder.get('host', '?')}"
        super().__init__(f"{key} is being computed by {who}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


@contextlib.contextmanager
def claim(lock: Path):
    """Hold ``lock`` (created exclusively, holding this process's id and host) while the body runs;
    raise :class:`Busy` when a live process holds it. A lock of a dead process on this host is
    taken over (a pre-training then resumes from its last checkpoint)."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_json(lock)
            if holder is None:  # being written this instant, or unreadable: somebody has it
                raise Busy(lock.stem, None) from None
            if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()  # stale: its process is gone
                continue
            raise Busy(lock.stem, holder) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        break
    else:
        raise Busy(lock.stem, read_json(lock))
    try:
        yield
    finally:
        if (read_json(lock) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


class Study:
    """Runs (or reads from the cache) every piece of a :class:`Plan`; :meth:`report` writes the
    Markdown file and the pictures."""

    def __init__(self, plan: Plan, *, log=print, cache_only: bool = False, jobs: int = 1):
        self.plan = plan
        self.jobs = max(1, int(jobs))  # processes sharing this study (their cores are split)
        self.cache_only = cache_only  # raise MissingRun instead of computing
        self.root = Path(plan.output_dir) / plan.name
        self.results = self.root / "results"
        self.logs = self.root / "logs"
        self.log = log
        self._eval: EvalData | None = None
        self._mask_items: dict[str, Any] = {}
        self._mask_x: torch.Tensor | None = None
        self.computed_seconds = 0.0  # work done by this invocation
        self.on_computed: Callable[[], None] | None = None  # called after every computed run
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
        rec = read_json(path)
        if rec is not None:
            return rec, True
        self._need(key)
        with claim(self.results / f"{key}.lock"):
            rec = read_json(path)  # finished by another process since the first look
            if rec is not None:
                return rec, True
            t0 = time.time()
            rec = compute()
            # (a run resumed after an interruption also counts the time spent before it)
            rec["seconds"] = round(time.time() - t0 + rec.pop("prior_seconds", 0.0), 1)
            write_json(path, rec)
        self.computed_seconds += time.time() - t0
        return rec, False

    # ------------------------------------------------------------------ progress
    def _step(self, what: str, seconds: float, cached: bool, extra: str = "") -> None:
        self.done += 1
        tag = "cached" if cached else f"{seconds:.0f} s"
        if not cached and self.on_computed is not None:
            self.on_computed()
        self.log(f"[study] ({self.done}/{self.total}) {what}: {extra}{' ' if extra else ''}({tag})")
        sys.stdout.flush()

    # ------------------------------------------------------------------ data
    def eval_data(self) -> EvalData:
        if self._eval is None:
            cfg = self.plan.config()
            d = cfg.data
            tr = synthetic_videos(d, encode=False)
            ev = synthetic_videos(d, self.plan.eval_videos, seed_offset=1, encode=False)
            t0 = time.time()
            train_x, train_y = _render(tr)
            eval_x, eval_y = _render(ev)
            self._eval = EvalData(train_x, train_y, eval_x, eval_y)
            self.log(f"[study] rendered {len(tr)} probe-training and {len(ev)} held-out videos "
                     f"({time.time() - t0:.0f} s)")
        return self._eval

    # ------------------------------------------------------------------ masks: tracking + examples
    def masks_key(self, strategy: Strategy, ablation: Strategy | None = None) -> str:
        cfg = self.strategy_cfg(strategy, 0, ablation)
        key_cfg = {k: v for k, v in _hashed_keys(cfg).items()
                   if k.startswith(("masking.", "flow.", "data.", "model."))}
        return f"masks-{self.masker_name(strategy, ablation)}-{_hash([key_cfg, self.plan.mask_clips])}"

    def masks(self, strategy: Strategy, ablation: Strategy | None = None) -> dict[str, Any]:
        """Masks of the held-out mask clips, tracking rates (GT flow) and the timing; cached."""
        name = self.masker_name(strategy, ablation)
        if name in self._mask_items:
            return self._mask_items[name]
        p = self.plan
        cfg = self.strategy_cfg(strategy, 0, ablation)
        d = cfg.data
        key = self.masks_key(strategy, ablation)
        path = self.results / f"{key}.json"
        mpath = self.results / f"{key}.pt"
        rec = read_json(path)
        videos = synthetic_videos(d, p.mask_clips, seed_offset=1)
        cached = rec is not None and mpath.is_file()
        if not cached:
            self._need(key)
            while True:  # masks are quick and every run needs them: wait for another process's
                try:
                    with claim(self.results / f"{key}.lock"):
                        rec = read_json(path)
                        cached = rec is not None and mpath.is_file()
                        if not cached:
                            rec = self._compute_masks(strategy, ablation, cfg, key, path, mpath, videos)
                    break
                except Busy:
                    time.sleep(2)
        masks = torch_load(mpath)
        out = dict(rec)
        out["masks"] = masks
        out["videos"] = videos
        self._mask_items[name] = out
        tm, ta = rec["tracking_moving"], rec["tracking_all"]
        self._step(f"masks {name}", rec["seconds"], cached,
                   f"tracking moving {tm[0] / max(tm[1], 1):.3f}, all {ta[0] / max(ta[1], 1):.3f};")
        return out

    def _compute_masks(self, strategy: Strategy, ablation: Strategy | None, cfg: Config, key: str,
                       path: Path, mpath: Path, videos: SyntheticVideos) -> dict[str, Any]:
        name = self.masker_name(strategy, ablation)
        d = cfg.data
        t0 = time.time()
        patch = parse_name(cfg.model.name)[2]
        masker = masker_from_config(cfg, patch)
        codec = cfg.flow.name == "codec" and cfg.masking.name == "motion_guided"
        if codec and not d.synthetic_encode:
            raise ValueError(f"study strategy {strategy.name!r}: flow.name=codec needs "
                             "data.synthetic_encode=true")
        ds = SyntheticDataset(videos, masker=masker, num_sample=1, train=False,
                              gt_flow=cfg.flow.name == "gt", codec_flow=codec, seed=12345)
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
        write_json(path, rec)
        self.computed_seconds += rec["seconds"]
        return rec

    # ------------------------------------------------------------------ pre-training
    def pretrain(self, strategy: Strategy, seed: int, ablation: Strategy | None = None, *,
                 need_weights: bool = True) -> dict[str, Any]:
        """The pre-training record; ``need_weights=False`` (every run that uses the encoder is
        recorded) accepts a record whose checkpoint is gone, e.g. a ``results/`` directory copied
        from another machine."""
        key = self.pretrain_key(strategy, seed, ablation)
        path = self.results / f"{key}.json"
        rec = read_json(path)
        run_dir = self.root / key

        def usable(rec) -> bool:
            return rec is not None and (not need_weights or (run_dir / "checkpoint-final.pth").is_file())

        if usable(rec):
            self._step(f"pre-train {key}", rec["seconds"], True, f"loss end {rec['loss_end']:.4f};")
            return rec
        self._need(key)
        with claim(self.results / f"{key}.lock"):
            rec = read_json(path)  # finished by another process since the first look
            if usable(rec):
                self._step(f"pre-train {key}", rec["seconds"], True, f"loss end {rec['loss_end']:.4f};")
                return rec
            return self._pretrain(strategy, seed, ablation, key, path, run_dir)

    def _pretrain(self, strategy: Strategy, seed: int, ablation: Strategy | None, key: str, path: Path,
                  run_dir: Path) -> dict[str, Any]:
        cfg = self.strategy_cfg(strategy, seed, ablation)
        cfg.train.output_dir = str(self.root)
        cfg.train.run_name = key
        cfg.train.resume = "auto"
        cfg.train.vis_clips = 0
        cfg.train.tensorboard = False
        t0 = time.time()
        prior = read_json(run_dir / "study_seconds.json") or {"seconds": 0.0}  # earlier partial runs
        try:
            with _quiet(self.logs / f"{key}.log"):
                pretrain(cfg)
        finally:
            write_json(run_dir / "study_seconds.json", {"seconds": prior["seconds"] + time.time() - t0})
        seconds = prior["seconds"] + time.time() - t0
        curve = read_loss_curve(run_dir / "log.jsonl")
        tail = curve[-self.plan.loss_tail:]
        rec = {"key": key, "strategy": strategy.name, "ablation": ablation.name if ablation else None,
               "seed": seed, "steps": len(curve), "loss_curve": curve,
               "loss_end": float(np.mean(tail)) if tail else float("nan"),
               "loss_start": float(np.mean(curve[:self.plan.loss_tail])) if curve else float("nan"),
               "seconds": round(seconds, 1), "checkpoint": str(run_dir / "checkpoint-final.pth")}
        write_json(path, rec)
        self.computed_seconds += time.time() - t0
        self._step(f"pre-train {key}", seconds, False, f"loss end {rec['loss_end']:.4f};")
        return rec

    # ------------------------------------------------------------------ linear probe
    def linprobe_key(self, enc_key: str, seed: int) -> str:
        cfg = self.plan.config()
        f = cfg.finetune
        settings = [enc_key, f.linprobe_bn, f.linprobe_epochs, f.linprobe_lr, f.linprobe_weight_decay,
                    flatten(cfg.to_dict())["data.synthetic_videos"], self.plan.eval_videos,
                    cfg.data.synthetic_seed, seed]
        return f"lp-{enc_key}-{_hash(settings)}"

    def linprobe(self, enc_key: str, checkpoint: str, seed: int) -> dict[str, Any]:
        cfg = self.plan.config()
        cfg.train.seed = seed
        f = cfg.finetune
        key = self.linprobe_key(enc_key, seed)

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

    # ------------------------------------------------------------------ attentive probe
    def attentive_key(self, enc_key: str, seed: int) -> str:
        cfg = self.plan.config()
        settings = [enc_key, dataclasses.asdict(cfg.probe), cfg.data.synthetic_videos,
                    self.plan.eval_videos, cfg.data.synthetic_seed, seed]
        return f"ap-{enc_key}-{_hash(settings)}"

    def attentive(self, enc_key: str, checkpoint: str, seed: int) -> dict[str, Any]:
        """The attentive probe (:mod:`mgmae.engine.probe`) of the frozen encoder on the centre
        views the linear probe uses: trained on the training videos, top-1 on the held-out ones."""
        cfg = self.plan.config()
        cfg.train.seed = seed
        key = self.attentive_key(enc_key, seed)

        def compute() -> dict[str, Any]:
            data = self.eval_data()
            torch.manual_seed(seed)
            encoder = build_encoder(checkpoint, cfg)
            t_tr, t_ev = _tokens(encoder, data.train_x), _tokens(encoder, data.eval_x)
            rec = {"key": key, "encoder": enc_key, "seed": seed, "tokens": list(t_tr.shape[1:])}
            for lab in self.plan.labels:
                K = NUM_CLASSES[lab]
                train = Tokens(t_tr, data.train_y[lab], encoder.num_heads)
                head, hist = train_attentive(train, K, cfg, seed=seed, progress=False)
                tr = classification_metrics(score(head, train), data.train_y[lab], K)
                ev = classification_metrics(score(head, Tokens(t_ev, data.eval_y[lab])), data.eval_y[lab], K)
                rec[lab] = {"train_acc1": tr["top1"], "acc1": ev["top1"], "acc5": ev["top5"],
                            "loss_end": hist[-1]["loss"]}
            return rec

        rec, cached = self._cached(key, compute)
        accs = ", ".join(f"{lab} {rec[lab]['acc1']:.1f}%" for lab in self.plan.labels)
        self._step(f"attentive probe {enc_key}", rec["seconds"], cached, accs + ";")
        return rec

    # ------------------------------------------------------------------ fine-tuning
    def _finetune_cfg(self, enc_key: str, seed: int, label: str) -> tuple[Config, str]:
        p = self.plan
        cfg = p.config(p.finetune_overrides)
        cfg.train.seed = seed
        cfg.train.max_steps = p.finetune_steps
        cfg.data.synthetic_label = label
        return cfg, f"ft-{enc_key}-{label}-{_cfg_hash(cfg, enc_key, p.eval_videos)}"

    def finetune(self, enc_key: str, checkpoint: str, seed: int, label: str) -> dict[str, Any]:
        cfg, key = self._finetune_cfg(enc_key, seed, label)
        run_dir = self.root / key  # train.output_dir / train.run_name

        def compute() -> dict[str, Any]:
            cfg.train.output_dir = str(self.root)
            cfg.train.run_name = key
            cfg.train.resume = "auto"
            t0 = time.time()
            prior = read_json(run_dir / "study_seconds.json") or {"seconds": 0.0}  # earlier partial runs
            try:
                with _quiet(self.logs / f"{key}.log"):
                    res = finetune(cfg, checkpoint, progress=False)
            finally:
                write_json(run_dir / "study_seconds.json", {"seconds": prior["seconds"] + time.time() - t0})
            data = self.eval_data()
            model = build_classifier(res.checkpoints["final"], cfg)
            K = model.head.out_features
            scores = torch.as_tensor(_logits(model, data.eval_x)).softmax(-1).numpy()
            m = classification_metrics(scores, data.eval_y[label], K)
            # the engine's validation curve (finetune.eval_every, synthetic_val_videos): equal-epoch
            # comparisons, as --compare-scratch makes them
            curve = [{"epoch": int(h["epoch"]), "acc1": float(h["val_acc1"])}
                     for h in res.history if h.get("val_acc1") is not None]
            return {"key": key, "encoder": enc_key, "seed": seed, "label": label, "prior_seconds": prior["seconds"],
                    "acc1": m["top1"], "acc5": m["top5"], "steps": res.steps,
                    "train_loss_end": _last_loss(run_dir / "log.jsonl"), "curve": curve,
                    "best_val_acc1": res.best_acc1, "best_epoch": res.best_epoch}

        rec, cached = self._cached(key, compute)
        if not cached:  # stored: the numbers are kept, the weights are not
            for ck in run_dir.glob("checkpoint-*.pth"):
                ck.unlink()
        self._step(f"fine-tune {enc_key} on {label} labels", rec["seconds"], cached,
                   f"top-1 {rec['acc1']:.1f}%;")
        return rec

    # ------------------------------------------------------------------ held-out reconstruction
    def recon_key(self, pt_key: str, maskers: list[str]) -> str:
        return f"recon-{pt_key}-{_hash([maskers, self.plan.mask_clips])}"

    def heldout_loss(self, pt: dict[str, Any], maskers: list[str]) -> dict[str, float]:
        """Reconstruction loss of one pre-trained model on the held-out mask clips under each
        masker's masks (the same clips and masks for every model)."""
        key = self.recon_key(pt["key"], maskers)

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
            v = self._mask_items[name]["videos"]  # the rendered clips, never the H.264-decoded ones
            v = SyntheticVideos(v.num_videos, v.num_frames, v.img_size, seed=v.seed, speed=v.speed)
            ds = SyntheticDataset(v, num_sample=1, train=False)
            self._mask_x = torch.stack([ds[i]["video"][0] for i in range(len(ds))])
        return self._mask_x

    # ------------------------------------------------------------------ everything
    def count(self) -> int:
        p = self.plan
        runs = self.encoder_runs()
        maskers = len(p.strategies) + sum(len(a.variants) for a in p.ablations)
        n_main = sum(kind == "main" for kind, *_ in runs)
        n_abl = len(runs) - n_main
        per_encoder = 3 + len(p.labels)  # pre-train, linear probe, attentive probe, fine-tunes
        abl = 3 + (len(p.labels) if p.ablation_finetune else 0)
        scratch = len(p.seeds) * (2 + len(p.labels))
        return maskers + n_main * per_encoder + n_abl * abl + scratch

    def tasks(self) -> list[tuple[str, str]]:
        """``(what, key)`` for every run of the plan, in the order :meth:`run` takes them (those
        of :meth:`count` and the reconstruction losses); a run is recorded when
        ``results/<key>.json`` exists (:meth:`recorded`)."""
        p = self.plan
        out = [(f"masks {self.masker_name(s)}", self.masks_key(s)) for s in p.strategies]
        if p.ablations:
            ref = p.strategy(p.ablation_reference)
            out += [(f"masks {self.masker_name(ref, v)}", self.masks_key(ref, v))
                    for a in p.ablations for v in a.variants]
        runs = self.encoder_runs()
        main_maskers = [s.name for s in p.strategies]
        for seed in p.seeds:
            scratch = f"{SCRATCH}-s{seed}"
            out.append((f"linear probe {scratch}", self.linprobe_key(scratch, seed)))
            out.append((f"attentive probe {scratch}", self.attentive_key(scratch, seed)))
            out += [(f"fine-tune {scratch} on {lab} labels", self._finetune_cfg(scratch, seed, lab)[1])
                    for lab in p.labels]
            for kind, s, v, sd in runs:
                if kind == "main" and sd == seed:
                    out += self._encoder_tasks(s, seed, v, main_maskers, True)
        for kind, s, v, seed in runs:
            if kind == "ablation":
                out += self._encoder_tasks(s, seed, v, [self.masker_name(s, v)], p.ablation_finetune)
        return out

    def _encoder_tasks(self, s: Strategy, seed: int, v: Strategy | None, maskers: list[str],
                       finetune: bool) -> list[tuple[str, str]]:
        enc = self.pretrain_key(s, seed, v)
        name = self.masker_name(s, v)
        out = [(f"pre-train {name} seed {seed}", enc), (f"linear probe {enc}", self.linprobe_key(enc, seed)),
               (f"attentive probe {enc}", self.attentive_key(enc, seed))]
        out += [(f"fine-tune {enc} on {lab} labels", self._finetune_cfg(enc, seed, lab)[1])
                for lab in (self.plan.labels if finetune else ())]
        return out + [(f"reconstruction loss {enc}", self.recon_key(enc, maskers))]

    def recorded(self, key: str) -> bool:
        return (self.results / f"{key}.json").is_file()

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
        """Torch threads of this process: by default one per core of its share (``cores // jobs``)
        not taken by a loader worker.
        Oversubscribed cores make every small tensor op wait for a descheduled OpenMP thread
        (measured here: 10x slower masking, 2-5x slower training steps with 2 threads + 1 worker
        on 2 cores)."""
        if self.plan.threads:
            return self.plan.threads
        workers = self.plan.config().train.num_workers
        return max(1, (os.cpu_count() or 1) // self.jobs - workers)

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
        records: dict[str, Any] = {"pretrain": [], "linprobe": [], "attentive": [], "finetune": [],
                                   "recon": []}
        busy: list[Busy] = []

        def unit(fn, *args, **kw) -> None:  # a run and the runs that need it; left to its claimant
            try:
                fn(*args, **kw)
            except Busy as e:
                busy.append(e)
                self.log(f"[study] {e}: left to it")

        for seed in p.seeds:
            # baseline: no pre-training
            scratch = f"{SCRATCH}-s{seed}"
            unit(_append, records["linprobe"], self.linprobe, scratch, SCRATCH, seed)
            unit(_append, records["attentive"], self.attentive, scratch, SCRATCH, seed)
            for lab in p.labels:
                unit(_append, records["finetune"], self.finetune, scratch, SCRATCH, seed, lab)
            for s in p.strategies:
                unit(self._encoder, s, seed, None, records, main_maskers)
        for seed in p.ablation_seeds if p.ablations else []:
            ref = p.strategy(p.ablation_reference)
            for a in p.ablations:
                for v in a.variants:
                    unit(self._encoder, ref, seed, v, records, [self.masker_name(ref, v)],
                         finetune=p.ablation_finetune)
        if busy:
            raise OthersRunning(busy)
        records["threads"] = threads
        records["wall_seconds"] = round(time.time() - t0, 1)
        records["computed_seconds"] = round(self.computed_seconds, 1)
        return records

    def _encoder(self, s: Strategy, seed: int, v: Strategy | None, records, maskers,
                 finetune: bool = True) -> None:
        uses = self._encoder_tasks(s, seed, v, maskers, finetune)[1:]  # the runs that need its weights
        pt = self.pretrain(s, seed, v, need_weights=not all(self.recorded(k) for _, k in uses))
        records["pretrain"].append(pt)
        enc = pt["key"]
        records["linprobe"].append(self.linprobe(enc, pt["checkpoint"], seed))
        records["attentive"].append(self.attentive(enc, pt["checkpoint"], seed))
        for lab in self.plan.labels if finetune else ():
            records["finetune"].append(self.finetune(enc, pt["checkpoint"], seed, lab))
        records["recon"].append({"pretrain": enc, "loss": self.heldout_loss(pt, maskers)})


def _append(out: list, fn, *args) -> None:
    out.append(fn(*args))


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
