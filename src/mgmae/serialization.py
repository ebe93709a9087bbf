"""The one place where a file becomes Python objects: ``torch_load``.

``torch.load(weights_only=True)`` builds tensors, containers and numbers, and refuses every other
Python global, so a downloaded checkpoint cannot run code while it loads. Official VideoMAE /
VideoMAE V2 / MGMAE checkpoints also pickle a few plain objects next to the weights (their
``save_model`` stores ``args``, an ``argparse.Namespace``; numpy scalars and arrays appear in
optimizer / RNG entries); those, and nothing else, are allowed (:data:`SAFE_GLOBALS`). Our own
checkpoints store only tensors and builtins (see :mod:`mgmae.engine.checkpoint`).

Anything outside the allowlist raises :class:`UntrustedCheckpointError`, which names the
offending globals and the opt-in for a file the user vouches for: ``trusted=True`` in the API,
``--trust-checkpoint`` on the commands (which wrap their work in :func:`trust_checkpoints`).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import pathlib
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["SAFE_GLOBALS", "UntrustedCheckpointError", "nonfinite_keys", "torch_load",
           "trust_checkpoints", "trusting"]

TRUST_HINT = ("only if you trust where the file comes from, load it with --trust-checkpoint "
              "(Python: trusted=True)")


class UntrustedCheckpointError(ValueError):
    """The file pickles Python objects outside the allowlist: loading it could run code."""

    def __init__(self, path: Path, names: list[str]):
        self.path, self.names = path, names
        what = ", ".join(names) if names else "a Python object the safe loader does not allow"
        super().__init__(f"{path} holds pickled Python objects that could run code when loaded "
                         f"({what}); it was not loaded: {TRUST_HINT}")


def _numpy_globals() -> list[Any]:
    """numpy's scalar / array / dtype reconstructors under the names numpy 1.x and 2.x pickle."""
    core = getattr(np, "_core", None) or np.core
    ma = core.multiarray
    out: list[Any] = [np.ndarray, np.dtype, ma._reconstruct, ma.scalar]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # files from either numpy
        out += [(ma._reconstruct, f"{mod}._reconstruct"), (ma.scalar, f"{mod}.scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by their class
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dtypes.__all__ if isinstance(getattr(dtypes, n), type)]
    return out


# The plain objects that official and our checkpoints carry: building them runs no code of the file.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath,
                           *_numpy_globals()]

_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("mgmae_trusted", default=False)


@contextlib.contextmanager
def trust_checkpoints(trusted: bool = True):
    """Within this block, loaders called with ``trusted=None`` (the default) use ``trusted``:
    how ``--trust-checkpoint`` reaches every load of a command."""
    token = _TRUSTED.set(bool(trusted))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def trusting() -> bool:
    """The ambient choice of :func:`trust_checkpoints` (False outside one)."""
    return _TRUSTED.get()


def _allowed_names() -> set[str]:
    names = set()
    for g in SAFE_GLOBALS:
        if isinstance(g, tuple):
            names.add(g[1])
        else:
            names.add(f"{g.__module__}.{g.__qualname__}")
    return names


def _offending(path: Path, message: str) -> list[str]:
    """The globals of ``path`` outside the allowlist, read without running the pickle."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files: the error message names one
        found = re.findall(r"GLOBAL ([\w.]+)", message)
    allowed = _allowed_names()
    return [n for n in dict.fromkeys(found) if n not in allowed]


def nonfinite_keys(state: dict[str, Any]) -> list[str]:
    """The floating-point tensors of a state dict that hold NaN or inf (a diverged run's)."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def _reason(message: str) -> str:
    """The unpickler's own words inside torch's long weights-only message."""
    tail = message.split("WeightsUnpickler error:", 1)[-1]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return (lines[0] if lines else message)[:200]


def torch_load(path: str | Path, map_location: str | torch.device = "cpu", *,
               trusted: bool | None = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and :data:`SAFE_GLOBALS`; with ``trusted=True``
    (or inside :func:`trust_checkpoints`) the full unpickler, for a file the user vouches for.

    Raises FileNotFoundError / IsADirectoryError as they come, :class:`UntrustedCheckpointError`
    for a file that needs other globals, ValueError for anything unreadable."""
    path = Path(path)
    if trusted is None:
        trusted = trusting()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a checkpoint file")
    try:
        if trusted:  # the user's explicit opt-in for this file: the full unpickler
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        names = _offending(path, str(e))
        if names or "GLOBAL" in str(e) or "allowlisted" in str(e):
            raise UntrustedCheckpointError(path, names) from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated, or not written "
                         f"by torch.save: {_reason(str(e))})") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # noqa: BLE001 - truncated zip, not a torch file, ...
        raise ValueError(f"{path} is not a readable PyTorch checkpoint "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
