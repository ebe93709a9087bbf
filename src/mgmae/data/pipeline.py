"""One decoded clip -> ``num_sample`` augmented views and their masks (repeated augmentation).

Every dataset (synthetic, video files, frame folders) goes through :func:`make_views`, so masking
happens in one place: tube/random maskers are called per view; a motion-guided masker gets the raw
frames and the crop parameters, computes flow once per decoded clip and carries it through each
view's crop/resize/flip (``masker.mask_views``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mgmae.data.transforms import CropParams, apply_frames, as_frames

# flow_fn(src_index, dst_index) -> flow (2, H, W) on the raw frames' grid (e.g. ground truth)
FlowFn = Callable[[int, int], torch.Tensor]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The random seed of one sample's augmentation and mask: a pure function of (seed, epoch,
    index), so results do not depend on worker count, rank or resume point."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_views(frames: torch.Tensor | np.ndarray, params: Sequence[CropParams], masker=None,
               flow_fn: FlowFn | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``uint8 (T, H, W, 3)`` frames -> (``float (S, C, T, h, w)`` views, ``bool (S, N)`` masks)."""
    views = torch.stack([apply_frames(frames, p) for p in params])  # [S, C, T, h, w]
    if masker is None:
        return views, None
    if hasattr(masker, "mask_views"):  # motion-guided: flow once on the raw frames
        masks = masker.mask_views(as_frames(frames).permute(0, 3, 1, 2), params, flow_fn=flow_fn,
                                  generator=generator)  # [S, N]; uint8 frames: resized as uint8
    else:
        masks = masker(views, generator=generator)  # [S, N]
    return views, masks


def _cat(vals: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along dim 0; in a DataLoader worker, straight into shared memory (the batch
    reaches the training process through it; torch would otherwise copy it there, as
    ``default_collate`` avoids too)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.cat(vals)
    shape = (sum(v.shape[0] for v in vals), *vals[0].shape[1:])
    storage = vals[0]._typed_storage()._new_shared(math.prod(shape), device=vals[0].device)
    return torch.cat(vals, out=vals[0].new(storage).resize_(shape))


# per-batch counts: summed over the batch's samples, not repeated per view
SUMMED = ("replaced",)


def collate(samples: list[dict]) -> dict:
    """Stack samples whose ``video`` is ``(S, C, T, H, W)``; the ``S`` views become batch rows and
    per-video fields (labels, indices) are repeated ``S`` times; the counts of :data:`SUMMED` are
    summed over the batch."""
    out: dict = {}
    S = samples[0]["video"].shape[0]
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if key in SUMMED:
            out[key] = sum(int(v) for v in vals)
        elif isinstance(vals[0], torch.Tensor) and vals[0].ndim >= 1 and vals[0].shape[0] == S and key in (
                "video", "mask"):
            out[key] = _cat(vals)  # [B*S, ...]
        elif isinstance(vals[0], (int, float, bool, np.integer, np.floating)):
            out[key] = torch.tensor(vals).repeat_interleave(S)  # [B*S]
        elif isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals).repeat_interleave(S, dim=0)
        else:
            out[key] = [v for v in vals for _ in range(S)]
    return out
