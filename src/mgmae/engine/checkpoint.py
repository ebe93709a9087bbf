"""Checkpoints: atomic writes, self-describing content, clear errors for foreign files.

A checkpoint of ours is a ``torch.save`` dict::

    {"format": "mgmae", "version": 1, "kind": "pretrain" | "classify",
     "config": Config.to_dict(), "model": state_dict, "optimizer": ..., "scaler": ...,
     "epoch": int, "step": int, "rng": {...}, "extra": {...}}

It carries its config, so ``load_checkpoint(path)`` plus ``Config.from_dict`` rebuild the model.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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
    obj = {
        "format": FORMAT, "version": VERSION, "kind": kind, "config": config,
        "model": model_state if model_state is not None else model.state_dict(),
        "optimizer": (optimizer_state if optimizer_state is not None
                      else optimizer.state_dict() if optimizer is not None else None),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch, "step": step, "rng": rng_state(), "extra": extra or {},
    }
    return atomic_save(obj, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one of our checkpoints; a missing, corrupt or foreign file raises a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, not a torch file, ...
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(
            f"{path} is not an mgmae checkpoint (top-level keys: {keys}). Official VideoMAE/MGMAE "
            f"or Hugging Face weights are loaded with mgmae.load_model / `mgmae convert`."
        )
    return obj


def is_valid_checkpoint(path: str | Path) -> bool:
    try:
        load_checkpoint(path)
        return True
    except (ValueError, FileNotFoundError):
        return False
