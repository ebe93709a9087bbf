"""What the pre-training and fine-tuning loops share, written once.

* :class:`Stepper`: one optimizer step out of ``accum`` micro-batches: DDP ``no_sync`` / FSDP
  gradient-sync switching, autocast, fp16 loss scaling, the lr schedule, gradient clipping and the
  non-finite guard (a step with a NaN/inf loss or gradient is skipped on every rank; too many in a
  row stop the run with advice).
* :class:`StepLog`: the per-step JSONL record, TensorBoard scalars and the progress bar.
* :class:`Signals` / :func:`check_preempt`: SIGTERM/SIGUSR1 finish the step, write a resume point
  and exit with :data:`PREEMPTED_EXIT_CODE`; Ctrl-C (SIGINT) does the same once and exits 130, a
  second Ctrl-C aborts at once.
* device / autocast choice, the run directory, resume-point lookup and the end-of-run summary.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mgmae.config import flatten
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.distributed import (DistInfo, all_reduce_mean, broadcast_flag, cleanup,
                                     init_distributed)
from mgmae.engine.optim import set_lr, set_weight_decay
from mgmae.errors import MgmaeError, check_output
from mgmae.models.vit import random_spread, token_statistics

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "stopped on a signal after saving; resume me"
INTERRUPTED_EXIT_CODE = 130  # the shell's code for a Ctrl-C


class Preempted(SystemExit):
    """Raised after a resume checkpoint was written on SIGTERM/SIGUSR1 (exit 75) or Ctrl-C (130)."""

    def __init__(self, path: Path, code: int = PREEMPTED_EXIT_CODE):
        super().__init__(code)
        self.path = path


class Signals:
    """SIGTERM/SIGUSR1 and a first Ctrl-C set a flag; the loop finishes its step, saves and exits.
    A second Ctrl-C raises KeyboardInterrupt at once (no checkpoint)."""

    def __init__(self):
        self.caught: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            if self.caught == signal.SIGINT:
                raise KeyboardInterrupt
            print("\n[mgmae] Ctrl-C: finishing this step and writing a checkpoint (Ctrl-C again "
                  "to abort without one)", flush=True)
        self.caught = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


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


def set_cpu_threads(device: torch.device, num_workers: int, info: DistInfo) -> None:
    """On CPU, leave a core to each loader worker (they decode, crop and compute flow in parallel):
    the training process gets ``cores / processes - workers`` intra-op threads, at least one.
    An explicit ``OMP_NUM_THREADS`` wins. Oversubscribed cores made the demo ~2x slower."""
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // info.world_size - num_workers))


RUN_STAMP = "%Y%m%d-%H%M%S"


def run_directory(cfg, info: DistInfo | None = None, prefix: str | None = None,
                  created: list[Path] | None = None) -> Path:
    """``train.output_dir / train.run_name``; without a run name a new ``<prefix>-<time>``
    (``prefix`` defaults to ``<model>-<masker>``), except with ``train.resume=auto``: then the
    newest ``<prefix>-<time>`` run under ``output_dir`` that holds a checkpoint is continued (and
    named), a new one started only when there is none. Leftover ``.*.tmp`` files of a writer
    killed mid-save are removed."""
    t = cfg.train
    check_output(t.output_dir, "train.output_dir", directory=True)
    if t.wandb:
        import_wandb()  # before anything is written: a missing package is said at once
    prefix = prefix or f"{cfg.model.name}-{cfg.masking.name}"
    main = info is None or info.is_main
    name = t.run_name
    if name is None and main:
        name = f"{prefix}-{datetime.now().strftime(RUN_STAMP)}"
        if t.resume == "auto":
            earlier = _newest_run(Path(t.output_dir), prefix)
            if earlier is not None:
                name = earlier.name
                print(f"[mgmae] --resume auto without train.run_name: continuing the newest "
                      f"{prefix} run, {earlier} (set train.run_name to choose another)")
            else:
                print(f"[mgmae] --resume auto without train.run_name: no earlier {prefix} run "
                      f"with a checkpoint under {t.output_dir}; starting {name}")
    if info is not None and info.enabled:  # every rank must agree on rank 0's name
        box = [name]
        dist.broadcast_object_list(box, src=0)
        name = box[0]
    path = Path(t.output_dir) / name
    if created is not None and not path.exists():
        created.append(path)
    path.mkdir(parents=True, exist_ok=True)
    if main:
        for tmp in path.glob(".*.tmp"):  # atomic_save's temp files: never a valid checkpoint
            tmp.unlink(missing_ok=True)
    return path


def run_distributed(device: str, body: Callable[[DistInfo, torch.device, list[Path]], Any]) -> Any:
    """Run a training job: ``body(info, device, created)`` inside ``torch.distributed`` (or a
    single process), always cleaned up; ``body`` lists the run directories it creates in
    ``created``, and a job that fails before its first step leaves none of them behind."""
    info, dev = init_distributed(device)
    created: list[Path] = []
    try:
        return body(info, dev, created)
    except Exception:
        if info.is_main:
            for d in created:
                discard_if_empty(d)
        raise
    finally:
        cleanup()


def discard_if_empty(run_dir: Path) -> None:
    """Remove a run directory that a failed run created and left without a checkpoint or a
    logged step (only its config): it would be mistaken for a run."""
    if not run_dir.is_dir() or any(run_dir.glob("checkpoint-*.pth")):
        return
    log = run_dir / "log.jsonl"
    if log.is_file() and any('"step"' in line for line in log.read_text().splitlines()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)


def _newest_run(root: Path, prefix: str) -> Path | None:
    pattern = re.compile(re.escape(prefix) + r"-\d{8}-\d{6}")
    runs = [d for d in root.glob(f"{glob.escape(prefix)}-*") if d.is_dir() and pattern.fullmatch(d.name)
            and any(d.glob("checkpoint-*.pth"))]
    return max(runs, key=lambda d: d.name) if runs else None


def find_resume(run_dir: Path, resume: str | None, prefer: tuple[str, ...] | None = None) -> Path | None:
    """The path :func:`load_resume` picks (None: start at step 0)."""
    return load_resume(run_dir, resume, prefer)[0]


def load_resume(run_dir: Path, resume: str | None, prefer: tuple[str, ...] | None = None,
                map_location: str | torch.device = "cpu") -> tuple[Path | None, dict | None]:
    """The checkpoint to resume from: ``resume`` itself when it is a path; for ``auto`` the first
    loadable file of ``prefer`` (names in ``run_dir``, in order) or, without ``prefer``, the newest
    loadable ``checkpoint-*.pth``. Unreadable files are skipped with a note; when there are
    checkpoints but none is readable, a ValueError says so (a run asked to resume never silently
    starts over); with no checkpoint at all (a first launch) the run starts and says so."""
    if resume is None:
        return None, None
    if resume != "auto":
        return Path(resume), ckpt.load_checkpoint(resume, map_location=map_location)
    if prefer is not None:
        found = [run_dir / n for n in prefer if (run_dir / n).is_file()]
    else:
        found = sorted(run_dir.glob("checkpoint-*.pth"), key=lambda p: p.stat().st_mtime, reverse=True)
    reasons = []
    for p in found:
        try:
            return p, ckpt.load_checkpoint(p, map_location=map_location)
        except (ValueError, OSError) as e:
            reasons.append(f"{p.name}: {e}")
            print(f"[mgmae] skipping unreadable checkpoint {p}")
    if found:
        raise ValueError(f"--resume auto: none of the {len(found)} checkpoints in {run_dir} can be "
                         f"read, so the run stops instead of starting over ({'; '.join(reasons)}). "
                         f"Resume from a good file with --resume PATH, or move them away to start anew")
    print(f"[mgmae] --resume auto: no checkpoint in {run_dir} yet; starting at step 0")
    return None, None


# the config keys that decide the shapes of a run's weights
ARCH_KEYS = ("model.name", "model.tubelet_size", "model.decoder_depth", "model.decoder_embed_dim",
             "model.decoder_num_heads", "model.pos_embed", "data.num_frames", "data.img_size")


def check_resumable(state: dict, cfg, path: Path, kind: str, keys: tuple[str, ...] = ARCH_KEYS) -> None:
    """Refuse to resume a checkpoint of another kind or architecture (before the run dir is
    touched): a ValueError listing the keys that differ."""
    if state.get("kind") != kind:
        raise ValueError(f"{path} is a {state.get('kind')!r} checkpoint, not a "
                         f"{'pre-training' if kind == 'pretrain' else 'fine-tuning'} one")
    old, new = flatten(state.get("config") or {}), flatten(cfg.to_dict())
    diff = [f"{k}={old[k]!r} (this run: {new.get(k)!r})" for k in keys if k in old and old[k] != new.get(k)]
    if diff:
        raise ValueError(f"cannot resume {path}: it was written by another architecture: "
                         f"{', '.join(diff)}. Resume with the run's own config (its config.yaml), "
                         f"or start a new run (another train.run_name)")


# keys that say where and how a run is carried out, not what it computes
NOT_COMPARED = ("train.resume", "train.output_dir", "train.run_name", "train.num_workers")


def finished_run(state: dict, cfg, path: Path, total_steps: int, main: bool = True) -> bool:
    """Resuming a run whose ``state`` already holds ``total_steps`` steps: there is nothing to run,
    so nothing may be rewritten (config.yaml, the final checkpoint, the log's summary). Returns
    True (and says so) when ``cfg`` is the run's own config; a config that differs in anything but
    :data:`NOT_COMPARED` is refused with a ValueError naming the keys, since none of it would be
    applied. False when steps are left to run (a longer schedule continues the run)."""
    if state["step"] < total_steps:
        return False
    old, new = flatten(state.get("config") or {}), flatten(cfg.to_dict())
    diff = [f"{k}={old[k]!r} (now {new[k]!r})" for k in sorted(old.keys() & new.keys())
            if k not in NOT_COMPARED and old[k] != new[k]]
    if diff:
        raise ValueError(f"{path.parent} is a finished run ({state['step']} of {total_steps} steps) and "
                         f"this config differs from its own in {', '.join(diff)}; nothing would run "
                         f"with it, so nothing is rewritten. Start a new run for these settings "
                         f"(another train.run_name), or raise train.epochs / train.max_steps to "
                         f"train this one longer")
    if main:
        print(f"[mgmae] {path.parent} is already finished ({state['step']} of {total_steps} steps; "
              f"{path.name}): nothing to run, nothing rewritten (train longer with a larger "
              f"train.epochs or train.max_steps)")
    return True


def truncate_log(path: Path, step: int, resumed_from: Path) -> None:
    """Before a resumed run appends to ``log.jsonl``: drop the records of steps after ``step``
    (they are redone) and the old end-of-run summary, then mark the resume, so the log stays one
    record per step."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by a killed writer
            continue
        if "summary" in rec or (isinstance(rec.get("step"), int) and rec["step"] > step):
            continue
        keep.append(line)
    keep.append(json.dumps({"step": step, "resumed_from": str(resumed_from)}))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(keep) + "\n")
    os.replace(tmp, path)


