"""Masker registry: ``build_masker("random" | "tube" | "motion_guided", input_size=(T, H, W), ...)``."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from mgmae.masking.base import Masker, num_visible_per_slice
from mgmae.masking.random import RandomMasker
from mgmae.masking.tube import TubeMasker

_REGISTRY: dict[str, Callable[..., Masker]] = {"random": RandomMasker, "tube": TubeMasker}


def register_masker(name: str, factory: Callable[..., Masker]) -> None:
    _REGISTRY[name] = factory


def _motion_guided(**kwargs) -> Masker:  # imported lazily: pulls in the flow backends
    from mgmae.masking.motion_guided import MotionGuidedMasker

    return MotionGuidedMasker(**kwargs)


_REGISTRY["motion_guided"] = _motion_guided


def build_masker(name: str, **kwargs) -> Masker:
    """Build a masker by name; see each class for its options."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown masker {name!r}.{hint} Available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


__all__ = ["Masker", "RandomMasker", "TubeMasker", "build_masker", "register_masker",
           "num_visible_per_slice"]
