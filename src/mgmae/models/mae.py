"""The pre-training model: encode visible cubes, decode with mask tokens, predict masked pixels.

``PretrainVideoMAE.forward(clip, mask)`` takes the mask as an argument (``True`` = hidden, one row
per clip, the same number of hidden cubes in every row), so any masker plugs in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mgmae.models.vit import Block, VisionTransformer, _init_weights, position_table, run_blocks


@dataclass
class MAEOutput:
    loss: torch.Tensor  # scalar
    pred: torch.Tensor  # [B, N_mask, tubelet*p*p*3] predicted pixels of the masked (or decoded) cubes
    target: torch.Tensor  # [B, N_mask, tubelet*p*p*3] what they were compared with


def denormalize(clip: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalized ``(B, C, T, H, W)`` back to ``[0, 1]`` RGB."""
    mean = clip.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = clip.new_tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return clip * std + mean


def patchify(video: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """``(B, C, T, H, W) -> (B, N, tubelet*p*p*C)``: tokens in ``(t, h, w)`` order, pixels in
    ``(dt, dy, dx, c)`` order (the official VideoMAE and HF layout of the decoder head)."""
    B, C, T, H, W = video.shape
    t, h, w = T // tubelet_size, H // patch_size, W // patch_size
    x = video.reshape(B, C, t, tubelet_size, h, patch_size, w, patch_size)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, t, h, w, ts, p, p, C]
    return x.reshape(B, t * h * w, tubelet_size * patch_size * patch_size * C)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], patch_size: int,
               tubelet_size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, ts*p*p*C) -> (B, C, T, H, W)``."""
    B = tokens.shape[0]
    t, h, w = grid
    x = tokens.reshape(B, t, h, w, tubelet_size, patch_size, patch_size, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, t, ts, h, p, w, p]
    return x.reshape(B, channels, t * tubelet_size, h * patch_size, w * patch_size)


def normalize_patches(patches: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Per-cube, per-channel standardisation of ``(B, N, ts*p*p*C)`` pixels (the norm-pix target)."""
    B, N, P = patches.shape
    x = patches.reshape(B, N, P // channels, channels)  # [B, N, ts*p*p, C]
    mean = x.mean(dim=-2, keepdim=True)
    std = x.var(dim=-2, unbiased=True, keepdim=True).sqrt()
    return ((x - mean) / (std + 1e-6)).reshape(B, N, P)


def _visible_mean_colour(target: torch.Tensor, mask: torch.Tensor, channels: int) -> torch.Tensor:
    """Each clip's mean colour over its visible cubes: raw-pixel targets ``(B, N, ts*p*p*C)`` ->
    ``(B, C)`` (the trivial predictor of :meth:`PretrainVideoMAE.baseline_loss`)."""
    B = target.shape[0]
    visible = target[~mask].reshape(B, -1, target.shape[-1] // channels, channels)  # [B, N_vis, ts*p*p, C]
    return visible.mean(dim=(1, 2))  # [B, C]


def check_mask(mask: torch.Tensor, batch: int, num_tokens: int) -> int:
    """Validate a batch mask and return the number of hidden tokens per clip."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be torch.bool (True = masked), got {mask.dtype}")
    if mask.shape != (batch, num_tokens):
        raise ValueError(f"mask must have shape (B, N) = ({batch}, {num_tokens}), got {tuple(mask.shape)}")
    counts = mask.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every clip must hide the same number of cubes, got counts {counts.tolist()}")
    n_mask = int(counts[0])
    if n_mask == 0 or n_mask == num_tokens:
        raise ValueError(f"mask hides {n_mask} of {num_tokens} cubes; need at least one hidden and one visible")
    return n_mask


class PretrainVideoMAE(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, decoder_embed_dim=384, decoder_depth=4,
                 decoder_num_heads=6, num_frames=16, tubelet_size=2, drop_path_rate=0.0,
                 norm_pix_loss=True, grad_checkpointing=False, pos_embed="sincos_1d"):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss
        self.grad_checkpointing = grad_checkpointing
        self.encoder = VisionTransformer(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate, num_frames=num_frames, tubelet_size=tubelet_size,
            use_mean_pooling=False, grad_checkpointing=grad_checkpointing, pos_embed=pos_embed,
        )
        self.grid = self.encoder.patch_embed.grid
        self.num_patches = self.encoder.num_patches
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("pos_embed", position_table(pos_embed, self.grid, decoder_embed_dim),
                             persistent=False)  # the encoder's kind of table, at the decoder's width
        self.decoder = nn.Module()
        self.decoder.blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)
        )
        self.decoder.norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder.head = nn.Linear(decoder_embed_dim, tubelet_size * patch_size**2 * in_chans)
        for m in (self.encoder_to_decoder, self.decoder):
            m.apply(_init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "mask_token", "cls_token"}

    def target(self, clip: torch.Tensor) -> torch.Tensor:
        """Pixel targets of every cube, ``(B, N, ts*p*p*C)``, computed in fp32."""
        with torch.autocast(clip.device.type, enabled=False):
            video = denormalize(clip.float())  # [B, C, T, H, W] in [0, 1]
            patches = patchify(video, self.patch_size, self.tubelet_size)  # [B, N, P]
            return normalize_patches(patches, self.in_chans) if self.norm_pix_loss else patches

    def forward(self, clip: torch.Tensor, mask: torch.Tensor,
                decode_mask: torch.Tensor | None = None) -> MAEOutput:
        """``mask (B, N)``: True = hidden from the encoder. ``decode_mask (B, N)``: True = a
        position the decoder reconstructs (VideoMAE V2's dual masking,
        :mod:`mgmae.masking.running_cell`); the loss then counts the decoded hidden cubes only.
        None: every hidden cube is decoded (and ``pred``/``target`` are the hidden cubes')."""
        B = clip.shape[0]
        n_mask = check_mask(mask, B, self.num_patches)
        dec = mask if decode_mask is None else decode_mask  # positions that get a mask token
        n_dec = n_mask if decode_mask is None else check_mask(decode_mask, B, self.num_patches)
        x = self.encoder.forward_features(clip, mask)  # [B, N_vis, D]
        x = self.encoder_to_decoder(x)  # [B, N_vis, Dd]
        Dd = x.shape[-1]
        pos = self.pos_embed.to(x.dtype).expand(B, -1, -1)  # [B, N, Dd]
        pos_vis = pos[~mask].reshape(B, -1, Dd)  # [B, N_vis, Dd]
        pos_dec = pos[dec].reshape(B, n_dec, Dd)  # [B, N_dec, Dd]
        x = torch.cat([x + pos_vis, self.mask_token.to(x.dtype) + pos_dec], dim=1)  # [B, N_vis+N_dec, Dd]
        x = run_blocks(self.decoder.blocks, x, self.grad_checkpointing)
        pred = self.decoder.head(self.decoder.norm(x[:, -n_dec:]))  # [B, N_dec, P]
        target = self.target(clip)[dec].reshape(B, n_dec, -1)  # [B, N_dec, P]
        if decode_mask is None:
            loss = F.mse_loss(pred.float(), target)
        else:  # V2: the mean over the decoded positions that the encoder did not see
            weight = mask[dec].reshape(B, n_dec).float()  # [B, N_dec]
            per_cube = (pred.float() - target).pow(2).mean(-1)  # [B, N_dec]
            loss = (per_cube * weight).sum() / weight.sum().clamp_min(1.0)
        return MAEOutput(loss=loss, pred=pred, target=target)

    @torch.no_grad()
    def baseline_loss(self, clip: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of the trivial predictor that knows nothing of the structure of a clip: each
        masked cube predicted as the clip's mean colour over its visible cubes (raw pixels), or as
        zeros (norm-pix: a flat cube). A model whose loss is not clearly below this has learned
        only colour statistics."""
        B, n_mask = clip.shape[0], check_mask(mask, clip.shape[0], self.num_patches)
        target = self.target(clip)  # [B, N, P]
        hidden = target[mask].reshape(B, n_mask, -1)  # [B, N_mask, P]
        if self.norm_pix_loss:
            return hidden.pow(2).mean()
        C = self.in_chans
        mean = _visible_mean_colour(target, mask, C)  # [B, C]
        return (hidden.reshape(B, n_mask, -1, C) - mean[:, None, None, :]).pow(2).mean()

    @torch.no_grad()
    def smoothing_loss(self, clip: torch.Tensor, mask: torch.Tensor,
                       sigmas: tuple[float, ...] = (0.75, 1.5, 3.0)) -> torch.Tensor:
        """The loss of spatial smoothing, a stronger yardstick than :meth:`baseline_loss`: each
        masked cube predicted as the Gaussian-weighted mean colour of the visible cubes of its own
        temporal slice (distances in cubes; the clip's mean visible colour where a slice shows
        none), with the best of ``sigmas``. A model that beats it infers hidden content from more
        than the neighbouring colours (where objects are, how they move). Raw-pixel target only."""
        if self.norm_pix_loss:
            raise ValueError("smoothing_loss compares raw-pixel predictions; with the norm-pix target "
                             "the trivial predictor is baseline_loss (zeros)")
        B, n_mask, C = clip.shape[0], check_mask(mask, clip.shape[0], self.num_patches), self.in_chans
        _, h, w = self.grid
        target = self.target(clip)  # [B, N, P]
        clip_mean = _visible_mean_colour(target, mask, C)  # [B, C]: the fallback
        cubes = target.reshape(B, self.num_patches, -1, C)  # [B, N, ts*p*p, C]
        colour = cubes.mean(2)  # [B, N, C]
        idx = torch.arange(self.num_patches, device=clip.device)
        ti, hi, wi = idx // (h * w), (idx // w) % h, idx % w  # [N] each, (t, h, w) token order
        d2 = ((hi[:, None] - hi[None]) ** 2 + (wi[:, None] - wi[None]) ** 2).to(colour.dtype)  # [N, N]
        usable = (ti[:, None] == ti[None])[None] & ~mask[:, None, :]  # [B, N, N]: same slice, visible
        any_usable = usable.any(-1, keepdim=True)  # [B, N, 1]
        hidden = cubes[mask].reshape(B, n_mask, -1, C)  # [B, N_mask, ts*p*p, C]
        best = None
        for sigma in sigmas:
            logits = (-d2 / (2 * sigma**2))[None].masked_fill(~usable, float("-inf"))  # [B, N, N]
            weights = logits.softmax(-1).nan_to_num(0.0)  # rows with no usable cube: NaN -> 0
            pred = torch.where(any_usable, weights @ colour, clip_mean[:, None, :])  # [B, N, C]
            pred = pred[mask].reshape(B, n_mask, 1, C)  # [B, N_mask, 1, C]
            loss = (hidden - pred).pow(2).mean()
            best = loss if best is None else torch.minimum(best, loss)
        return best

    @torch.no_grad()
    def reconstruct(self, clip: torch.Tensor, mask: torch.Tensor, out: MAEOutput) -> torch.Tensor:
        """Reconstructed clip in ``[0, 1]`` RGB: visible cubes from the input, masked cubes predicted
        (norm-pix predictions are de-normalized with the true cube statistics, as in the papers'
        figures)."""
        video = denormalize(clip.float())  # [B, C, T, H, W]
        patches = patchify(video, self.patch_size, self.tubelet_size)  # [B, N, P]
        pred = out.pred.float()  # [B, N_mask, P]
        if self.norm_pix_loss:
            B, N, P = patches.shape
            x = patches[mask].reshape(B, -1, P // self.in_chans, self.in_chans)
            mean = x.mean(-2, keepdim=True)
            std = x.var(-2, unbiased=True, keepdim=True).sqrt()
            pred = (pred.reshape(x.shape) * (std + 1e-6) + mean).reshape(B, -1, P)
        patches = patches.clone()
        patches[mask] = pred.reshape(-1, patches.shape[-1])
        video = unpatchify(patches, self.grid, self.patch_size, self.tubelet_size, self.in_chans)
        return video.clamp(0, 1)