def import_wandb():
    try:
        import wandb  # optional, not a dependency
    except ImportError:
        raise MgmaeError("train.wandb is set but Weights & Biases is not installed: pip install wandb "
                         "(or set train.wandb=null)") from None
    return wandb


class ScalarSinks:
    """Where scalars go besides ``log.jsonl``: TensorBoard (``<run>/tb``, when installed and
    ``tensorboard``) and Weights & Biases (project ``wandb``; ``WANDB_MODE=offline`` writes under
    ``<run>/wandb`` without network). ``log(values, step)`` sends ``{name: value}`` to each."""

    def __init__(self, run_dir: Path, *, tensorboard: bool, wandb: str | None, config: dict | None):
        self.tb = self.wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional dependency
            except Exception:  # tensorboard not installed: JSONL only
                SummaryWriter = None
            self.tb = SummaryWriter(str(run_dir / "tb")) if SummaryWriter is not None else None
        if wandb:  # the run directory's name is the W&B run id: a resumed run continues it
            run_id = re.sub(r"[^A-Za-z0-9_-]", "-", run_dir.name)
            self.wandb = import_wandb().init(project=wandb, name=run_dir.name, id=run_id, resume="allow",
                                             dir=str(run_dir), config=config)

    def log(self, values: dict, step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.tb = self.wandb = None


def check_any_video_exists(dataset) -> None:
    """For a dataset too small for one step: when none of its files exists, that is the cause to
    say (not the batch size). Cheap: only called on datasets smaller than one batch."""
    entries = getattr(dataset, "entries", None)
    if entries and not any(os.path.exists(e.path) for e in entries):
        raise FileNotFoundError(f"none of the {len(entries)} videos of the list exists (e.g. "
                                f"{entries[0].path}); check the paths, or data.root for relative ones")


def data_report(dataset) -> dict:
    """The training data's faults for the end-of-run summary (what this process saw, workers'
    reports merged): ``data_unreadable`` videos skipped, ``data_replaced`` samples answered by
    another video, ``data_short`` videos shorter than one clip (padded), and a ``data_message``
    line when any of them is not 0. Empty for datasets that cannot fail (synthetic)."""
    if not hasattr(dataset, "failure_report"):
        return {}
    r = dataset.failure_report()
    out = {"data_unreadable": r["num_failed"], "data_replaced": r["num_skipped"],
           "data_short": r.get("num_short", 0)}
    said = []
    if r["num_failed"] or r["num_skipped"]:
        said.append(f"{r['num_failed']} of {r['num_videos']} videos unreadable, skipped "
                    f"({r['num_skipped']} samples replaced by other videos)")
    if out["data_short"]:
        example = next(iter(r["short"].items()))
        said.append(f"{out['data_short']} videos shorter than one clip, padded (data.pad="
                    f"{getattr(dataset, 'pad', '?')}; e.g. {example[0]}: {example[1]} frames)")
    if said:
        out["data_message"] = "data: " + "; ".join(said)
    return out


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


class StepLog:
    """Rank 0's per-step record: ``log.jsonl`` (every ``log_every`` steps and the last one),
    scalars under ``<prefix>/`` to TensorBoard and W&B (:class:`ScalarSinks`), and the progress
    bar. Other ranks get a no-op."""

    def __init__(self, run_dir: Path, *, main: bool, prefix: str, total_steps: int, initial: int,
                 log_every: int = 1, tensorboard: bool = True, progress: bool = True,
                 wandb: str | None = None, config: dict | None = None):
        self.main, self.prefix, self.total_steps, self.log_every = main, prefix, total_steps, log_every
        self.path = run_dir / "log.jsonl"
        self.file = self.path.open("a") if main else None
        self.sinks = ScalarSinks(run_dir, tensorboard=tensorboard, wandb=wandb, config=config) if main else None
        self.bar = tqdm(total=total_steps, initial=initial, desc=prefix, unit="step", dynamic_ncols=True,
                        disable=not (main and progress))

    def record(self, rec: dict, *, flush: bool = True) -> None:
        """Append any record (skipped updates, validation results) to the JSONL log."""
        if self.main:
            self.file.write(json.dumps(rec) + "\n")
            if flush:
                self.file.flush()

    def scalars(self, values: dict, step: int) -> None:
        if self.sinks is not None:
            self.sinks.log({f"{self.prefix}/{k}": v for k, v in values.items()}, step)

    def step(self, rec: dict) -> None:
        if not self.main:
            return
        if rec["step"] % self.log_every == 0 or rec["step"] == self.total_steps:
            self.record(rec)
        self.scalars({k: rec[k] for k in ("loss", "lr", "weight_decay", "grad_norm", "clips_per_s") if k in rec},
                     rec["step"])
        self.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", clips_s=rec["clips_per_s"])
        self.bar.update(1)

    def write(self, msg: str) -> None:
        if self.main:
            self.bar.write(msg)

    def close(self) -> None:
        self.bar.close()
        if self.file is not None and not self.file.closed:
            self.file.close()
        if self.sinks is not None:
            self.sinks.close()


@dataclass
class StepResult:
    bad: bool  # the update was skipped (non-finite loss or gradient)
    grad_norm: float
    loss: float  # mean over ranks of the accumulated loss
    clips_per_s: float  # this rank's clips per second since ``t_data``


class Stepper:
    """Gradient accumulation and the optimizer update, the same for every training loop.

    Per micro-batch call :meth:`backward` with a closure that returns the loss (it runs under
    autocast and, except on the last micro-batch of a step, under DDP ``no_sync``); when it returns
    True an update is due: call :meth:`update`.
    """

    def __init__(self, model: torch.nn.Module, ddp: torch.nn.Module, optimizer, *, accum: int,
                 dtype: torch.dtype | None, scaler, clip_grad: float | None, max_bad_steps: int,
                 info: DistInfo, device: torch.device, log: StepLog, fsdp: bool = False,
                 config_prefix: str = "train"):
        self.model, self.ddp, self.optimizer = model, ddp, optimizer
        self.accum, self.dtype, self.scaler = accum, dtype, scaler
        self.clip_grad, self.max_bad_steps = clip_grad, max_bad_steps
        self.info, self.device, self.log, self.fsdp = info, device, log, fsdp
        self.config_prefix = config_prefix
        self.bad_steps = 0
        self._reset()

    def _reset(self) -> None:
        self.micro, self.loss_acc, self.clips, self.finite = 0, 0.0, 0, True

    def discard(self) -> None:
        """Drop the micro-batches accumulated since the last update (a stop mid-step)."""
        self.optimizer.zero_grad(set_to_none=True)
        self._reset()

    def backward(self, compute_loss: Callable[[], torch.Tensor], clips: int) -> bool:
        self.micro += 1
        sync = self.micro == self.accum
        if self.fsdp:
            self.ddp.set_requires_gradient_sync(sync)
        no_sync = not (sync or not self.info.enabled or self.fsdp)
        with self.ddp.no_sync() if no_sync else nullcontext():
            with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext():
                loss = compute_loss()
            value = loss.item()
            self.finite &= math.isfinite(value)
            loss = loss / self.accum
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        self.loss_acc += value / self.accum
        self.clips += clips
        return sync

    def update(self, step: int, lr: float, t_data: float, weight_decay: float | None = None) -> StepResult:
        """Apply (or skip) the accumulated gradients as optimizer step ``step + 1`` at ``lr`` (and
        ``weight_decay`` on the decaying groups; None: as they are)."""
        set_lr(self.optimizer, lr)
        if weight_decay is not None:
            set_weight_decay(self.optimizer, weight_decay)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad or float("inf")))
        bad = broadcast_flag(not (self.finite and math.isfinite(gnorm)), self.info, self.device)
        if bad:  # skip the update; stop after max_bad_steps in a row
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps += 1
            self.log.write(f"[mgmae] step {step + 1}: non-finite loss/gradient (loss {self.loss_acc}, "
                           f"grad norm {gnorm}); update skipped ({self.bad_steps} in a row)")
            self.log.record({"step": step + 1, "skipped_update": True, "loss": str(self.loss_acc),
                             "grad_norm": str(gnorm)})
            if self.bad_steps >= self.max_bad_steps:
                p = self.config_prefix
                raise FloatingPointError(
                    f"{self.bad_steps} consecutive steps with a non-finite loss or gradient (last at step "
                    f"{step + 1}); lower {p}.lr / blr, set {p}.clip_grad, or use train.amp=bf16")
        else:
            self.bad_steps = 0
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        loss, clips_s = all_reduce_mean([self.loss_acc, self.clips / max(time.time() - t_data, 1e-9)],
                                        self.info, self.device)
        self._reset()
        return StepResult(bad, gnorm, loss, clips_s)


