"""Test-wide settings: the tests use tiny tensors, where one intra-op thread is fastest and where
several threads on a busy 2-core CI machine thrash (seen: 5 s -> 200 s for one test). Setting
OMP_NUM_THREADS also keeps the engine from choosing a thread count per run, so runs that must be
bit-identical (worker counts, resume) use the same arithmetic."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
