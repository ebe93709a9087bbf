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