def check_preempt(signals: Signals, step: int, stop_at_step: int | None, info: DistInfo,
                  device: torch.device, save: Callable[[], Path], log: StepLog,
                  save_every_steps: int = 0, total_steps: int | None = None) -> None:
    """After an optimizer step: on a caught signal (or at ``stop_at_step``, as tests simulate
    one) write the resume point with ``save()`` and raise :class:`Preempted`; otherwise write one
    every ``save_every_steps`` steps (not at the last step: the final checkpoint follows)."""
    stop = broadcast_flag(signals.caught is not None or step == stop_at_step, info, device)
    periodic = bool(save_every_steps) and step % save_every_steps == 0 and step != total_steps
    if not (stop or periodic):
        return
    path = save()
    if stop:
        log.close()
        code = INTERRUPTED_EXIT_CODE if signals.caught == signal.SIGINT else PREEMPTED_EXIT_CODE
        if info.is_main:
            reason = f"signal {signals.caught}" if signals.caught is not None else f"stop_at_step={stop_at_step}"
            print(f"[mgmae] stopped on {reason} at step {step}; resume point {path} (continue with "
                  f"--resume auto); exit code {code}")
        raise Preempted(path, code)


@dataclass
class Position:
    """Where a run is: optimizer steps done, epochs done, steps done in the current epoch."""

    step: int = 0
    epoch: int = 0
    steps_in_epoch: int = 0


