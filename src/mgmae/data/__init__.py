"""Data: synthetic videos, video files / frame folders, clip sampling, transforms, loaders."""

from __future__ import annotations

import logging

from mgmae.data.loader import build_loader, seed_worker
from mgmae.data.pipeline import collate, make_views
from mgmae.data.synthetic import SyntheticDataset, SyntheticVideos, synthetic_videos


def uses_synthetic(cfg) -> bool:
    return cfg.data.dataset == "synthetic" or (cfg.data.dataset == "auto" and not cfg.data.train_list)


def build_pretrain_dataset(cfg, masker=None):
    """The pre-training dataset named by ``cfg.data`` (synthetic unless a train list is given).
    Returns ``(dataset, class_names)``."""
    d = cfg.data
    codec = cfg.flow.name == "codec" and cfg.masking.name == "motion_guided"
    if uses_synthetic(cfg):
        if codec and not d.synthetic_encode and cfg.flow.fallback is None:
            raise ValueError("flow.name=codec takes motion vectors from compressed video files; the "
                             "synthetic videos are not compressed unless data.synthetic_encode=true "
                             "(or set flow.fallback=dis to use DIS flow instead)")
        if codec and not d.synthetic_encode:
            logging.getLogger(__name__).warning(
                "flow.name=codec: the synthetic videos have no motion vectors (data.synthetic_encode="
                "false); DIS flow instead (flow.fallback=dis)")
        videos = synthetic_videos(d)
        videos.cache_all()  # rendered once, shared by the loader workers
        ds = SyntheticDataset(videos, masker=masker, num_sample=d.num_sample, scales=d.scales,
                              flip=d.flip, train=True, label=d.synthetic_label,
                              gt_flow=cfg.flow.name == "gt", codec_flow=codec and d.synthetic_encode,
                              seed=cfg.train.seed)
        return ds, ds.class_names
    if cfg.flow.name == "gt":
        raise ValueError("flow.name=gt (ground-truth flow) exists only for the synthetic dataset")
    from mgmae.data.datasets import build_dataset

    ds, names = build_dataset(d, masker, train=True, seed=cfg.train.seed, codec_flow=codec,
                              flow_fallback=cfg.flow.fallback if codec else None)
    if codec and cfg.flow.fallback is None:
        ds.check_codec_flow()  # fail at the start, in this process, not in a loader worker
    return ds, names


__all__ = ["SyntheticDataset", "SyntheticVideos", "build_loader", "build_pretrain_dataset",
           "collate", "make_views", "seed_worker", "uses_synthetic"]
