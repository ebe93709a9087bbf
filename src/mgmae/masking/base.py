"""What every masker shares: input validation, the token grid, seeding, batching.

Convention (docs/design.md, section 2): a mask is ``torch.bool``, ``(N,)`` for one clip or ``(B, N)`` for a batch,
``N = T/tubelet * H/patch * W/patch`` in ``(t, h, w)`` order, **True = masked (hidden)**.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def num_visible_per_slice(tokens_per_slice: int, mask_ratio: float) -> int:
    """Visible cubes per temporal slice: ``hw - int(hw * ratio)`` (VideoMAE's tube convention;
    ViT-B at 224 with ratio 0.9 keeps 20 of 196). Tube and motion-guided masks share it, so zero
    flow gives exactly the tube mask."""
    return tokens_per_slice - int(tokens_per_slice * mask_ratio + 1e-9)


class Masker:
    """Base class; subclasses implement :meth:`_mask` for a batch of ``B`` clips."""

    name = "base"

    def __init__(self, input_size: Sequence[int] = (16, 224, 224), patch_size: int = 16,
                 tubelet_size: int = 2, mask_ratio: float = 0.9, seed: int | None = None):
        if len(input_size) != 3:
            raise ValueError(f"input_size must be (T, H, W), got {tuple(input_size)}")
        T, H, W = (int(v) for v in input_size)
        if H % patch_size or W % patch_size:
            raise ValueError(f"input size {H}x{W} is not divisible by patch_size={patch_size}")
        if T % tubelet_size:
            raise ValueError(f"num_frames={T} is not divisible by tubelet_size={tubelet_size}")
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.input_size = (T, H, W)
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.mask_ratio = float(mask_ratio)
        self.grid = (T // tubelet_size, H // patch_size, W // patch_size)  # (t, h, w)
        self.tokens_per_slice = self.grid[1] * self.grid[2]
        self.num_tokens = self.grid[0] * self.tokens_per_slice
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(input_size={self.input_size}, patch_size={self.patch_size}, "
                f"tubelet_size={self.tubelet_size}, mask_ratio={self.mask_ratio})")

    @property
    def num_masked(self) -> int:
        """Hidden tokens per clip (the same for every clip)."""
        raise NotImplementedError

    def __call__(self, clip: torch.Tensor | None = None, *, batch_size: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Mask for one clip ``(C, T, H, W) -> (N,)`` or a batch ``(B, C, T, H, W) -> (B, N)``."""
        single = False
        if clip is not None:
            if clip.ndim == 4:
                single, clip = True, clip.unsqueeze(0)
            if clip.ndim != 5:
                raise ValueError(f"clip must be (C, T, H, W) or (B, C, T, H, W), got {tuple(clip.shape)}")
            if tuple(clip.shape[2:]) != self.input_size:
                raise ValueError(f"{type(self).__name__} was built for (T, H, W)={self.input_size}, "
                                 f"got a clip of {tuple(clip.shape[2:])}")
            batch_size = clip.shape[0]
        elif batch_size is None:
            raise ValueError("give a clip or batch_size")
        mask = self._mask(clip, batch_size, generator or self.generator)  # [B, N]
        return mask[0] if single else mask

    def _mask(self, clip: torch.Tensor | None, batch: int,
              generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``scores (B, M) -> bool (B, M)``: True (hidden) everywhere except the ``k`` highest scores."""
    idx = scores.topk(k, dim=1).indices  # [B, k]
    mask = torch.ones_like(scores, dtype=torch.bool)
    return mask.scatter_(1, idx, False)
