"""DataLoader construction with reproducible per-worker seeding."""

from __future__ import annotations

import random
import signal

import numpy as np
import torch

from mgmae.data.pipeline import collate


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a worker from torch's per-worker seed, which DataLoader derives
    from its generator (so: reproducible for a seed, different across workers and epochs)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # Ctrl-C reaches the whole process group: the training process saves a checkpoint and stops
    # its workers itself; a worker dying on SIGINT first would break the batch it is loading.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No cv2.setNumThreads here: changing OpenCV's thread pool in a forked child whose parent already
    # used it deadlocks (seen in CI).


def build_loader(dataset, batch_size: int, *, num_workers: int = 0, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, sampler=None, pin_memory: bool = False,
                 persistent_workers: bool = False) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    # Workers are re-created each epoch (persistent_workers=False by default) so that their seeds,
    # drawn from ``g``, make every epoch a pure function of (seed, epoch): exact resume.
    persistent_workers = bool(persistent_workers) and num_workers > 0
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=num_workers, collate_fn=collate, drop_last=drop_last, generator=g,
        worker_init_fn=seed_worker, pin_memory=pin_memory, persistent_workers=persistent_workers,
        prefetch_factor=4 if num_workers > 0 else None,
    )
