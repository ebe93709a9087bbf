"""How many supervised steps the synthetic motion labels take to learn: validation top-1 curves.

    python bench/supervised_motion.py cnn --steps 1500 --lr 2e-3
    python bench/supervised_motion.py scratch --steps 1500 --lr 1e-3            # ViT nano, random init
    python bench/supervised_motion.py runs/x/checkpoint-final.pth --steps 1500  # ViT from a checkpoint

A plain loop, on purpose without the fine-tuning recipe (no layer decay unless ``--layer-decay``, no
drop path, label smoothing or mixup): the fine-tuning engine's optimizer groups and schedule
(``mgmae.engine.optim``: AdamW, weight decay 0.05 except on norms, biases and positions,
``--warmup`` linear warm-up steps then cosine to zero), batch 16 drawn with ``--seed`` from
``--videos`` training videos (video seed 0, multi-scale crops), validation top-1 on 256 held-out
videos (seed 1, centre views) every ``--every`` steps. Same seed = same batches, so two runs differ only by the model.

``cnn`` is a 3-layer 3D CNN with global average pooling (a sanity check that the labels are
learnable at all); ``scratch`` builds ``--arch`` (default ``vit_nano_patch8``) with ``--pos-embed``
(a checkpoint brings its own). ``--seed`` changes the initialisation and the batch order (the
training and validation videos stay the same): run several before trusting a difference.
``--only patch_embed`` (or ``blocks``, ...) starts from the ``scratch`` weights with only those parts
taken from the checkpoint. Used in
docs/notes/2026-12-02-*.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.config import load_config  # noqa: E402
from mgmae.data.synthetic import SyntheticDataset, SyntheticVideos  # noqa: E402
from mgmae.engine.optim import build_optimizer, lr_at, set_lr  # noqa: E402
from mgmae.models.build import build_classifier  # noqa: E402


def transplant(model: str, prefixes: list[str], pos_embed: str, arch: str) -> nn.Module:
    """The ``scratch`` ViT (the same initial weights as ``scratch`` with the same seed) with the
    state-dict entries starting with one of ``prefixes`` (e.g. ``patch_embed``, ``blocks``) taken
    from the checkpoint: which part of a pre-trained encoder helps or hurts."""
    m = build("scratch", pos_embed, arch)
    with torch.random.fork_rng(devices=[]):  # the batch order stays that of the scratch run
        pre = build(model, pos_embed, arch).state_dict()
    sd = m.state_dict()
    took = [k for k in sd if any(k.startswith(p) for p in prefixes)]
    if not took:
        raise SystemExit(f"--only {','.join(prefixes)}: no such entries (e.g. {', '.join(list(sd)[:3])})")
    sd.update({k: pre[k] for k in took})
    m.load_state_dict(sd)
    print(f"from {model}: {len(took)} tensors ({', '.join(sorted({k.split('.')[0] for k in took}))}), "
          f"the rest random", flush=True)
    return m


def build(model: str, pos_embed: str, arch: str = "vit_nano_patch8") -> nn.Module:
    if model == "cnn":
        return nn.Sequential(nn.Conv3d(3, 32, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)), nn.ReLU(),
                             nn.Conv3d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv3d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, 8))
    cfg = load_config(None, [f"model.name=mae_{arch}", "model.tubelet_size=2", f"model.pos_embed={pos_embed}",
                             "data.num_frames=16", "data.img_size=64", "finetune.drop_path=0"])
    return build_classifier(model, cfg, num_classes=8)  # "scratch" or a checkpoint


def batch(ds, indices) -> tuple[torch.Tensor, torch.Tensor]:
    items = [ds[int(i)] for i in indices]
    return torch.stack([it["video"][0] for it in items]), torch.tensor([it["label"] for it in items])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="cnn | scratch | a checkpoint path")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--layer-decay", type=float, default=1.0)
    p.add_argument("--videos", type=int, default=1024)
    p.add_argument("--label", default="motion", choices=["motion", "appearance"])
    p.add_argument("--pos-embed", default="sincos_3d")
    p.add_argument("--arch", default="vit_nano_patch8", help="the ViT built for 'scratch'")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    p.add_argument("--only", default="", help="with a checkpoint: take only these comma-separated "
                   "state-dict prefixes from it (patch_embed, blocks, blocks.0, ...), the rest "
                   "initialised like 'scratch' (give --arch)")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train_videos, val_videos = SyntheticVideos(a.videos, seed=0), SyntheticVideos(256, seed=1)
    train_videos.cache_all()
    val_videos.cache_all()
    train = SyntheticDataset(train_videos, train=True, label=a.label)
    xv, yv = batch(SyntheticDataset(val_videos, train=False, label=a.label), range(256))
    only = [k for k in a.only.split(",") if k]
    if only and a.model in ("cnn", "scratch"):
        p.error("--only takes parts of a checkpoint")
    model = transplant(a.model, only, a.pos_embed, a.arch) if only else build(a.model, a.pos_embed, a.arch)
    blocks = getattr(model, "blocks", None)  # the CNN has none: no layer decay
    layer_decay = a.layer_decay if blocks is not None else None
    opt = build_optimizer(model, a.lr, weight_decay=0.05, betas=(0.9, 0.999), layer_decay=layer_decay,
                          num_layers=len(blocks) if blocks is not None else None)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    for step in range(a.steps + 1):
        if step % a.every == 0 or step == a.steps:
            model.eval()
            with torch.no_grad():
                acc = (model(xv).argmax(1) == yv).float().mean().item()
            print(f"step {step:5d}  val top-1 {100 * acc:5.1f}%  ({time.time() - t0:.0f} s)", flush=True)
            model.train()
        if step == a.steps:
            break
        train.set_epoch(step)  # fresh crops per step
        x, y = batch(train, rng.integers(0, a.videos, 16))
        set_lr(opt, lr_at(step, a.steps, a.warmup, a.lr, min_lr=0.0))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
