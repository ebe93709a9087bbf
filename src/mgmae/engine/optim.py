"""Optimizer parameter groups and the per-step learning-rate and weight-decay schedules."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None,
                 num_layers: int | None = None) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases and position/cls/mask tokens (1-d tensors
    and names in ``model.no_weight_decay()``); with ``layer_decay``, parameters of block ``i``
    get ``lr_scale = layer_decay ** (num_layers + 1 - layer_id)`` (patch embedding = layer 0,
    block i = layer i + 1, head/norm = layer num_layers + 1)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in skip or name in skip
        layer = layer_id(name, num_layers) if layer_decay is not None else 0
        key = (layer, no_decay)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - layer) if layer_decay is not None else 1.0
            groups[key] = {"params": [], "names": [], "weight_decay": 0.0 if no_decay else weight_decay,
                           "lr_scale": scale}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise lr decay (VideoMAE/BEiT convention)."""
    name = name.removeprefix("encoder.")
    if name.startswith(("patch_embed", "pos_embed", "cls_token", "mask_token")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95),
                    layer_decay: float | None = None, num_layers: int | None = None,
                    fused: bool | None = None) -> torch.optim.AdamW:
    groups = param_groups(model, weight_decay, layer_decay, num_layers)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if fused is None:
        fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float,
          warmup_lr: float = 0.0) -> float:
    """Linear warm-up from ``warmup_lr`` to ``lr`` over ``warmup_steps``, then half-cosine to ``min_lr``."""
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def weight_decay_at(step: int, total_steps: int, weight_decay: float, weight_decay_end: float) -> float:
    """VideoMAE's ``cosine_scheduler(weight_decay, weight_decay_end, epochs, niter_per_ep)``: the
    :func:`lr_at` half-cosine without warm-up, per optimizer step."""
    return lr_at(step, total_steps, 0, weight_decay, weight_decay_end)


def weight_decay_schedule(total_steps: int, weight_decay: float, weight_decay_end: float | None):
    """``step -> weight decay`` for :func:`mgmae.engine.loop.train_epoch`, or None (constant, as
    built) when ``weight_decay_end`` is None."""
    if weight_decay_end is None:
        return None
    return lambda k: weight_decay_at(k, total_steps, weight_decay, weight_decay_end)


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Set the groups that decay (weight_decay > 0); norms, biases and tokens stay at 0."""
    for g in optimizer.param_groups:
        if g["weight_decay"] > 0:
            g["weight_decay"] = weight_decay
