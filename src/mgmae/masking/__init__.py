"""Maskers by name: ``build_masker("random" | "tube" | "motion_guided" | a registered name,
input_size=(T, H, W), patch_size=16, tubelet_size=2, mask_ratio=0.9, seed=None, **options)``.

The names live in one registry (:data:`mgmae.registry.MASKERS`): ``masking.name`` in a config is
checked against it, so a masker added with :func:`register_masker` can be chosen from a config
(``masking.name=mine``); pre-training builds it with the options above. The allowed values of the
motion-guided options are :data:`MOTION_GUIDED_CHOICES` and the running-cell ratio rule is
:func:`cells_skipped`, each used by the masker and the config alike.

This package imports nothing heavy until a masker is built or a class is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from mgmae.registry import MASKERS

if TYPE_CHECKING:
    from mgmae.masking.base import Masker

# option -> allowed values (the first of each is not necessarily the default; see MotionGuidedMasker)
MOTION_GUIDED_CHOICES: dict[str, tuple[str, ...]] = {
    "base_frame": ("first", "middle", "random"),
    "init_map": ("mix_gauss", "pixel_rand", "token_rand"),
    "warp": ("backward", "forward"),
    "hole_filling": ("consist", "zero"),
    "visible_count": ("tube", "official"),
    "exposure": ("scaled", "official"),
    "direction": ("corrected", "official"),
}
# options that may be left unset (None): then official_compat decides (docs/design.md section 3)
MOTION_GUIDED_AUTO = ("visible_count", "exposure", "direction")


def official_conflicts(*, visible_count: str | None = None, exposure: str | None = None,
                       gauss_sigma: float | None = None, map_stride: int | None = None,
                       warp: str = "backward",
                       patch_size: int | None = None) -> list[tuple[str, object, str]]:
    """The motion-guided options that contradict ``official_compat=True`` (the official MGMAE
    code's masks, which sets each of them itself): ``[(option, value, what the switch uses)]``.
    Unset options (None) never contradict; ``direction`` never does (``corrected`` with the
    switch gives the official masks with only the direction before the base frame corrected).
    ``gauss_sigma`` agrees only when it is ``patch_size / sqrt(2)`` (to 1e-9; unknown patch size:
    never)."""
    out = []
    if visible_count not in (None, "official"):
        out.append(("visible_count", visible_count, "official: int(hw * (1 - ratio)), 19 of 196"))
    if exposure not in (None, "official"):
        out.append(("exposure", exposure, "official: unscaled N(0, 1)"))
    if map_stride not in (None, 1):
        out.append(("map_stride", map_stride, "1: the full-resolution map"))
    if gauss_sigma is not None and not (patch_size and abs(gauss_sigma - patch_size / 2 ** 0.5)
                                        <= 1e-9 * gauss_sigma):
        out.append(("gauss_sigma", gauss_sigma, "exp(-((x - m) / patch)^2), i.e. patch / sqrt(2) exactly"))
    if warp == "forward":
        out.append(("warp", warp, "backward (the official forward warp never runs: it calls torch.oes)"))
    return out


def cells_skipped(ratio: float) -> int:
    """VideoMAE V2's running-cell decoder mask (:mod:`mgmae.masking.running_cell`): how many of
    each 2 x 2 cell the decoder skips, ``int(4 * ratio)``; it must be 1, 2 or 3."""
    m = int(4 * ratio)
    if not 0 < m < 4:
        raise ValueError(f"masking.decoder_mask_ratio={ratio}: int(4 * ratio) must be 1, 2 or 3 "
                         f"(the running cell skips 1 to 3 of each 2 x 2 cell); allowed: [0.25, 1)")
    return m


def register_masker(name: str, factory: Callable[..., Masker]) -> None:
    """Make ``factory(input_size=, patch_size=, tubelet_size=, mask_ratio=, seed=) -> Masker``
    available as ``build_masker(name, ...)`` and as ``masking.name=name`` in a config."""
    MASKERS.register(name, factory)


def list_maskers() -> list[str]:
    return MASKERS.names()


def build_masker(name: str, **kwargs) -> Masker:
    """Build a masker by name; see each class for its options."""
    return MASKERS.get(name)(**kwargs)


# classes and helpers, imported on first use (they import torch)
_LAZY = {"Masker": "base", "num_visible_per_slice": "base", "RandomMasker": "random",
         "TubeMasker": "tube", "MotionGuidedMasker": "motion_guided"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"mgmae.masking.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mgmae.masking' has no attribute {name!r}")


__all__ = ["MOTION_GUIDED_AUTO", "MOTION_GUIDED_CHOICES", "Masker", "MotionGuidedMasker", "RandomMasker",
           "TubeMasker",
           "build_masker", "cells_skipped", "list_maskers", "num_visible_per_slice", "official_conflicts",
           "register_masker"]
