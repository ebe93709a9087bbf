"""The DataLoader that training builds: its processes keep freed memory (glibc's malloc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mgmae.data.loader import glibc

# Allocate and free three 24 MiB buffers, eight times; churn() returns the page faults of rounds 2-8. With
# glibc's defaults the buffers go back to the kernel and every round faults them in again; when
# freed memory is kept, only the first round touches fresh pages.
PATTERN = """
import resource
import numpy as np

def churn():
    out = []
    for _ in range(8):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        bufs = [np.ones(24 * 2**20, np.uint8) for _ in range(3)]
        del bufs
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return sum(out[1:])
"""


def _faults(body: str, keep: bool) -> int:
    env = {**os.environ, "MGMAE_KEEP_FREED_MEMORY": "1" if keep else "0"}
    code = PATTERN + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _huge_pages_always() -> bool:
    """Transparent huge pages for every mapping: a 24 MiB buffer then faults in 2 MiB at a time,
    and fault counts no longer tell kept memory from fresh memory."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


needs_glibc = pytest.mark.skipif(glibc() is None or _huge_pages_always(),
                                 reason="glibc's malloc only, with 4 KiB pages (transparent huge pages not 'always')")

IN_MAIN = """
from mgmae.data import build_loader
build_loader(list(range(4)), 2)  # num_workers=0: the main process loads
print(churn())
"""

IN_WORKER = """
import json
import torch
from mgmae.data import build_loader

class Churn(torch.utils.data.Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        return {"video": torch.zeros(1, 1), "faults": churn()}

print(json.dumps(max(int(b["faults"][0]) for b in build_loader(Churn(), 1, num_workers=1))))
"""


@needs_glibc
@pytest.mark.parametrize("body", [IN_MAIN, IN_WORKER], ids=["main process", "worker"])
def test_loader_processes_keep_freed_memory(body):
    kept, default = _faults(body, keep=True), _faults(body, keep=False)
    assert default > 5000, default  # glibc's defaults: the rounds fault their buffers in again
    assert kept < 500, kept  # (a few stray pages: Python's own allocations)


def test_keep_freed_memory_can_be_switched_off():
    out = subprocess.run([sys.executable, "-c", "from mgmae.data.loader import keep_freed_memory; "
                          "print(keep_freed_memory())"], env={**os.environ, "MGMAE_KEEP_FREED_MEMORY": "0"},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_collate_in_a_worker_builds_the_batch_in_shared_memory(monkeypatch):
    """In a worker the concatenated views go straight to shared memory (no copy on the way to the
    training process); the batch is the same as in the main process."""
    import torch

    from mgmae.data.pipeline import collate

    samples = [{"video": torch.randn(2, 3, 4, 8, 8), "mask": torch.rand(2, 16) > 0.5, "label": i}
               for i in range(3)]
    main = collate(samples)
    assert not main["video"].is_shared()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    worker = collate(samples)
    assert worker["video"].is_shared() and worker["mask"].is_shared()
    for key in ("video", "mask", "label"):
        assert torch.equal(worker[key], main[key])
    assert worker["video"].shape == (6, 3, 4, 8, 8) and worker["label"].tolist() == [0, 0, 1, 1, 2, 2]