def train_epoch(loader, dataset, batch_loss: Callable[[dict], tuple[Callable[[], torch.Tensor], int]],
                *, pos: Position, total_steps: int, stepper: Stepper,
                lr_at_step: Callable[[int], float], log: StepLog, signals: Signals,
                wd_at_step: Callable[[int], float] | None = None,
                saver: ckpt.CheckpointSaver, info: DistInfo, device: torch.device,
                stop_at_step: int | None = None, save_every_steps: int = 0,
                after_update: Callable[[int], None] | None = None) -> list[float]:
    """One epoch of the training loop, the same for pre-training and fine-tuning; returns the
    losses of its good (not skipped) optimizer steps and advances ``pos``.

    ``wd_at_step`` (None: constant) schedules the weight decay, logged next to the lr.
    ``batch_loss(batch)`` moves a batch to the device and returns ``(closure computing its loss,
    clips in it)``; ``after_update(step)`` runs after every good update (EMA). Every step is
    logged; a signal (or ``stop_at_step``) writes ``checkpoint-last.pth`` with ``saver`` and
    raises :class:`Preempted`, as does ``save_every_steps`` without raising
    (:func:`check_preempt`). Stops at ``total_steps``."""
    losses: list[float] = []
    t_data = time.time()
    batches = iter(loader)
    while True:
        try:  # (a loader whose worker died raises here or, through SIGCHLD, anywhere before the update)
            batch = next(batches, None)
            if batch is None:
                break
            if hasattr(dataset, "update_failures"):  # unreadable files seen by the workers
                dataset.update_failures(batch)
            compute_loss, clips = batch_loss(batch)
            t_compute = time.time()
            if not stepper.backward(compute_loss, clips=clips):
                continue
        except RuntimeError as e:
            if signals.caught is None or "DataLoader worker" not in str(e) or info.enabled:
                raise
            # Stopping already: a worker that died of the same signal (SIGKILL after a grace period,
            # or a signal from outside the process group) is part of stopping. The step in progress
            # is dropped; the resume point is the last finished step (its RNG state is the current
            # one, so this resume is not bit-exact: the usual path, workers that leave the signal
            # to this process, is).
            stepper.discard()
            log.write(f"[mgmae] a loader worker died while stopping on signal {signals.caught} ({e})")
            check_preempt(signals, pos.step, stop_at_step, info, device,
                          lambda: saver.save("checkpoint-last.pth", pos.epoch, pos.step, pos.steps_in_epoch),
                          log)
            raise
        cur_lr = lr_at_step(pos.step)
        cur_wd = wd_at_step(pos.step) if wd_at_step is not None else None
        res = stepper.update(pos.step, cur_lr, t_data, cur_wd)
        if after_update is not None and not res.bad:
            after_update(pos.step)
        pos.step += 1
        pos.steps_in_epoch += 1
        if not res.bad:
            losses.append(res.loss)
        log.step({"step": pos.step, "epoch": pos.epoch, "loss": round(res.loss, 6), "lr": cur_lr,
                  **({"weight_decay": cur_wd} if cur_wd is not None else {}),
                  "grad_norm": round(res.grad_norm, 4),
                  "clips_per_s": round(res.clips_per_s * info.world_size, 2),
                  "data_s": round(t_compute - t_data, 4), "step_s": round(time.time() - t_data, 4)})
        check_preempt(signals, pos.step, stop_at_step, info, device,
                      lambda: saver.save("checkpoint-last.pth", pos.epoch, pos.step, pos.steps_in_epoch),
                      log, save_every_steps, total_steps)
        t_data = time.time()
        if pos.step >= total_steps:
            break
    return losses


