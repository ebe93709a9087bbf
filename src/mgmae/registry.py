"""The name registries, one per concept: ``MASKERS`` (``masking.name``) and ``FLOWS`` (``flow.name``).

Config validation asks them which names exist and the builders (:func:`mgmae.masking.build_masker`,
:func:`mgmae.flow.build_flow`) ask them for the factory, so a name added with
:func:`~mgmae.masking.register_masker` or :func:`~mgmae.flow.register_flow` is valid everywhere,
config files included. Built-in entries are ``"module:attribute"`` strings imported on first use:
this module imports nothing heavy, and checking a config does not import torch.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator

__all__ = ["Registry", "MASKERS", "FLOWS"]


class Registry:
    """``name -> factory``. ``home`` is the module whose import may register more names (e.g. a
    backend registered by ``mgmae.flow`` itself); it is imported only when a name is not found.
    ``home=None``: every name is in ``entries`` or added by :meth:`register`, so asking about a
    name imports nothing."""

    def __init__(self, kind: str, home: str | None, entries: dict[str, str | Callable]):
        self.kind = kind
        self.home = home
        self._entries: dict[str, str | Callable] = dict(entries)

    def register(self, name: str, factory: str | Callable) -> None:
        """Add (or replace) ``name``; ``factory`` is a callable or a ``"module:attribute"`` string."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise TypeError(f"the factory of {self.kind} {name!r} must be callable, got "
                            f"{type(factory).__name__}")
        self._entries[name] = factory

    def _load_home(self) -> None:
        if self.home is not None and self.home not in sys.modules:
            importlib.import_module(self.home)

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        self._load_home()
        return name in self._entries

    def names(self) -> list[str]:
        self._load_home()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable:
        """The factory of ``name``; an unknown name raises a one-line ValueError with the closest
        name and every available one."""
        if name not in self:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}")
        factory = self._entries[name]
        if isinstance(factory, str):
            module, attr = factory.split(":")
            factory = self._entries[name] = getattr(importlib.import_module(module), attr)
        return factory

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


MASKERS = Registry("masker", "mgmae.masking", {
    "random": "mgmae.masking.random:RandomMasker",
    "tube": "mgmae.masking.tube:TubeMasker",
    "motion_guided": "mgmae.masking.motion_guided:MotionGuidedMasker",
})

# factory(**options) -> fn(src, dst) -> flow; see mgmae.flow for the contract. mgmae.flow registers
# nothing when imported (its built-ins are listed here), so no home: a bad flow.name in a config is
# refused without importing torch (tests/test_front_door.py)
FLOWS = Registry("flow", None, {
    "codec": "mgmae.flow:_codec",  # motion vectors of video files (mgmae.flow.codec); not from frames
    "dis": "mgmae.flow:_dis",
    "farneback": "mgmae.flow:_farneback",
    "raft_small": "mgmae.flow:_raft_small",
    "raft_large": "mgmae.flow:_raft_large",
    "zero": "mgmae.flow:_zero",
})
