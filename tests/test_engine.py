"""The pre-training engine: exact resume, DDP/accumulation equivalence, preemption, NaN guard."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import signal_run

from mgmae.config import load_config
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.loop import Preempted, find_resume
from mgmae.engine.pretrain import pretrain

TINY = ["data.synthetic_videos=16", "data.num_frames=4", "data.img_size=32", "train.batch_size=4",
        "train.warmup_epochs=1", "train.vis_clips=1", "train.tensorboard=false", "train.lr=1e-3",
        "masking.mask_ratio=0.75"]


def cfg_for(tmp_path, name, *extra):
    return load_config(None, TINY + [f"train.output_dir={tmp_path}", f"train.run_name={name}", *extra])


def weights(run_dir: Path) -> dict:
    return ckpt.load_checkpoint(run_dir / "checkpoint-final.pth")["model"]


def assert_same(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


@pytest.mark.parametrize("stop", [2, 5])  # mid-epoch 0, and mid-epoch 1 (4 steps per epoch)
def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path, stop):
    extra = ["train.max_steps=7", "train.num_workers=0", "masking.name=motion_guided"]
    full = pretrain(cfg_for(tmp_path, "full", *extra))
    with pytest.raises(Preempted):
        pretrain(cfg_for(tmp_path, "cut", *extra), stop_at_step=stop)
    state = ckpt.load_checkpoint(tmp_path / "cut" / "checkpoint-last.pth")
    assert state["step"] == stop
    resumed = pretrain(cfg_for(tmp_path, "cut", *extra, "train.resume=auto"))
    assert_same(weights(full), weights(resumed))


def test_worker_count_does_not_change_the_run(tmp_path):
    a = pretrain(cfg_for(tmp_path, "w0", "train.max_steps=3", "train.num_workers=0"))
    b = pretrain(cfg_for(tmp_path, "w2", "train.max_steps=3", "train.num_workers=2"))
    assert_same(weights(a), weights(b))


def test_accumulation_equals_the_big_batch(tmp_path):
    big = pretrain(cfg_for(tmp_path, "big", "train.max_steps=3", "train.num_workers=0", "train.batch_size=4"))
    acc = pretrain(cfg_for(tmp_path, "acc", "train.max_steps=3", "train.num_workers=0", "train.batch_size=2",
                           "train.accum_steps=2"))
    assert_same(weights(big), weights(acc), atol=1e-5)


def _pretrain_ddp(torchrun, tmp_path, name, nproc, *extra):
    torchrun(nproc, "pretrain", *TINY, f"train.output_dir={tmp_path}", f"train.run_name={name}", *extra)
    return tmp_path / name


def test_two_process_ddp_equals_one_process_with_double_batch(tmp_path, torchrun):
    """torchrun --nproc_per_node 2 (gloo, CPU), batch b per rank == 1 process, batch 2b ==
    1 process, batch b, accum_steps=2 (weights to 1e-5)."""
    common = ["train.max_steps=3", "train.num_workers=0"]
    ddp = _pretrain_ddp(torchrun, tmp_path, "ddp", 2, *common, "train.batch_size=2")
    one = pretrain(cfg_for(tmp_path, "one", *common, "train.batch_size=4"))
    acc = pretrain(cfg_for(tmp_path, "acc", *common, "train.batch_size=2", "train.accum_steps=2"))
    assert_same(weights(ddp), weights(one), atol=1e-5)
    assert_same(weights(acc), weights(one), atol=1e-5)
    fsdp = _pretrain_ddp(torchrun, tmp_path, "fsdp", 2, *common, "train.batch_size=2", "train.fsdp=true")
    assert_same(weights(fsdp), weights(one), atol=1e-5)


def test_sigterm_saves_a_resume_point_and_exits_with_the_preemption_code(tmp_path):
    args = ["pretrain", *TINY, f"train.output_dir={tmp_path}", "train.run_name=sig",
            "train.epochs=1000", "train.num_workers=0", "masking.name=tube"]
    rc, out = signal_run(args, tmp_path / "sig" / "log.jsonl", signal.SIGTERM)
    assert rc == 75, out[-2000:]
    state = ckpt.load_checkpoint(tmp_path / "sig" / "checkpoint-last.pth")
    assert state["step"] >= 2
    assert "resume" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_to_the_whole_process_group_saves_and_the_run_resumes_exactly(tmp_path, sig):
    """A cluster's preemption signals every process of the job, loader workers included: the
    workers must not die first (the main process would crash on their deaths and save nothing).
    Held-out check: the resumed run ends with the weights of a run never interrupted."""
    extra = ["train.max_steps=40", "train.num_workers=2", "masking.name=motion_guided", "data.img_size=64"]
    args = ["pretrain", *TINY, f"train.output_dir={tmp_path}", "train.run_name=cut", *extra]
    rc, out = signal_run(args, tmp_path / "cut" / "log.jsonl", sig, after_lines=3, group=True)
    assert rc == 75, out[-3000:]
    assert "Traceback" not in out and "killed by signal" not in out, out[-3000:]
    step = ckpt.load_checkpoint(tmp_path / "cut" / "checkpoint-last.pth")["step"]
    assert 2 <= step < 40
    resumed = pretrain(cfg_for(tmp_path, "cut", *extra, "train.resume=auto"))
    full = pretrain(cfg_for(tmp_path, "full", *extra))
    assert_same(weights(full), weights(resumed))


def test_group_sigterm_during_finetuning_saves_a_resume_point(tmp_path):
    args = ["finetune", "scratch", "data.num_frames=4", "data.img_size=16", "data.synthetic_videos=16",
            "finetune.synthetic_val_videos=4", "finetune.batch_size=4", "finetune.warmup_epochs=0",
            "train.tensorboard=false", "train.num_workers=2", "finetune.epochs=200",
            f"train.output_dir={tmp_path}", "train.run_name=ft", "--quiet"]
    rc, out = signal_run(args, tmp_path / "ft" / "log.jsonl", signal.SIGTERM, after_lines=3, group=True)
    assert rc == 75, out[-3000:]
    assert "Traceback" not in out and "killed by signal" not in out, out[-3000:]
    assert ckpt.load_checkpoint(tmp_path / "ft" / "checkpoint-last.pth")["step"] >= 2


def test_group_sigterm_under_torchrun_saves_on_every_rank_and_the_run_resumes(tmp_path, torchrun):
    """torchrun forwards the signal to each rank's process group (rank + its loader workers): the
    ranks agree to stop, rank 0 writes the resume point, each rank exits 75 (torchrun itself then
    reports the signal it got and exits 1: its own behaviour), and --resume auto continues."""
    common = [*TINY, f"train.output_dir={tmp_path}", "train.run_name=ddp", "train.batch_size=2",
              "masking.name=tube", "train.num_workers=1"]
    rc, out = signal_run(["pretrain", *common, "train.max_steps=400"], tmp_path / "ddp" / "log.jsonl",
                         signal.SIGTERM, after_lines=3, group=True, nproc=2)
    assert "killed by signal" not in out and "stopped on signal 15" in out, out[-3000:]
    step = ckpt.load_checkpoint(tmp_path / "ddp" / "checkpoint-last.pth")["step"]
    assert 2 <= step < 400
    res = torchrun(2, "pretrain", *common, f"train.max_steps={step + 2}", "--resume", "auto")
    assert f"at step {step}" in res.stdout, res.stdout[-2000:]
    assert ckpt.load_checkpoint(tmp_path / "ddp" / "checkpoint-final.pth")["step"] == step + 2


def test_non_finite_loss_is_skipped_then_stops(tmp_path, monkeypatch):
    import mgmae.engine.pretrain as eng

    real_build = eng.build_model
    calls = {"n": 0}

    def poisoned(cfg):
        model = real_build(cfg)
        forward = model.forward

        def fwd(clip, mask):
            out = forward(clip, mask)
            calls["n"] += 1
            if calls["n"] in (2,) or calls["n"] >= 4:
                out.loss = out.loss * float("nan")
            return out
        model.forward = fwd
        return model

    monkeypatch.setattr(eng, "build_model", poisoned)
    with pytest.raises(FloatingPointError, match="consecutive"):
        pretrain(cfg_for(tmp_path, "nan", "train.max_steps=20", "train.num_workers=0", "train.max_bad_steps=3"))
    lines = (tmp_path / "nan" / "log.jsonl").read_text().splitlines()
    assert sum('"skipped_update": true' in ln for ln in lines) == 4  # step 2, then 4, 5, 6


def test_resume_auto_skips_a_corrupt_newer_checkpoint(tmp_path):
    run = pretrain(cfg_for(tmp_path, "c", "train.max_steps=2", "train.num_workers=0"))
    good = run / "checkpoint-final.pth"
    bad = run / "checkpoint-last.pth"
    bad.write_bytes(good.read_bytes()[:1000])  # truncated
    os.utime(bad, (time.time() + 10, time.time() + 10))
    assert find_resume(run, "auto") == good


WRITER = r"""
import sys, torch
from mgmae.engine.checkpoint import atomic_save
i = 0
while True:
    i += 1
    atomic_save({"format": "mgmae", "i": i, "w": torch.full((4_000_000,), float(i))}, sys.argv[1])
    print(i, flush=True)
"""


def test_killing_the_writer_mid_save_never_leaves_a_truncated_checkpoint(tmp_path):
    path = tmp_path / "ck.pth"
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one complete file exists
        time.sleep(delay)
        proc.kill()
        proc.wait()
        obj = torch.load(path, weights_only=True)
        assert obj["format"] == "mgmae" and bool((obj["w"] == obj["i"]).all())


def test_eta_counts_only_the_steps_this_process_ran():
    from mgmae.engine.pretrain import eta_seconds

    assert eta_seconds(60.0, 0, 16, 32) == pytest.approx(60.0)  # half done in a minute
    assert eta_seconds(60.0, 2000, 2016, 4000) == pytest.approx(60.0 / 16 * 1984)  # resumed at 2000
    assert eta_seconds(5.0, 10, 10, 20) == pytest.approx(50.0)  # no step yet: no division by zero
    assert eta_seconds(60.0, 0, 40, 32) == 0.0
