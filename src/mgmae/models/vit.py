"""VideoMAE-style Vision Transformer: 3D patch embedding, fixed sinusoidal positions, pre-norm blocks.

Parameter names follow the official VideoMAE/MGMAE code (``patch_embed.proj``, ``blocks.i.attn.qkv``
with separate ``q_bias``/``v_bias``, ``fc_norm``, ``head``) so published checkpoints map 1:1.
Token order is ``(t, h, w)`` flattened: ``Conv3d(x).flatten(2).transpose(1, 2)``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp
from torch import nn


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """Fixed sin/cos table of VideoMAE (``(1, n_position, dim)``): sin on even, cos on odd channels."""
    pos = np.arange(n_position, dtype=np.float64)[:, None]  # [n, 1]
    i = np.arange(dim, dtype=np.float64)[None, :]  # [1, d]
    angle = pos / np.power(10000, 2 * (i // 2) / dim)  # [n, d]
    table = np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)  # [1, n, d]


def sincos_3d_table(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Separable space-time sin/cos table (``(1, t*h*w, dim)``, tokens in ``(t, h, w)`` order): the
    first ``dim - 2 * ds`` channels encode the slice index t, the next ``ds`` the row h, the last
    ``ds`` the column w, with ``ds = 2 * (dim // 6)``; within each part the first half is
    ``sin(x * omega_k)`` and the second ``cos(x * omega_k)``, ``omega_k = 10000 ** (-k / (part / 2))``
    (the 2D MAE table, one more axis). Positions near in space or time get similar codes, which
    the 1D table over the flattened index does not give (rows are w apart, slices h*w apart)."""
    if dim % 2:
        raise ValueError(f"a sin-cos position table needs an even width, got {dim}")
    ds = 2 * (dim // 6)
    parts = (dim - 2 * ds, ds, ds)
    coords = np.stack(np.meshgrid(*(np.arange(n) for n in grid), indexing="ij"), -1)
    coords = coords.reshape(-1, 3).astype(np.float64)  # [N, 3] (t, h, w)
    out = []
    for axis, width in enumerate(parts):
        omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2))  # [width/2]
        angle = coords[:, axis:axis + 1] * omega[None]  # [N, width/2]
        out += [np.sin(angle), np.cos(angle)]
    return torch.tensor(np.concatenate(out, 1), dtype=torch.float32).unsqueeze(0)  # [1, N, dim]


POS_EMBEDS = ("sincos_1d", "sincos_3d")


