"""Random masking: ``int(N * ratio)`` cubes hidden uniformly over the whole clip (VideoMAE's
``random`` mask; slices may keep different numbers of cubes)."""

from __future__ import annotations

import torch

from mgmae.masking.base import Masker, topk_mask


class RandomMasker(Masker):
    name = "random"

    @property
    def num_masked(self) -> int:
        return int(self.num_tokens * self.mask_ratio + 1e-9)

    def _mask(self, clip, batch, generator):
        noise = torch.rand(batch, self.num_tokens, generator=generator)  # [B, N]
        return topk_mask(noise, self.num_tokens - self.num_masked)  # [B, N]
