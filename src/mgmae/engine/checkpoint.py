"""Checkpoints: atomic writes, self-describing content, clear errors for foreign files.

A checkpoint of ours is a ``torch.save`` dict::

    {"format": "mgmae", "version": 1, "kind": "pretrain" | "classify",
     "config": Config.to_dict(), "model": state_dict, "optimizer": ..., "scaler": ...,
     "epoch": int, "step": int, "rng": {...}, "extra": {...}}

It carries its config, so ``load_checkpoint(path)`` plus ``Config.from_dict`` rebuild the model.
Everything in it is a tensor or a builtin (the numpy RNG state is stored as a tensor), so it loads
with ``weights_only=True`` and nothing outside the default allowlist (:mod:`mgmae.serialization`).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgmae.serialization import nonfinite_keys, torch_load

FORMAT = "mgmae"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over ``path``: a crash
    mid-write leaves the previous file intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def rng_state() -> dict[str, Any]:
    """Every global generator's state as tensors and builtins (safe to load)."""
    npst = np.random.get_state(legacy=False)  # {"bit_generator", "state": {"key", "pos"}, ...}
    numpy_state = {"bit_generator": npst["bit_generator"],
                   "key": torch.from_numpy(npst["state"]["key"].astype(np.int64)),
                   "pos": int(npst["state"]["pos"]), "has_gauss": int(npst["has_gauss"]),
                   "gauss": float(npst["gauss"])}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(st: Any) -> Any:
    if isinstance(st, dict) and "key" in st:  # ours
        return {"bit_generator": st["bit_generator"],
                "state": {"key": np.asarray(st["key"], dtype=np.int64).astype(np.uint32),
                          "pos": st["pos"]},
                "has_gauss": st["has_gauss"], "gauss": st["gauss"]}
    return st  # numpy's legacy tuple (checkpoints written before the tensor form)


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, config: dict, kind: str,
                    optimizer=None, scaler=None, epoch: int = 0, step: int = 0,
                    extra: dict | None = None, model_state: dict | None = None,
                    optimizer_state: dict | None = None) -> Path:
    """``model_state``/``optimizer_state`` replace ``model.state_dict()``/``optimizer.state_dict()``
    (e.g. full state dicts gathered from FSDP shards)."""
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = model_state if model_state is not None else model.state_dict()
    bad = nonfinite_keys(state)
    if bad:  # never overwrite a good resume point with a diverged model
        raise FloatingPointError(
            f"not writing {path}: at step {step} the model's weights hold NaN or inf ({len(bad)} "
            f"tensors, first: {', '.join(bad[:3])}); the run diverged (lower the lr, set clip_grad "
            f"or use bf16). Earlier checkpoints of the run are left as they were")
    obj = {
        "format": FORMAT, "version": VERSION, "kind": kind, "config": config,
        "model": state,
        "optimizer": (optimizer_state if optimizer_state is not None
                      else optimizer.state_dict() if optimizer is not None else None),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch, "step": step, "rng": rng_state(), "extra": extra or {},
    }
    return atomic_save(obj, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    trusted: bool | None = None) -> dict[str, Any]:
    """Load one of our checkpoints (safely: :func:`mgmae.serialization.torch_load`); a missing,
    corrupt, unsafe or foreign file raises a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    obj = torch_load(path, map_location, trusted=trusted)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(
            f"{path} is not an mgmae checkpoint (top-level keys: {keys}). Official VideoMAE/MGMAE "
            f"or Hugging Face weights are loaded with mgmae.load_model / `mgmae convert`."
        )
    return obj



def load_weights(model: torch.nn.Module, state: dict, path: Path) -> None:
    """``model.load_state_dict(state)``, a shape mismatch reported as a ValueError naming ``path``
    and the first differing tensors (instead of PyTorch's page-long RuntimeError)."""
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        parts = ([f"shapes differ: {', '.join(wrong[:3])}"] if wrong else []) + \
                ([f"missing: {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected: {', '.join(unexpected[:3])}"] if unexpected else [])
        raise ValueError(f"{path} does not fit this model ({'; '.join(parts)})")
    model.load_state_dict(state)


class CheckpointSaver:
    """The checkpoints of one run, for pre-training and fine-tuning alike.

    * :meth:`save` writes a resume point (model, optimizer, scaler, RNG state, ``extra``) as
      ``run_dir/name``, atomically, refusing non-finite weights (:func:`save_checkpoint`);
    * :meth:`save_weights` writes another model's weights alone (fine-tuning's best model);
    * :meth:`end_of_epoch` writes ``checkpoint-last.pth`` and, every ``train.save_every_epochs``
      epochs, ``checkpoint-NNNN.pth``, keeping the last ``train.keep_last`` of those (plus every
      5th kept one for good);
    * :meth:`restore` loads a resume point's model and optimizer state.

    Only the main rank writes; with FSDP (``fsdp=True``) every rank must call :meth:`save`, which
    gathers full state dicts first (so a checkpoint is the same file whatever the sharding).
    ``extra(steps_in_epoch)`` gives the run's own entries of ``extra`` (default: only
    ``steps_in_epoch``, the micro-batches of the current epoch already consumed, for an exact
    resume); ``cfg`` is saved as it is at the time of writing.
    """

    def __init__(self, run_dir: str | Path, model: torch.nn.Module, cfg, kind: str, *,
                 optimizer=None, scaler=None, fsdp: bool = False, main: bool = True,
                 extra=None):
        self.run_dir, self.model, self.cfg, self.kind = Path(run_dir), model, cfg, kind
        self.optimizer, self.scaler, self.fsdp, self.main = optimizer, scaler, fsdp, main
        self.extra = extra or (lambda steps_in_epoch: {"steps_in_epoch": steps_in_epoch})

    def _full_states(self):
        if not self.fsdp:
            return None, None
        # FSDP runs only (torch.distributed.checkpoint is a heavy import)
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(self.model, options=opts),
                get_optimizer_state_dict(self.model, self.optimizer, options=opts))

    def save(self, name: str, epoch: int, step: int, steps_in_epoch: int = 0) -> Path:
        """A resume point ``run_dir/name``; returns its path (on every rank)."""
        path = self.run_dir / name
        model_state, optim_state = self._full_states()  # collective under FSDP: every rank calls it
        if self.main:
            save_checkpoint(path, model=self.model, config=self.cfg.to_dict(), kind=self.kind,
                            optimizer=self.optimizer, scaler=self.scaler, epoch=epoch, step=step,
                            extra=self.extra(steps_in_epoch), model_state=model_state,
                            optimizer_state=optim_state)
        return path

    def save_weights(self, name: str, model: torch.nn.Module, epoch: int, step: int,
                     extra: dict | None = None) -> Path:
        """``model``'s weights alone (no optimizer: not a resume point), written by the main rank."""
        path = self.run_dir / name
        if self.main:
            save_checkpoint(path, model=model, config=self.cfg.to_dict(), kind=self.kind,
                            epoch=epoch, step=step, extra=extra)
        return path

    def end_of_epoch(self, epoch: int, step: int) -> None:
        """The resume point at an epoch boundary, plus the kept epochs (``train.save_every_epochs``,
        pruned to the last ``train.keep_last``; every 5th kept epoch stays for good)."""
        t = self.cfg.train
        self.save("checkpoint-last.pth", epoch, step, 0)
        if not (t.save_every_epochs and epoch % t.save_every_epochs == 0):
            return
        self.save(f"checkpoint-{epoch:04d}.pth", epoch, step, 0)
        if not (self.main and t.keep_last):
            return
        kept = sorted(self.run_dir.glob("checkpoint-[0-9]*.pth"))
        for old in kept[:-max(1, t.keep_last)]:
            ep = int(old.stem.split("-")[1])
            if ep % max(1, t.save_every_epochs * 5) != 0:
                old.unlink(missing_ok=True)

    def finish(self, epoch: int, step: int) -> Path:
        """``checkpoint-final.pth``; a finished run's resume point is the final checkpoint, so
        ``checkpoint-last.pth`` is removed."""
        final = self.save("checkpoint-final.pth", epoch, step, 0)
        if self.main:
            (self.run_dir / "checkpoint-last.pth").unlink(missing_ok=True)
        return final

    def restore(self, state: dict, path: str | Path) -> None:
        """Load a resume point's model and optimizer state (and the scaler's, when both have one)."""
        if self.fsdp:
            # FSDP runs only (torch.distributed.checkpoint is a heavy import)
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 set_model_state_dict,
                                                                 set_optimizer_state_dict)

            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, state["model"], options=opts)
            set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=opts)
        else:
            load_weights(self.model, state["model"], path)
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
