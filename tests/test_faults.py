"""Fault injection: a pre-training run killed with SIGKILL at a random moment, then continued with
``--resume auto``, ends with exactly the weights of a run that was never interrupted.

What is pinned down, and why:

* SIGKILL cannot be caught, so nothing gets to write a last checkpoint or clean up: with
  ``train.save_every_steps=1`` a resume point (``checkpoint-last.pth``) is written after every
  optimizer step, and the kill lands wherever the process happens to be, often in the middle of
  that write (the child is killed just after it logs step k, which is right before it saves step k).
  Checkpoints are written atomically (temp file + fsync + rename, ``checkpoint.atomic_save``), so
  whatever the moment, ``checkpoint-last.pth`` must load and hold a step, never be a truncated file.
* The resumed run continues from that checkpoint (it prints ``resumed from ... at step S`` with S
  the checkpoint's step, which is at least k-1 >= 1: it does not start over), and a temp file left
  by a writer killed mid-save does not make it fail.
* Data order, augmentation and masks are functions of (seed, epoch, index) and the checkpoint
  carries the optimizer and RNG state (drop path draws from the global torch generator, so a
  resume that failed to restore it would diverge: checked by breaking it on purpose), so the resumed run's final weights are bit-identical
  (``torch.equal``) to the uninterrupted run's, and its ``log.jsonl`` holds one record per step
  with the same values.

The runs are real ``python -m mgmae pretrain`` processes on a tiny CPU config. The uninterrupted
reference run is started once per module (in the background, so it overlaps the first case) and
shared by the parametrised kill points. Each seed of ``random.Random`` picks the step to kill at and
a short extra delay (0-150 ms: a checkpoint write takes ~100 ms here, a step ~100-250 ms).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from mgmae.engine import checkpoint as ckpt

TINY = ["data.synthetic_videos=16", "data.num_frames=4", "data.img_size=32", "train.batch_size=4",
        "train.warmup_epochs=1", "train.vis_clips=1", "train.tensorboard=false", "train.lr=1e-3",
        "masking.mask_ratio=0.75"]
MAX_STEPS = 8  # 4 steps per epoch: kill points fall in epoch 0, on the boundary, or in epoch 1
ARGS = [*TINY, "train.num_workers=0", f"train.max_steps={MAX_STEPS}", "train.save_every_steps=1",
        "model.drop_path=0.1",  # draws from the global torch RNG: resume must restore it
        "train.baseline_clips=4"]
TIMEOUT = 300  # seconds for any one run (each takes ~10 s, most of it importing torch): never hang
POLL = 0.005


class Run:
    """``python -m mgmae pretrain`` as a child process, its output going to a file (not a pipe,
    which a chatty child could fill and block on while the parent polls)."""

    def __init__(self, out_dir: Path, name: str, *cli: str):
        self.dir = out_dir / name
        self.out_path = out_dir / f"{name}-{len(list(out_dir.glob(f'{name}-*.out')))}.out"
        self._out = self.out_path.open("w")
        cmd = [sys.executable, "-m", "mgmae", "pretrain", *cli, *ARGS, f"train.output_dir={out_dir}",
               f"train.run_name={name}"]
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))

    def output(self, tail: int = 4000) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.out_path.read_text(errors="replace")[-tail:]

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.dir.name} did not finish within {timeout} s; its output:\n{self.output()}")
        self._out.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
        self.proc.wait()
        self._out.close()


def logged(log: Path) -> list[dict]:
    """The complete JSON records of ``log.jsonl`` (a line still being written is skipped)."""
    if not log.is_file():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def step_records(log: Path) -> list[tuple]:
    """One ``(step, epoch, loss, lr, grad_norm)`` per logged optimizer step, in file order."""
    return [(r["step"], r["epoch"], r["loss"], r["lr"], r["grad_norm"]) for r in logged(log)
            if "loss" in r and "step" in r and not r.get("skipped_update")]


def wait_for_step(run: Run, k: int) -> None:
    log = run.dir / "log.jsonl"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if any(isinstance(r.get("step"), int) and r["step"] >= k for r in logged(log)):
            return
        if run.proc.poll() is not None:
            pytest.fail(f"the run exited ({run.proc.returncode}) before step {k}; its output:\n"
                        f"{run.output()}")
        time.sleep(POLL)
    run.kill()
    pytest.fail(f"the run did not reach step {k} within {TIMEOUT} s; its output:\n{run.output()}")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, (f"{len(differ)} of {len(a)} tensors differ from the uninterrupted run, "
                        f"first: {differ[:5]}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: started here, waited for when a case first needs its result."""
    run = Run(tmp_path_factory.mktemp("faults"), "full")
    cache: dict = {}

    def result() -> dict:
        if not cache:
            rc = run.wait()
            assert rc == 0, f"the reference run failed ({rc}):\n{run.output()}"
            cache["model"] = ckpt.load_checkpoint(run.dir / "checkpoint-final.pth")["model"]
            cache["log"] = step_records(run.dir / "log.jsonl")
            assert [r[0] for r in cache["log"]] == list(range(1, MAX_STEPS + 1))
        return cache

    yield result
    run.kill()


