"""VideoMAE V2's running-cell decoder mask ("dual masking"), as its reference code defines it.

The grid of each temporal slice is tiled with 2 x 2 cells. A cell holds a queue of ``m`` ones
(not decoded) then ``4 - m`` zeros (decoded), ``m = int(4 * ratio)``, read in row-major order from
a pointer; the pointer advances by one per temporal slice, so a position is decoded in some slices
and not in others and every position is decoded equally often. Slice ``t`` of a clip with start
``s`` (one of 4, drawn per clip) reads the queue from ``s + t + 1``. V2's recipes use ratio 0.5.

Which cubes enter the decoder, and which are in the loss, also as in V2: mask tokens are placed at
every *decoded* position (run-cell zeros), encoder-visible ones included, so every clip decodes the
same number of positions; the loss counts only the decoded positions that the encoder mask hides.
Here ``decode_mask`` is True at the decoded positions (V2's ``~decode_masked_pos``).
"""

from __future__ import annotations

import torch

from mgmae.masking import cells_skipped  # defined with the config-checked rules (no torch there)

__all__ = ["cells_skipped", "running_cell_patterns", "running_cell_mask", "running_cell_starts"]


def running_cell_patterns(grid: tuple[int, int, int], ratio: float = 0.5) -> torch.Tensor:
    """The 4 possible decoder masks, ``bool (4, t*h*w)``, True = decoded; row ``s`` starts the
    queue at ``s``."""
    t, h, w = grid
    m = cells_skipped(ratio)
    if h % 2 or w % 2:
        raise ValueError(f"masking.decoder_mask=run_cell tiles each slice with 2 x 2 cells: the "
                         f"token grid {h} x {w} (data.img_size / patch) must have even sides")
    queue = torch.tensor([True] * m + [False] * (4 - m))  # True = not decoded
    out = []
    for start in range(4):
        slices = []
        for s in range(t):
            cell = queue[(torch.arange(4) + start + s + 1) % 4].reshape(2, 2)
            slices.append(cell.repeat(h // 2, w // 2).flatten())
        out.append(~torch.stack(slices).flatten())
    return torch.stack(out)  # [4, N]


def running_cell_starts(index: torch.Tensor, views: int, epoch: int, seed: int) -> torch.Tensor:
    """Each clip's start (0-3) as a pure function of (seed, epoch, video index, view): the same
    for any number of ranks, workers or accumulation steps, and after a resume. ``index``: the
    batch's video indices, ``views`` consecutive rows per video (``data.num_sample``)."""
    view = torch.arange(len(index)) % views
    h = (index.long() * 1000003 + view * 104729 + epoch * 7919 + seed * 15485863) & 0xFFFFFFFF
    h = (h * 2654435761) & 0xFFFFFFFF  # Knuth's multiplicative hash, 32 bits
    return (h >> 16) % 4


def running_cell_mask(grid: tuple[int, int, int], batch: int, ratio: float = 0.5,
                      generator: torch.Generator | None = None,
                      starts: torch.Tensor | None = None) -> torch.Tensor:
    """``bool (batch, N)`` decoder masks (True = decoded), one random start per clip (or the
    given ``starts``)."""
    patterns = running_cell_patterns(grid, ratio)
    if starts is None:
        starts = torch.randint(0, 4, (batch,), generator=generator)
    return patterns[starts]