def position_table(kind: str, grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """The fixed position table ``(1, N, dim)``: ``sincos_1d`` (VideoMAE's, over the flattened token
    index; what every published checkpoint was trained with) or ``sincos_3d`` (separable)."""
    if kind == "sincos_1d":
        return sinusoid_table(grid[0] * grid[1] * grid[2], dim)
    if kind == "sincos_3d":
        return sincos_3d_table(grid, dim)
    raise ValueError(f"unknown position embedding {kind!r}; choose one of {', '.join(POS_EMBEDS)}")


class PatchEmbed3d(nn.Module):
    """Video to cube tokens: ``(B, C, T, H, W) -> (B, N, D)`` with ``N = T/tubelet * H/p * W/p``."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, num_frames=16,
                 tubelet_size=2):
        super().__init__()
        check_input_size(num_frames, img_size, patch_size, tubelet_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.num_frames = num_frames
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1] * self.grid[2]
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        B, C, T, H, W = x.shape
        if (T, H, W) != (self.num_frames, self.img_size, self.img_size):
            raise ValueError(
                f"expected clips of {self.num_frames} frames at {self.img_size}x{self.img_size}, "
                f"got T={T}, H={H}, W={W}"
            )
        x = self.proj(x)  # [B, D, T/ts, H/p, W/p]
        return x.flatten(2).transpose(1, 2)  # [B, N, D] in (t, h, w) order


def check_input_size(num_frames: int, img_size: int, patch_size: int, tubelet_size: int) -> None:
    if img_size % patch_size:
        raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}")
    if num_frames % tubelet_size:
        raise ValueError(f"num_frames={num_frames} is not divisible by tubelet_size={tubelet_size}")


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's bias layout (q and v biased, k not) and SDPA."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape  # x: [B, N, C]
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)  # [B, N, 3C]
        qkv = qkv.reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, C/heads]
        drop = self.attn_drop if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # [B, heads, N, C/heads]
        x = x.transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))  # [B, N, C]
        return x + self.drop_path(self.mlp(self.norm2(x)))  # [B, N, C]


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    for blk in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x


class VisionTransformer(nn.Module):
    """Video ViT encoder; with ``num_classes > 0`` a classifier (mean pooling + ``fc_norm`` + ``head``).

    ``forward_features(x, mask)`` keeps only visible tokens when a mask (``True`` = hidden) is given.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=0, embed_dim=768,
                 depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, num_frames=16, tubelet_size=2,
                 use_mean_pooling=True, fc_drop_rate=0.0, init_scale=0.001,
                 grad_checkpointing=False, pos_embed="sincos_1d"):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = PatchEmbed3d(img_size, patch_size, in_chans, embed_dim, num_frames,
                                        tubelet_size)
        self.num_patches = self.patch_embed.num_patches
        self.pos_embed_type = pos_embed
        self.register_buffer("pos_embed", position_table(pos_embed, self.patch_embed.grid, embed_dim),
                             persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rule
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i])
            for i in range(depth)
        )
        self.use_mean_pooling = use_mean_pooling and num_classes > 0
        self.norm = nn.Identity() if self.use_mean_pooling else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if self.use_mean_pooling else None
        self.head_drop = nn.Dropout(fc_drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        if num_classes > 0:
            self.head.weight.data.mul_(init_scale)
            self.head.bias.data.mul_(init_scale)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patch_embed(x)  # [B, N, C]
        x = x + self.pos_embed.to(x.dtype)  # [B, N, C]
        B, _, C = x.shape
        if mask is not None:
            x = x[~mask].reshape(B, -1, C)  # [B, N_vis, C] (visible tokens, in token order)
        x = self.pos_drop(x)
        x = run_blocks(self.blocks, x, self.grad_checkpointing)  # [B, N_vis, C]
        return self.norm(x)  # [B, N_vis, C]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc_norm is not None:
            x = self.fc_norm(x.mean(1))  # [B, C]
        else:
            x = x[:, 0]  # [B, C] (VideoMAE's choice without mean pooling)
        return self.head(self.head_drop(x))  # [B, num_classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@torch.no_grad()
def token_statistics(encoder: VisionTransformer, clips: torch.Tensor) -> dict[str, float]:
    """How much of the encoder's output differs from token to token, on ``clips`` (``(B, C, T, H, W)``,
    all tokens, eval mode; the final ``norm`` is left out: it is Identity in a classifier).

    Returns mean per-token norms of the patch embedding (``patch``), the position table (``pos``)
    and the output tokens (``token``); the norm of the mean output token over all tokens and clips
    (``common``: a vector every token carries); the mean norm of each token minus its clip's mean
    (``within``: what tells tokens apart) and ``spread = within / token``. A random encoder has a
    spread near 0.45; encoders pre-trained hard on small data can fall below 0.1, where every
    LayerNorm and a classifier's ``fc_norm`` see nearly the same vector everywhere (docs/finetune.md).
    """
    seen: dict[str, torch.Tensor] = {}
    hooks = [encoder.patch_embed.register_forward_hook(lambda m, i, o: seen.setdefault("patch", o)),
             encoder.norm.register_forward_hook(lambda m, i, o: seen.setdefault("out", i[0]))]
    was_training = encoder.training
    encoder.eval()
    try:
        encoder.forward_features(clips)
    finally:
        encoder.train(was_training)
        for h in hooks:
            h.remove()
    patch, h = seen["patch"].float(), seen["out"].float()  # [B, N, C] each: embedded cubes, last block's output
    token = h.norm(dim=-1).mean().item()
    within = (h - h.mean(1, keepdim=True)).norm(dim=-1).mean().item()
    return {"patch": patch.norm(dim=-1).mean().item(),
            "pos": encoder.pos_embed.float().norm(dim=-1).mean().item(), "token": token,
            "common": h.mean((0, 1)).norm().item(), "within": within,
            "spread": within / token if token > 0 else float("nan")}


@torch.no_grad()
def random_spread(encoder: VisionTransformer, clips: torch.Tensor, seed: int = 0) -> float:
    """``token_statistics(...)["spread"]`` of a freshly initialised copy of ``encoder`` (the yardstick
    for a trained one), without touching the global random state."""
    fresh = copy.deepcopy(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh.apply(_init_weights)
    return token_statistics(fresh, clips)["spread"]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv3d):  # initialise like a linear layer on the flattened cube (MAE)
        w = m.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
