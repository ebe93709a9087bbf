"""What a frozen evaluation costs next to fine-tuning, on the same data.

    OMP_NUM_THREADS=1 python bench/probe.py [--videos 1024] [--config study_transfer]

On the transfer study's setting (``mae_vit_nano_patch16``, 16 frames at 64 px, synthetic motion
labels; a random encoder: the cost does not depend on the weights) it times, in this process:

* computing the frozen encoder's tokens of every training video once (the probe's cache),
* one attentive-probe epoch on the cached tokens (``probe.*`` defaults),
* one linear-probe epoch on the mean-pooled features,
* one fine-tuning epoch (``mgmae finetune`` with the recipe's fine-tuning settings, loader and
  augmentation included, validation off),

and prints the ratios. Each timed part runs ``--repeat`` times; the median is reported.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from mgmae.config import load_config  # noqa: E402
from mgmae.data.synthetic import SyntheticDataset, SyntheticVideos  # noqa: E402
from mgmae.engine.finetune import finetune  # noqa: E402
from mgmae.engine.linprobe import train_probe  # noqa: E402
from mgmae.engine.probe import Tokens, train_attentive  # noqa: E402
from mgmae.models.build import build_encoder  # noqa: E402


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="study_transfer")
    ap.add_argument("--videos", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from mgmae.experiments.plan import load_plan

    plan = load_plan(args.config) if not args.config.endswith(".yaml") or os.path.exists(args.config) \
        else None
    cfg = plan.config() if plan is not None else load_config(args.config)
    cfg.data.synthetic_videos = args.videos
    d = cfg.data
    torch.manual_seed(0)
    encoder = build_encoder("scratch", cfg).eval()
    videos = SyntheticVideos(args.videos, d.num_frames, d.img_size, seed=d.synthetic_seed)
    ds = SyntheticDataset(videos, num_sample=1, train=False)
    t0 = time.perf_counter()
    clips = torch.stack([ds[i]["video"][0] for i in range(len(ds))])
    labels = torch.tensor([ds[i]["label"] for i in range(len(ds))]).numpy()
    render = time.perf_counter() - t0

    def tokens():
        with torch.no_grad():
            return torch.cat([encoder.forward_features(clips[i:i + 32]).to(torch.float16)
                              for i in range(0, len(clips), 32)])

    t_tok = median_time(tokens, args.repeat)
    tok = tokens()
    one = copy.deepcopy(cfg)
    one.probe.epochs = 1
    src = Tokens(tok, labels, encoder.num_heads)
    t_ap = median_time(lambda: train_attentive(src, 8, one, progress=False), args.repeat)
    feats = tok.float().mean(1).numpy()
    t_lp = median_time(lambda: train_probe(feats, labels, 8, epochs=1), args.repeat)

    def ft_epoch():
        c = copy.deepcopy(cfg)
        with tempfile.TemporaryDirectory() as out:
            c.train.output_dir, c.train.run_name = out, "ft"
            steps = len(ds) // c.finetune.batch_size
            c.train.max_steps, c.finetune.eval_every = steps, 10**6
            c.finetune.synthetic_val_videos = 0
            c.train.vis_clips = 0
            finetune(c, "scratch", progress=False)

    t_ft = median_time(ft_epoch, max(1, args.repeat // 2))
    p = cfg.probe
    print(f"{args.videos} synthetic videos, {cfg.model.name} ({d.num_frames} x {d.img_size}px, "
          f"{tok.shape[1]} tokens x {tok.shape[2]}), {torch.get_num_threads()} torch thread(s); "
          f"rendering the clips {render:.1f} s (shared, not counted)")
    print(f"| what | seconds | vs one fine-tuning epoch |\n|---|---|---|")
    rows = [("frozen tokens of every video, once (the probe's cache)", t_tok),
            (f"attentive probe, one epoch on cached tokens (batch {p.batch_size})", t_ap),
            ("linear probe, one epoch on pooled features", t_lp),
            (f"fine-tuning, one epoch (batch {cfg.finetune.batch_size}, loader and augmentation "
             f"included, the setup of a run too)", t_ft)]
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {t / t_ft:.3f}x |")
    total = t_tok + p.epochs * t_ap
    print(f"attentive probe at the default {p.epochs} epochs: {total:.1f} s = "
          f"{total / t_ft:.2f} fine-tuning epochs")


if __name__ == "__main__":
    main()
