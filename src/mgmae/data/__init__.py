"""Data: synthetic videos, video files / frame folders, clip sampling, transforms, loaders."""

from __future__ import annotations

from mgmae.data.loader import build_loader, seed_worker
from mgmae.data.pipeline import collate, make_views
from mgmae.data.synthetic import SyntheticDataset, SyntheticVideos


def uses_synthetic(cfg) -> bool:
    return cfg.data.dataset == "synthetic" or (cfg.data.dataset == "auto" and not cfg.data.train_list)


def build_pretrain_dataset(cfg, masker=None):
    """The pre-training dataset named by ``cfg.data`` (synthetic unless a train list is given).
    Returns ``(dataset, class_names)``."""
    d = cfg.data
    if uses_synthetic(cfg):
        videos = SyntheticVideos(d.synthetic_videos, d.num_frames, d.img_size, seed=d.synthetic_seed)
        videos.cache_all()  # rendered once, shared by the loader workers
        ds = SyntheticDataset(videos, masker=masker, num_sample=d.num_sample, scales=d.scales,
                              flip=d.flip, train=True, label=d.synthetic_label,
                              gt_flow=cfg.flow.name == "gt", seed=cfg.train.seed)
        return ds, ds.class_names
    if cfg.flow.name == "gt":
        raise ValueError("flow.name=gt (ground-truth flow) exists only for the synthetic dataset")
    from mgmae.data.datasets import build_dataset

    return build_dataset(d, masker, train=True, seed=cfg.train.seed)


__all__ = ["SyntheticDataset", "SyntheticVideos", "build_loader", "build_pretrain_dataset",
           "collate", "make_views", "seed_worker", "uses_synthetic"]
