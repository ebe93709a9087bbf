"""The project's errors about the user's input, and how one becomes the user's one line.

The library raises :class:`MgmaeError` (or ``ValueError``, ``OSError``, ``KeyError``,
``FloatingPointError``: :data:`USER_ERRORS`) for a mistake of the user's; the command line
(:func:`mgmae.commands.command`) prints :func:`one_line` of it. This module imports nothing but the
standard library, so every layer may use it (the library never imports the command line).
"""

from __future__ import annotations

import os
import re

__all__ = ["MgmaeError", "USER_ERRORS", "check_output", "one_line", "worker_message"]


class MgmaeError(Exception):
    """Base of the project's own errors about the user's input (data, files, runs)."""


# What a command reports in one line; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (MgmaeError, KeyError, ValueError, OSError,
                                                FloatingPointError)


_WORKER = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def worker_message(msg: str) -> str | None:
    """The original message of an error raised in a DataLoader worker, from the text PyTorch
    re-raises in the main process (``Caught X in DataLoader worker process N. Original Traceback
    ... X: message``); None when ``msg`` is not such a text."""
    m = _WORKER.match(msg)
    if m is None:
        return None
    # the last exception printed is the one raised (earlier ones are its context)
    last = None
    for last in re.finditer(rf"^(?:[\w.]+\.)?{re.escape(m.group(1))}(?:: |$)", msg, re.MULTILINE):
        pass
    return msg[last.end():].strip() if last is not None else None


def one_line(e: BaseException) -> str:
    """The message of ``e`` without Python's decorations (KeyError quotes, OSError errno), and
    without PyTorch's when ``e`` was raised in a loader worker: the user reads the same line
    whether ``train.num_workers`` is 0 or not."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    msg = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
    msg = worker_message(msg) or msg
    return msg or type(e).__name__


def check_output(path: str | os.PathLike, what: str, *, directory: bool) -> None:
    """Fail before the work, not after it, when ``path`` cannot be the output ``what`` names: a
    file where a folder is meant (or the reverse), or a place that cannot be written."""
    p = os.fspath(path)
    if directory and os.path.exists(p) and not os.path.isdir(p):
        raise ValueError(f"{what} {p} is an existing file, not a folder")
    if not directory and os.path.isdir(p):
        raise ValueError(f"{what} {p} is a folder; give a file name")
    parent = p if directory else (os.path.dirname(os.path.abspath(p)) or ".")
    while parent and not os.path.exists(parent):  # the nearest part that exists decides
        parent = os.path.dirname(parent.rstrip(os.sep)) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"{what} {p} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {p} cannot be written (no permission in {parent})")