# seeds picked for what their (k, delay) hit here: 2 -> (2, 14 ms), mid-write early in epoch 0;
# 7 -> (4, 142 ms), the epoch boundary, where step 4 is saved twice (periodic, then end of epoch);
# 10 -> (6, 5 ms), mid-write in epoch 1
@pytest.mark.parametrize("seed", [2, 7, 10])
def test_sigkill_at_a_random_moment_then_resume_auto_ends_with_the_uninterrupted_weights(
        tmp_path, reference, seed):
    rng = random.Random(seed)
    k = rng.randint(2, MAX_STEPS - 2)  # >= 2: checkpoint k-1 >= 1 is complete; <= 6: never past the end
    delay = rng.uniform(0.0, 0.15)

    cut = Run(tmp_path, "cut")
    wait_for_step(cut, k)  # step k is logged just before its checkpoint is written
    time.sleep(delay)
    cut.proc.send_signal(signal.SIGKILL)
    rc = cut.wait()
    if rc == 0:  # only on a machine so loaded that the last two steps ran within `delay` + a poll
        pytest.skip(f"seed {seed}: the run finished before SIGKILL (step {k} + {delay:.3f} s) reached it")
    assert rc == -signal.SIGKILL, f"expected death by SIGKILL, got {rc}:\n{cut.output()}"
    assert not (cut.dir / "checkpoint-final.pth").exists()

    # whatever the moment of the kill, the resume point is a complete checkpoint
    saved = ckpt.load_checkpoint(cut.dir / "checkpoint-last.pth")["step"]
    assert k - 1 <= saved < MAX_STEPS, (k, saved)
    left = sorted(p.name for p in cut.dir.glob("*.tmp"))  # any: the kill hit a write mid-way
    print(f"seed {seed}: killed {delay * 1000:.0f} ms after step {k} was logged; checkpoint-last.pth "
          f"holds step {saved}; temp files left: {left or 'none'}")
    # and a truncated temp file such as a writer killed mid-save leaves, whether or not this kill did
    fd, _ = tempfile.mkstemp(prefix=".checkpoint-last.pth.", suffix=".tmp", dir=cut.dir)
    with os.fdopen(fd, "wb") as f:
        data = (cut.dir / "checkpoint-last.pth").read_bytes()
        f.write(data[: len(data) // 2])

    resumed = Run(tmp_path, "cut", "--resume", "auto")
    rc = resumed.wait()
    out = resumed.output(tail=10**6)
    assert rc == 0, f"the resumed run failed ({rc}):\n{out[-4000:]}"
    m = re.search(r"resumed from (.+?) at step (\d+)", out)
    assert m, f"the run did not resume (started over?):\n{out[-4000:]}"
    assert Path(m[1]).name == "checkpoint-last.pth", m[0]
    assert int(m[2]) == saved >= 1, (m[0], saved)  # from the last checkpoint, not from step 0

    ref = reference()
    assert_same(ckpt.load_checkpoint(cut.dir / "checkpoint-final.pth")["model"], ref["model"])
    assert step_records(cut.dir / "log.jsonl") == ref["log"]  # one record per step, values as uncut
