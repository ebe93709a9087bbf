"""torch.distributed glue: torchrun / SLURM environments, resumable distributed sampling.

Launch with ``torchrun --nproc_per_node N -m mgmae pretrain ...`` (multi-node: ``--nnodes`` and
``--rdzv_*``), or under SLURM with ``srun`` (``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` plus
``MASTER_ADDR``/``MASTER_PORT``). NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank/world from torchrun's variables, else SLURM's, else a single process."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                        int(os.environ.get("LOCAL_RANK", 0)))
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", 1)) > 1:
        return DistInfo(int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]),
                        int(os.environ.get("SLURM_LOCALID", 0)))
    return DistInfo()


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched with several processes; pick the device."""
    info = env_info()
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={device_name!r} but CUDA is not available; use train.device=cpu")
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        device = torch.device(device_name if ":" in device_name else f"cuda:{info.local_rank}")
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if info.enabled and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise RuntimeError("distributed launch without MASTER_ADDR/MASTER_PORT: use torchrun, or set "
                               "them in the SLURM script (see docs/distributed.md)")
        os.environ.setdefault("RANK", str(info.rank))
        os.environ.setdefault("WORLD_SIZE", str(info.world_size))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=info.rank,
                                world_size=info.world_size)
    return info, device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / info.world_size).tolist()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (e.g. a preemption signal seen by one)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class ResumableSampler(torch.utils.data.Sampler):
    """Shuffled, rank-sharded sampling whose order is a pure function of (seed, epoch) and which can
    start mid-epoch. Rank ``r`` takes ``perm[r::world]``; with the same seed, step ``k`` of a run
    with ``world`` ranks x batch ``b`` sees exactly the videos of step ``k`` of a 1-rank run with
    batch ``world*b`` (so DDP and gradient accumulation reproduce a single big batch)."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, batch_size: int = 1, multiple: int | None = None):
        self.size, self.rank, self.world, self.seed = size, rank, world_size, seed
        self.shuffle = shuffle
        self.batch_size = batch_size  # per rank; the unit of start_batch
        self.epoch = 0
        self.start_batch = 0
        per_rank = size // world_size
        multiple = multiple or batch_size  # e.g. batch x accum_steps: whole optimizer steps only
        self.per_rank = per_rank - per_rank % multiple

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.size, generator=g).tolist()
        else:
            perm = list(range(self.size))
        mine = perm[self.rank::self.world][: self.per_rank]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank - self.start_batch * self.batch_size