LOW_SPREAD = 0.2  # below this share of token-specific signal, warn (a random encoder: ~0.45)


def encoder_check(encoder: torch.nn.Module, clips: torch.Tensor) -> dict:
    """:func:`mgmae.models.vit.token_statistics` of ``encoder`` on ``clips`` next to a freshly
    initialised copy's spread, with a one-line verdict (``encoder_message``): is there anything
    left in the output that differs from token to token, or is it mostly one shared vector?"""
    stats = token_statistics(encoder, clips)
    ref = random_spread(encoder, clips)
    shared = stats["common"] / stats["token"] if stats["token"] > 0 else float("nan")
    msg = (f"encoder output on {len(clips)} clips: token norm {stats['token']:.1f}, of which a vector "
           f"shared by all tokens {stats['common']:.1f} ({100 * shared:.0f}%); spread {stats['spread']:.3f} "
           f"(random weights: {ref:.3f}); patch embedding {stats['patch']:.1f} vs positions {stats['pos']:.1f}")
    if stats["spread"] < LOW_SPREAD and stats["spread"] < 0.75 * ref:
        msg += (": little differs from token to token, so fine-tuning may start slower than from random "
                "weights (see 'encoder health' in docs/finetune.md)")
    out = {f"encoder_{k}": v for k, v in stats.items()}
    out.update(encoder_random_spread=ref, encoder_message=msg)
    return out
