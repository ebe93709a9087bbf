"""Model registry, timm-style: ``create_model("mae_vit_base_patch16")`` or ``("vit_base_patch16")``.

``mae_*`` names build the pre-training model (:class:`PretrainVideoMAE`), plain ``vit_*`` names the
classifier/encoder (:class:`VisionTransformer`). Sizes follow VideoMAE / VideoMAE V2.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from mgmae.models.mae import MAEOutput, PretrainVideoMAE
from mgmae.models.vit import VisionTransformer, param_count


@dataclass(frozen=True)
class ViTSize:
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_num_heads: int
    decoder_depth: int = 4
    mlp_ratio: float = 4.0
    patch_sizes: tuple[int, ...] = (16,)


SIZES: dict[str, ViTSize] = {
    "nano": ViTSize(128, 4, 4, 64, 4, decoder_depth=2, patch_sizes=(8, 16)),  # demos and tests
    "tiny": ViTSize(192, 12, 3, 96, 3),
    "small": ViTSize(384, 12, 6, 192, 3),
    "base": ViTSize(768, 12, 12, 384, 6),
    "large": ViTSize(1024, 24, 16, 512, 8),
    "huge": ViTSize(1280, 32, 16, 640, 8),
    "giant": ViTSize(1408, 40, 16, 512, 8, mlp_ratio=48 / 11, patch_sizes=(14,)),
}


def list_models() -> list[str]:
    names = []
    for size, spec in SIZES.items():
        for p in spec.patch_sizes:
            names += [f"vit_{size}_patch{p}", f"mae_vit_{size}_patch{p}"]
    return sorted(names)


def parse_name(name: str) -> tuple[bool, ViTSize, int]:
    """``"mae_vit_base_patch16" -> (is_pretrain=True, SIZES["base"], 16)``."""
    if name not in list_models():
        close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model name {name!r}.{hint} Available: {', '.join(list_models())}")
    pretrain = name.startswith("mae_")
    _, size, patch = name.removeprefix("mae_").split("_")
    return pretrain, SIZES[size], int(patch.removeprefix("patch"))


def create_model(name: str, *, num_frames: int = 16, img_size: int = 224, tubelet_size: int = 2,
                 num_classes: int = 0, drop_path_rate: float = 0.0, **kwargs):
    """Create a model by registry name.

    Pre-training models accept ``decoder_depth``, ``decoder_embed_dim``, ``decoder_num_heads``,
    ``norm_pix_loss``, ``grad_checkpointing``; classifiers accept ``use_mean_pooling``,
    ``fc_drop_rate``, ``init_scale``, ``drop_rate``, ``attn_drop_rate``, ``grad_checkpointing``;
    both accept ``pos_embed`` (``"sincos_1d"``, VideoMAE's, or ``"sincos_3d"``, separable).
    """
    pretrain, spec, patch = parse_name(name)
    common = dict(img_size=img_size, patch_size=patch, embed_dim=spec.embed_dim, depth=spec.depth,
                  num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio, num_frames=num_frames,
                  tubelet_size=tubelet_size, drop_path_rate=drop_path_rate)
    if pretrain:
        if num_classes:
            raise ValueError(f"{name} is a pre-training model; use {name.removeprefix('mae_')!r} "
                             f"for a classifier with num_classes={num_classes}")
        kwargs = {k: v for k, v in kwargs.items() if not (k.startswith("decoder_") and v is None)}
        kwargs.setdefault("decoder_embed_dim", spec.decoder_embed_dim)
        kwargs.setdefault("decoder_num_heads", spec.decoder_num_heads)
        kwargs.setdefault("decoder_depth", spec.decoder_depth)
        return PretrainVideoMAE(**common, **kwargs)
    return VisionTransformer(**common, num_classes=num_classes, **kwargs)


__all__ = ["MAEOutput", "PretrainVideoMAE", "VisionTransformer", "create_model", "list_models",
           "param_count", "SIZES"]
