"""DataLoader construction: reproducible per-worker seeding, workers that keep their memory, and
workers that leave preemption to the training process.

Preemption as clusters deliver it (SLURM's scancel and requeue, ``timeout``, ``kill -TERM -PGID``,
torchrun forwarding a signal to each rank's process group) reaches every process of a run, loader
workers included. PyTorch's workers die on SIGTERM, and the training process then fails on their
deaths instead of saving its resume point. So workers ignore SIGTERM, SIGUSR1 and SIGINT: they are
forked with those signals blocked (:class:`Loader`) and keep them from PyTorch's handlers
(:func:`leave_stop_signals_to_the_parent`), so no signal reaches a worker in between; PyTorch can
still end a worker with its own SIGTERM. The training process catches the
signal, finishes its step, saves and shuts its workers down (docs/reliability.md). A worker whose
parent is gone exits on its own (PyTorch's watchdog).
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import threading

import numpy as np
import torch

from mgmae.data.pipeline import collate


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 2**20  # the largest M_MMAP_THRESHOLD glibc accepts on 64-bit systems
_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel:
    never trim the heap (``M_TRIM_THRESHOLD``), and serve blocks up to 32 MiB from it rather than
    from fresh ``mmap`` s (``M_MMAP_THRESHOLD``). A loader allocates and frees the same tens of
    megabytes for every clip (decoded frames, crops, resized and normalized views); with glibc's
    defaults, once clip sizes vary (any real dataset), they go back to the kernel and come back as
    fresh pages, zeroed on first touch: 5,000-7,000 page faults per 16 x 224 x 224 clip, 15-25% of
    a worker's CPU time (bench/RESULTS.md). The price: a process's resident memory stays near its
    high-water mark instead of falling back between clips (~5-15% more on mixed data).

    Called in every DataLoader worker and by :func:`build_loader` in the main process (which
    loads when ``num_workers=0``; forked workers inherit it). Once per process; True when set,
    False where malloc is not glibc's (macOS, Windows, musl) or ``MGMAE_KEEP_FREED_MEMORY=0``."""
    global _kept
    if _kept:
        return True
    if os.environ.get("MGMAE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    libc = glibc()
    if libc is None:
        return False
    _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _kept


def glibc():
    """The C library of this process if it is glibc (with ``mallopt``), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a worker from torch's per-worker seed, which DataLoader derives
    from its generator (so: reproducible for a seed, different across workers and epochs)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    leave_stop_signals_to_the_parent()
    keep_freed_memory()  # (inherited from the main process when forked; spawned workers set it here)
    # No cv2.setNumThreads here: changing OpenCV's thread pool in a forked child whose parent already
    # used it deadlocks (seen in CI).


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def leave_stop_signals_to_the_parent() -> None:
    """In a loader worker: Ctrl-C and a cluster's SIGTERM/SIGUSR1 reach the whole process group,
    and the training process saves a checkpoint and stops its workers itself; a worker dying first
    would crash it. SIGINT is ignored. SIGTERM and SIGUSR1 stay blocked (since the fork,
    :class:`Loader`) and one thread takes them with ``sigwaitinfo``, which names the sender: a
    SIGTERM from the parent is PyTorch stopping a worker that did not finish (``terminate()``), and
    ends the worker as PyTorch's own handler does; from anyone else, it is ignored. Without
    ``sigwaitinfo`` (not Linux) SIGTERM keeps PyTorch's handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return
    waited = {signal.SIGTERM, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)  # (already blocked when forked by Loader)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = os.getppid()

    def take():
        while True:
            info = signal.sigwaitinfo(waited)
            if info.si_signo == signal.SIGTERM and info.si_pid == parent:
                os._exit(0)

    threading.Thread(target=take, name="mgmae-stop-signals", daemon=True).start()


class Loader(torch.utils.data.DataLoader):
    """A DataLoader whose worker processes start with :data:`STOP_SIGNALS` blocked (they inherit
    the signal mask of the thread that forks them), until :func:`seed_worker` makes them ignore
    those signals. A signal that arrives meanwhile waits for the training process, as pending."""

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def build_loader(dataset, batch_size: int, *, num_workers: int = 0, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, sampler=None, pin_memory: bool = False,
                 persistent_workers: bool = False) -> torch.utils.data.DataLoader:
    keep_freed_memory()
    g = torch.Generator().manual_seed(seed)
    # Workers are re-created each epoch (persistent_workers=False by default) so that their seeds,
    # drawn from ``g``, make every epoch a pure function of (seed, epoch): exact resume.
    persistent_workers = bool(persistent_workers) and num_workers > 0
    return Loader(
        dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=num_workers, collate_fn=collate, drop_last=drop_last, generator=g,
        worker_init_fn=seed_worker, pin_memory=pin_memory, persistent_workers=persistent_workers,
        prefetch_factor=4 if num_workers > 0 else None,
    )
