"""Pictures: loss curves, input / mask / reconstruction grids (PNG) and animations (GIF)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def mask_to_pixels(mask: torch.Tensor, grid: tuple[int, int, int], patch_size: int,
                   tubelet_size: int) -> torch.Tensor:
    """Token mask ``(N,)`` -> pixel mask ``(T, H, W)`` (True = hidden)."""
    m = mask.reshape(grid)  # [t, h, w]
    m = m.repeat_interleave(tubelet_size, 0).repeat_interleave(patch_size, 1)
    return m.repeat_interleave(patch_size, 2)  # [T, H, W]


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """``float (C, T, H, W)`` in ``[0, 1]`` -> ``uint8 (T, H, W, C)``."""
    return (video.detach().float().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def darken(frames: np.ndarray, pixel_mask: np.ndarray, factor: float = 0.25) -> np.ndarray:
    """Darken hidden pixels of ``uint8 (T, H, W, 3)`` frames; ``pixel_mask (T, H, W)`` True = hidden."""
    out = frames.astype(np.float32)
    out[pixel_mask] *= factor
    return out.astype(np.uint8)


def _upscale(img: np.ndarray, min_side: int = 128) -> np.ndarray:
    k = max(1, int(np.ceil(min_side / min(img.shape[:2]))))
    return img.repeat(k, 0).repeat(k, 1) if k > 1 else img


def _label(img: np.ndarray, text: str) -> np.ndarray:
    pad = np.full((14, img.shape[1], 3), 255, np.uint8)
    im = Image.fromarray(np.concatenate([pad, img], 0))
    ImageDraw.Draw(im).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(im)


def save_panels(rows: Sequence[tuple[str, np.ndarray]], png: str | Path, gif: str | Path | None = None,
                frame_step: int = 2, fps: int = 6) -> None:
    """Each row: (title, ``uint8 (T, H, W, 3)``). The PNG shows every ``frame_step``-th frame of
    each row side by side; the GIF animates all rows next to each other (one column per row)."""
    sep = 2
    strips = []
    for title, frames in rows:
        tiles = [_upscale(f) for f in frames[::frame_step]]
        h = tiles[0].shape[0]
        bar = np.full((h, sep, 3), 255, np.uint8)
        strip = np.concatenate([x for t in tiles for x in (t, bar)][:-1], 1)
        strips.append(_label(strip, title))
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, sep), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    Image.fromarray(np.concatenate(strips, 0)).save(png)
    if gif is not None:
        T = rows[0][1].shape[0]
        frames = []
        for t in range(T):
            cols = [_label(_upscale(f[t]), title) for title, f in rows]
            bar = np.full((cols[0].shape[0], sep, 3), 255, np.uint8)
            frames.append(Image.fromarray(np.concatenate([x for c in cols for x in (c, bar)][:-1], 1)))
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def save_reconstructions(videos: torch.Tensor, masks: torch.Tensor, recons: torch.Tensor,
                         grid, patch_size: int, tubelet_size: int, png: str | Path,
                         gif: str | Path | None = None, labels: Sequence[str] | None = None,
                         norm_pix: bool = False) -> None:
    """``videos``/``recons``: ``[0, 1]`` float ``(B, C, T, H, W)``; ``masks``: ``(B, N)``. One row
    triplet (input, masked input, reconstruction) per clip, titled ``labels[i]`` (``clip i``).
    ``norm_pix``: the hidden cubes were de-normalised with their true statistics (said in the title)."""
    how = "; hidden cubes: prediction x true cube std + true mean (norm-pix)" if norm_pix else ""
    rows = []
    for i in range(videos.shape[0]):
        name = labels[i] if labels is not None else f"clip {i}"
        inp = to_uint8(videos[i])
        pm = mask_to_pixels(masks[i].cpu(), grid, patch_size, tubelet_size).numpy()
        rows += [(f"{name}: input", inp),
                 (f"{name}: visible cubes ({(~masks[i]).sum().item()} of {masks[i].numel()}; "
                  f"hidden = black)", darken(inp, pm, 0.0)),
                 (f"{name}: reconstruction (visible cubes from the input{how})", to_uint8(recons[i]))]
    if gif is not None:  # GIF: one panel per row, clips stacked -> keep it to input|mask|recon per clip
        _save_recon_gif(rows, gif)
    save_panels(rows, png, None)


@torch.no_grad()
def draw_reconstructions(model, video: torch.Tensor, mask: torch.Tensor, png: str | Path,
                         gif: str | Path | None = None, labels: Sequence[str] | None = None) -> float:
    """Run the pre-training ``model`` on ``video`` (ImageNet-normalized ``(B, C, T, H, W)``) with
    ``mask`` ``(B, N)`` and draw :func:`save_reconstructions`; norm-pix predictions are shown
    de-normalized with each cube's true statistics (``model.reconstruct``). Returns the loss."""
    from mgmae.models.mae import denormalize

    was_training = model.training
    model.eval()
    out = model(video, mask)
    recon = model.reconstruct(video, mask, out)  # [B, C, T, H, W] in [0, 1]
    save_reconstructions(denormalize(video).clamp(0, 1), mask, recon, model.grid, model.patch_size,
                         model.tubelet_size, png, gif, labels, norm_pix=model.norm_pix_loss)
    model.train(was_training)
    return float(out.loss)


def _save_recon_gif(rows, gif, fps: int = 6) -> None:
    T = rows[0][1].shape[0]
    frames = []
    for t in range(T):
        lines = []
        for c in range(0, len(rows), 3):
            cols = [_upscale(f[t]) for _, f in rows[c:c + 3]]
            bar = np.full((cols[0].shape[0], 2, 3), 255, np.uint8)
            lines.append(np.concatenate([x for col in cols for x in (col, bar)][:-1], 1))
        hbar = np.full((2, lines[0].shape[1], 3), 255, np.uint8)
        img = np.concatenate([x for ln in lines for x in (ln, hbar)][:-1], 0)
        frames.append(Image.fromarray(_label(img, f"input | visible | reconstruction   frame {t}")))
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def log_records(log_path: str | Path, key: str) -> list[dict]:
    """The records of a run's ``log.jsonl`` that carry a number under ``key`` and a step, in step
    order, one per step (the last written wins: a resumed run's redone steps replace the old
    ones). Skipped updates (``skipped_update``: their loss is the string ``"nan"``) and unreadable
    lines (a writer killed mid-line) are left out."""
    by_step: dict[int, dict] = {}
    for line in Path(log_path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        v = rec.get(key)
        if (isinstance(rec, dict) and "step" in rec and not rec.get("skipped_update")
                and isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)):
            by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


def plot_loss_curve(log_path: str | Path, png: str | Path, key: str = "loss") -> None:
    """Loss (and its running mean) per step from a JSONL log, with the lr on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = log_records(log_path, key)
    steps = [r["step"] for r in recs]
    values = [r[key] for r in recs]
    lrs = [r.get("lr", np.nan) for r in recs]
    if not steps:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, values, lw=0.8, alpha=0.4, label=key)
    w = max(1, len(values) // 25)
    smooth = np.convolve(values, np.ones(w) / w, mode="valid")
    ax.plot(steps[w - 1:], smooth, lw=2, label=f"{key} (mean of {w})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, lrs, color="tab:gray", lw=1, ls="--", label="lr")
    ax2.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right")
    ax.set_title("pre-training loss")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
