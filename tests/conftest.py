"""Test-wide settings: the tests use tiny tensors, where one intra-op thread is fastest and where
several threads on a busy 2-core CI machine thrash (seen: 5 s -> 200 s for one test). Setting
OMP_NUM_THREADS also keeps the engine from choosing a thread count per run, so runs that must be
bit-identical (worker counts, resume) use the same arithmetic."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signal_run(args: list[str], log: Path, sig: int, after_lines: int = 2,
               timeout: float = 120, group: bool = False, nproc: int = 0) -> tuple[int, str]:
    """Start ``python -m mgmae *args``, send ``sig`` once its ``log`` (log.jsonl) has
    ``after_lines`` records, and return its exit status and output. ``group``: the child leads a
    process group of its own and the signal goes to the whole group (loader workers included), as
    SLURM's scancel, ``timeout`` and ``kill -TERM -PGID`` deliver it. ``nproc``: under torchrun
    with that many processes (torchrun forwards the signal to each rank's process group)."""
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(_free_port())] if nproc else [sys.executable])
    proc = subprocess.Popen([*launch, "-m", "mgmae", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=group,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + timeout
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= after_lines):
        time.sleep(0.2)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


@pytest.fixture
def torchrun():
    """``torchrun(nproc, *mgmae_args)``: runs ``python -m mgmae *mgmae_args`` under
    torch.distributed.run (gloo on CPU, one thread per process) and asserts it exits 0. The master
    port is one free at launch time (a port derived from the pid can be taken by another job or
    still be in TIME_WAIT from the previous launch)."""
    def run(nproc: int, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(_free_port()), "-m", "mgmae", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res
    return run
