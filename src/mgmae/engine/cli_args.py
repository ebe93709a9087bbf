"""Argument helpers shared by the engine's commands (``finetune``, ``linprobe``, ``extract``)."""

from __future__ import annotations

__all__ = ["split_positionals"]


def split_positionals(items: list[str], n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` items without ``=`` are positional arguments, the rest overrides."""
    pos = [a for a in items if "=" not in a][:n]
    rest = list(items)
    for a in pos:
        rest.remove(a)
    return pos, rest
