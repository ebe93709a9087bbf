"""Test-wide settings: the tests use tiny tensors, where one intra-op thread is fastest and where
several threads on a busy 2-core CI machine thrash (seen: 5 s -> 200 s for one test)."""

import torch

torch.set_num_threads(1)
