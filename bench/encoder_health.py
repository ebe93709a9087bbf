"""How an encoder's residual stream looks on held-out synthetic clips: is there anything left that
differs from token to token?

    python bench/encoder_health.py random runs/demo/checkpoint-final.pth [more checkpoints]

For each encoder (``random`` = a fresh ``vit_nano_patch8`` with the separable position table) it
prints, on 16 held-out synthetic clips (seed 1, centre views, all 512 tokens):

* the mean norm of the patch-embedding output next to the position table's (the fixed sin-cos
  table has norm sqrt(dim / 2) per token, 8 for the nano model; a patch embedding that grows to
  20x that leaves positions a few percent of each token);
* the mean norm of the tokens after the last block, the norm of their mean over all tokens and
  clips (a vector every token carries), and the mean norm of each token minus its clip's mean
  (what distinguishes tokens: where the object is, when). "spread" is the last over the first:
  ~0.4 for a random encoder; a small value means LayerNorm sees nearly the same vector everywhere
  and a classifier on top has little to start from.

The numbers are :func:`mgmae.models.vit.token_statistics`; ``mgmae pretrain`` prints them for its
encoder at the end of a run and ``mgmae finetune`` for the encoder it loads.

Used in docs/notes/2026-12-02-can-a-vit-learn-the-motion-labels.md to explain why encoders pre-trained with a high
learning rate fine-tune more slowly than a random one on the motion labels.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.config import load_config  # noqa: E402
from mgmae.data.synthetic import SyntheticDataset, SyntheticVideos  # noqa: E402
from mgmae.models.build import build_classifier  # noqa: E402
from mgmae.models.vit import token_statistics  # noqa: E402


def encoder(path: str, pos_embed: str):
    cfg = load_config(None, ["model.name=mae_vit_nano_patch8", "model.tubelet_size=2",
                             f"model.pos_embed={pos_embed}", "data.num_frames=16", "data.img_size=64",
                             "finetune.drop_path=0"])
    if path == "random":
        torch.manual_seed(0)
    return build_classifier("scratch" if path == "random" else path, cfg, num_classes=8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint paths or 'random'")
    p.add_argument("--pos-embed", default="sincos_3d", help="position table of the random encoder")
    p.add_argument("--clips", type=int, default=16)
    a = p.parse_args()
    torch.set_num_threads(1)
    ds = SyntheticDataset(SyntheticVideos(a.clips, seed=1), train=False)
    clips = torch.stack([ds[i]["video"][0] for i in range(a.clips)])  # [B, C, T, H, W]
    print(f"{'encoder':<48} {'patch':>7} {'pos':>5} {'token':>7} {'common':>7} {'within':>7} {'spread':>6}")
    for path in a.checkpoints:
        r = token_statistics(encoder(path, a.pos_embed), clips)
        print(f"{path[-48:]:<48} {r['patch']:7.1f} {r['pos']:5.1f} {r['token']:7.1f} {r['common']:7.1f} "
              f"{r['within']:7.1f} {r['spread']:6.3f}")


if __name__ == "__main__":
    main()
