"""What every ``mgmae`` command shares: one error handler, the common flags, and one way to take a
config (``-c RECIPE`` then ``key=value`` overrides, :func:`add_config_args`).

A mistake of the user's (a missing file, a bad key, an unreadable or unsafe checkpoint, too many
broken videos, a diverged run, an output path that cannot be written) ends a command with one
line, ``mgmae <command>: error: ...``, and exit status 2. ``--debug`` (or ``MGMAE_DEBUG=1``)
shows the traceback instead. ``--trust-checkpoint`` lets every checkpoint load of the command use
the full unpickler (:func:`mgmae.serialization.trust_checkpoints`), for files the user trusts.

This module imports nothing heavy: ``mgmae --help`` stays fast (tests/test_cli.py checks that
torch is not imported).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Callable, Sequence

from mgmae.errors import USER_ERRORS, MgmaeError, check_output, one_line, worker_message

__all__ = ["MgmaeError", "USER_ERRORS", "add_common_flags", "add_config_args", "check_output",
           "check_keys_apply", "command", "debugging", "is_override", "one_line", "show_progress",
           "split_positionals", "worker_message"]


def debugging(argv: Sequence[str] = ()) -> bool:
    return "--debug" in argv or os.environ.get("MGMAE_DEBUG", "") not in ("", "0")


def add_common_flags(p: argparse.ArgumentParser, *, checkpoints: bool = True) -> None:
    """``--debug`` and (for commands that read checkpoints) ``--trust-checkpoint``; their values
    are acted on by :func:`command`."""
    if checkpoints:
        p.add_argument("--trust-checkpoint", action="store_true",
                       help="load checkpoints with the full unpickler (can run code: only for "
                            "files you trust); by default only tensors and plain values load")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (also MGMAE_DEBUG=1)")


def add_config_args(p: argparse.ArgumentParser, *, positionals: str = "",
                    config_help: str = "YAML recipe: a path or a packaged recipe's name "
                                       "(`mgmae config --list`)") -> None:
    """``-c/--config`` and the trailing ``key=value`` overrides, the same for every command. With
    ``positionals`` (e.g. ``"LIST"``) one ``args`` list takes both the command's positional
    arguments and the overrides (in any order): split it with :func:`split_positionals`."""
    p.add_argument("-c", "--config", help=config_help)
    if positionals:
        p.add_argument("args", nargs="*", metavar=f"{positionals} [key=value ...]",
                       help=f"{positionals}, then dotted overrides such as data.root=/videos")
    else:
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="dotted overrides, e.g. train.epochs=10 (`mgmae config --keys`)")


# key prefixes a command never reads: given on its command line they are a mistake, not a no-op
# (a recipe file may still hold them: one config serves pre-training and fine-tuning)
NOT_FOR = {
    "pretrain": ("finetune.",),
    "finetune": ("masking.", "flow.", "train.init_from"),
    "linprobe": ("masking.", "flow.", "train.init_from"),
    "probe": ("masking.", "flow.", "train.init_from"),
    "eval": ("masking.", "flow.", "train.init_from"),
    "extract": ("masking.", "flow.", "train.init_from"),
}


def check_keys_apply(command: str, overrides: Sequence[str]) -> None:
    """Raise a one-line ValueError for a ``key=value`` that ``mgmae COMMAND`` does not use."""
    for item in overrides:
        key = str(item).split("=", 1)[0].strip()
        if key.startswith(NOT_FOR.get(command, ())):
            hint = (" (to start pre-training from a checkpoint: mgmae pretrain train.init_from=PATH; "
                    "to fine-tune one: give it as the first argument)" if key == "train.init_from"
                    else " (masks and flow are pre-training settings)" if key.startswith(("masking.", "flow."))
                    else " (finetune.* keys are read by mgmae finetune, linprobe and eval)")
            raise ValueError(f"{key} does not apply to mgmae {command}{hint}")


def show_progress(quiet: bool = False, stream=None) -> bool:
    """Whether a command draws progress bars: not with ``--quiet``, and only on a terminal. A bar
    redraws its line with carriage returns and escape codes; in a log file or a pipe every redraw
    stays (tens of KB of them for the demo), so there the epoch lines and log.jsonl say how far a
    run is. ``stream``: where the bars go (tqdm's default, stderr)."""
    if quiet:
        return False
    try:
        return bool((sys.stderr if stream is None else stream).isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def is_override(item: str) -> bool:
    """``key=value``; a URL or hub id holding ``=`` (``...#sha256=HEX``, ``?id=...``) is not one."""
    return "=" in item and not item.startswith(("http://", "https://", "hf-hub:"))


def split_positionals(items: Sequence[str], n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` items that are not ``key=value`` (:func:`is_override`) are positional
    arguments, the rest overrides."""
    pos = [a for a in items if not is_override(a)][:n]
    rest = list(items)
    for a in pos:
        rest.remove(a)
    return pos, rest


def _close_progress_bars() -> None:
    """A bar left open by the failed work would share its line with the error."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or []):
        bar.close()


def command(name: str) -> Callable[[Callable[[list[str]], int]], Callable[..., int]]:
    """Decorate a ``cli_main(argv) -> int``: the one place errors become ``mgmae NAME: error: ...``
    (exit 2) and ``--trust-checkpoint`` takes effect."""

    def wrap(fn: Callable[[list[str]], int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def run(argv: Sequence[str] | None = None) -> int:
            argv = list(sys.argv[1:] if argv is None else argv)
            trusted = "--trust-checkpoint" in argv
            scope = contextlib.nullcontext()  # untrusted is the default: torch stays unimported
            if trusted or "mgmae.serialization" in sys.modules:  # (it may hold an outer choice)
                from mgmae.serialization import trust_checkpoints

                scope = trust_checkpoints(trusted)
            try:
                with scope:
                    return int(fn(argv) or 0)
            except BrokenPipeError:  # `mgmae ... | head`: the reader left; nothing to report
                try:  # (stdout to /dev/null, so that the flush at exit does not fail again)
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                except (OSError, ValueError):
                    pass
                return 141  # 128 + SIGPIPE, as a tool killed by the signal reports
            except USER_ERRORS as e:
                if debugging(argv):
                    raise
                _close_progress_bars()
                print(f"mgmae {name}: error: {one_line(e)}", file=sys.stderr)
                return 2

        return run

    return wrap
