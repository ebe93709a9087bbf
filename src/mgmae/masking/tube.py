"""Tube masking (VideoMAE): the same spatial positions are visible in every temporal slice."""

from __future__ import annotations

import torch

from mgmae.masking.base import Masker, num_visible_per_slice, topk_mask


class TubeMasker(Masker):
    name = "tube"

    @property
    def num_masked(self) -> int:
        return self.num_tokens - self.grid[0] * num_visible_per_slice(self.tokens_per_slice, self.mask_ratio)

    def _mask(self, clip, batch, generator):
        k = num_visible_per_slice(self.tokens_per_slice, self.mask_ratio)
        noise = torch.rand(batch, self.tokens_per_slice, generator=generator)  # [B, h*w]
        slice_mask = topk_mask(noise, k)  # [B, h*w]
        return slice_mask.repeat(1, self.grid[0])  # [B, t*h*w] in (t, h, w) order
