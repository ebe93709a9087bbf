"""Bad input and faults: every row of docs/reliability.md that is not a checkpoint-safety row
(tests/test_safe_load.py) or a kill test (tests/test_faults.py) is pinned here.

NaN is never a score; a run asked to resume resumes or says why it cannot; every user error is
one line (``mgmae <command>: error: ...``, exit 2).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import signal_run

from mgmae.cli import main
from mgmae.config import load_config
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.evaluate import predict_dataset
from mgmae.engine.finetune import finetune
from mgmae.engine.loop import Preempted, find_resume
from mgmae.engine.pretrain import pretrain
from mgmae.models import create_model
from mgmae.viz import log_records, plot_loss_curve

TINY = ["data.synthetic_videos=16", "data.num_frames=4", "data.img_size=32", "train.batch_size=4",
        "train.warmup_epochs=1", "train.vis_clips=1", "train.baseline_clips=4",
        "train.tensorboard=false", "train.lr=1e-3", "masking.mask_ratio=0.75", "masking.name=tube",
        "train.num_workers=0"]
FT = ["data.num_frames=4", "data.img_size=16", "data.synthetic_videos=8",
      "finetune.synthetic_val_videos=4", "finetune.batch_size=4", "train.num_workers=0",
      "finetune.warmup_epochs=0", "train.tensorboard=false"]


def cfg_for(tmp_path, *extra, name: str | None = "run"):
    run = [f"train.run_name={name}"] if name else []
    return load_config(None, TINY + [f"train.output_dir={tmp_path}", *run, *extra])


def one_error_line(capsys, command: str) -> str:
    """The error message: one ``mgmae <command>: error: ...`` line (a message may add detail
    lines below it, e.g. examples of unreadable files), never a traceback; progress bars aside."""
    err = [ln for ln in capsys.readouterr().err.splitlines()
           if ln.strip() and not re.match(r"\w+:\s+\d+%\|", ln)]
    assert not any("Traceback" in ln for ln in err), err
    starts = [i for i, ln in enumerate(err) if ln.startswith(f"mgmae {command}: error: ")]
    assert len(starts) == 1 and not any("error:" in ln for ln in err[:starts[0]]), err
    return "\n".join(err[starts[0]:])


def _classifier_state(nan: bool = False) -> dict:
    torch.manual_seed(0)
    sd = create_model("vit_nano_patch8", num_classes=3, num_frames=4, img_size=16).state_dict()
    if nan:
        sd["blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    return sd


# ----------------------------------------------------------------------------- NaN is never a score
def test_nan_weights_are_refused_by_eval_and_convert(tmp_path, capsys):
    cfg = load_config(None, FT)
    ours = tmp_path / "ours.pth"  # as a diverged run of an older version could have left it
    torch.save({"format": "mgmae", "version": 1, "kind": "classify", "config": cfg.to_dict(),
                "model": _classifier_state(nan=True), "extra": {}}, ours)
    official = tmp_path / "official.pth"
    torch.save({"model": _classifier_state(nan=True)}, official)
    assert main(["eval", str(ours), "--quiet"]) == 2
    line = one_error_line(capsys, "eval")
    assert str(ours) in line and "NaN" in line and "blocks.0.mlp.fc1.weight" in line
    assert main(["convert", str(official), str(tmp_path / "out.safetensors")]) == 2
    assert "NaN" in one_error_line(capsys, "convert")
    assert not (tmp_path / "out.safetensors").exists()


def test_nan_scores_are_an_error_not_an_accuracy():
    from mgmae.data import SyntheticDataset, SyntheticVideos

    class NaNModel(torch.nn.Module):  # finite weights, non-finite outputs (e.g. an fp16 overflow)
        def forward(self, x):
            return torch.full((x.shape[0], 3), float("nan"))

    videos = SyntheticVideos(4, 4, 16, seed=0)
    ds = SyntheticDataset(videos, num_sample=1, train=False, label="motion")
    with pytest.raises(FloatingPointError, match="NaN or inf for 4 of 4 videos"):
        predict_dataset(NaNModel(), ds, batch_size=2, progress=False)


def test_a_nan_model_is_never_saved(tmp_path):
    model = create_model("vit_nano_patch8", num_classes=3, num_frames=4, img_size=16)
    path = ckpt.save_checkpoint(tmp_path / "c.pth", model=model, config={}, kind="classify", step=1)
    good = path.read_bytes()
    with torch.no_grad():
        model.head.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="head.weight"):
        ckpt.save_checkpoint(path, model=model, config={}, kind="classify", step=2)
    assert path.read_bytes() == good  # the earlier checkpoint is untouched


def test_diverging_finetune_stops_and_keeps_the_last_good_best(tmp_path, capsys):
    """An exploding lr: the non-finite guard skips the updates and stops the run (exit 2); the
    best checkpoint is the one validated before, with finite weights."""
    args = ["scratch", *FT, f"train.output_dir={tmp_path}", "train.run_name=boom",
            "finetune.epochs=6", "finetune.lr=1e4", "train.max_bad_steps=2", "--quiet"]
    assert main(["finetune", *args]) == 2
    line = one_error_line(capsys, "finetune")
    assert "non-finite" in line or "NaN" in line
    best = tmp_path / "boom" / "checkpoint-best.pth"
    if best.exists():
        state = ckpt.load_checkpoint(best)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# ----------------------------------------------------------------------------- loss curves
def test_loss_curve_of_a_run_with_skipped_steps(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [{"step": 1, "loss": 0.5, "lr": 1e-3},
            {"step": 2, "skipped_update": True, "loss": "nan", "grad_norm": "nan"},
            {"step": 2, "loss": float("nan"), "lr": 1e-3},
            {"step": 3, "loss": 0.4, "lr": 1e-3},
            {"step": 4, "loss": 0.9, "lr": 1e-3},  # redone after a resume from step 3 ...
            {"step": 3, "resumed_from": "checkpoint-last.pth"},
            {"step": 4, "loss": 0.3, "lr": 1e-3}]  # ... this one replaces it
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n" + '{"step": 5, "lo')  # cut line
    assert [(r["step"], r["loss"]) for r in log_records(log, "loss")] == [(1, 0.5), (3, 0.4), (4, 0.3)]
    plot_loss_curve(log, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_pretraining_with_skipped_steps_ends_with_its_pictures(tmp_path, monkeypatch):
    import mgmae.engine.pretrain as eng

    real = eng.build_model

    def poisoned(cfg):  # the second forward pass gives a NaN loss: one skipped update
        model, calls = real(cfg), {"n": 0}
        forward = model.forward

        def fwd(clip, mask, *a, **k):
            out = forward(clip, mask, *a, **k)
            calls["n"] += 1
            if calls["n"] == 2:
                out.loss = out.loss * float("nan")
            return out
        model.forward = fwd
        return model

    monkeypatch.setattr(eng, "build_model", poisoned)
    run = pretrain(cfg_for(tmp_path, "train.max_steps=4"))
    assert (run / "loss.png").is_file() and (run / "reconstruction.png").is_file()
    assert '"skipped_update": true' in (run / "log.jsonl").read_text()


# ----------------------------------------------------------------------------- resume
def test_resume_auto_with_only_unreadable_checkpoints_stops(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint-last.pth").write_bytes(b"garbage")
    (run / "checkpoint-0002.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 2 checkpoints .* can be read"):
        pretrain(cfg_for(tmp_path, "train.max_steps=2", "train.resume=auto"))
    assert not (run / "log.jsonl").exists()  # nothing trained


def test_resume_auto_on_a_first_launch_starts_and_says_so(tmp_path, capsys):
    pretrain(cfg_for(tmp_path, "train.max_steps=1", "train.resume=auto"))
    assert "no checkpoint in" in capsys.readouterr().out


def test_resume_auto_without_run_name_continues_the_newest_matching_run(tmp_path, capsys):
    with pytest.raises(Preempted):
        pretrain(cfg_for(tmp_path, "train.max_steps=4", name=None), stop_at_step=2)
    (first,) = tmp_path.iterdir()
    other = tmp_path / "mae_vit_nano_patch8-random-20990101-000000"  # another masker: not it
    other.mkdir()
    (other / "checkpoint-last.pth").write_bytes(b"x")
    capsys.readouterr()
    run = pretrain(cfg_for(tmp_path, "train.max_steps=4", "train.resume=auto", name=None))
    out = capsys.readouterr().out
    assert run == first and f"continuing the newest mae_vit_nano_patch8-tube run, {first}" in out
    assert "resumed from" in out and "at step 2" in out
    # the random-masker run is the newest of its kind: chosen, and its broken checkpoint is not
    # silently replaced by a fresh start
    with pytest.raises(ValueError, match=f"none of the 1 checkpoints in {other}"):
        pretrain(cfg_for(tmp_path, "train.max_steps=1", "train.resume=auto", "masking.name=random",
                         name=None))


def test_resumed_log_does_not_fold_back(tmp_path):
    with pytest.raises(Preempted):
        pretrain(cfg_for(tmp_path, "train.max_steps=6"), stop_at_step=2)
    log = tmp_path / "run" / "log.jsonl"
    with log.open("a") as f:  # steps logged after the checkpoint, then a kill: they are redone
        for s in (3, 4):
            f.write(json.dumps({"step": s, "epoch": 0, "loss": 9.0, "lr": 0.0}) + "\n")
    pretrain(cfg_for(tmp_path, "train.max_steps=6", "train.resume=auto"))
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    steps = [r["step"] for r in recs if "loss" in r and "step" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] != 9.0 for r in recs if "loss" in r)
    assert any(r.get("resumed_from") for r in recs)


@pytest.mark.parametrize("change", ["data.img_size=16", "model.name=mae_vit_tiny_patch16"])
def test_resume_with_another_architecture_is_refused_before_writing(tmp_path, change):
    with pytest.raises(Preempted):
        pretrain(cfg_for(tmp_path, "train.max_steps=4"), stop_at_step=1)
    config = (tmp_path / "run" / "config.yaml").read_text()
    key = change.split("=")[0]
    with pytest.raises(ValueError, match=f"another architecture: {key}="):
        pretrain(cfg_for(tmp_path, "train.max_steps=4", "train.resume=auto", change))
    assert (tmp_path / "run" / "config.yaml").read_text() == config


def test_leftover_tmp_files_are_removed_at_the_next_start(tmp_path):
    with pytest.raises(Preempted):
        pretrain(cfg_for(tmp_path, "train.max_steps=3"), stop_at_step=1)
    stale = tmp_path / "run" / ".checkpoint-last.pth.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    pretrain(cfg_for(tmp_path, "train.max_steps=3", "train.resume=auto"))
    assert not stale.exists()


def test_a_run_that_fails_at_start_leaves_no_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        pretrain(cfg_for(tmp_path, f"data.train_list={tmp_path / 'missing.txt'}"))
    assert list(tmp_path.iterdir()) == []


def test_max_steps_and_scales_are_validated():
    for bad, match in [("train.max_steps=-1", "train.max_steps' must be >= 1"),
                       ("train.max_steps=0", "train.max_steps' must be >= 1"),
                       ("data.scales=[]", "data.scales must be a non-empty list"),
                       ("data.scales=[1.5]", "data.scales must be a non-empty list")]:
        with pytest.raises(ValueError, match=match):
            load_config(None, [bad])


# ----------------------------------------------------------------------------- one-line errors
def _broken_list(tmp_path: Path) -> str:
    lst = tmp_path / "broken.txt"
    lst.write_text("".join(f"{tmp_path / f'v{i}.mp4'} 0\n" for i in range(4)))
    for i in range(4):
        (tmp_path / f"v{i}.mp4").write_bytes(b"not a video")
    return str(lst)


@pytest.mark.parametrize("row", ["yaml", "output_dir_is_file", "output_dir_under_file",
                                 "eval_output_is_file", "convert_dst_is_dir", "json_is_dir",
                                 "broken_videos_pretrain", "broken_videos_eval", "nan_stop"])
def test_user_errors_are_one_line(tmp_path, capsys, monkeypatch, row):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cfg = load_config(None, FT)
    clf = ckpt.save_checkpoint(tmp_path / "clf.pth", model=load_model_free(), config=cfg.to_dict(),
                               kind="classify", extra={"class_names": ["a", "b", "c"]})
    out = [f"train.output_dir={tmp_path}/runs", "train.run_name=r"]
    if row == "yaml":
        bad = tmp_path / "bad.yaml"
        bad.write_text("train:\n  lr: [1,\n")
        argv, cmd, want = ["pretrain", "-c", str(bad)], "pretrain", f'not valid YAML: .*"{bad}", line 3'
    elif row == "output_dir_is_file":
        argv, cmd, want = ["pretrain", *TINY, f"train.output_dir={afile}"], "pretrain", "is an existing file"
    elif row == "output_dir_under_file":
        argv, cmd, want = ["pretrain", *TINY, f"train.output_dir={afile}/x"], "pretrain", "is a file"
    elif row == "eval_output_is_file":
        argv, cmd, want = ["eval", str(clf), "-o", str(afile), "--quiet"], "eval", "is an existing file"
    elif row == "convert_dst_is_dir":
        argv, cmd, want = ["convert", str(clf), str(tmp_path)], "convert", "is a folder"
    elif row == "json_is_dir":
        argv, cmd, want = ["data", "check", _broken_list(tmp_path), "--json", str(tmp_path),
                           "--quiet"], "data check", "is a folder"
    elif row == "broken_videos_pretrain":
        argv, cmd, want = (["pretrain", *TINY, *out, f"data.train_list={_broken_list(tmp_path)}"],
                           "pretrain", "could not be read|no readable video")
    elif row == "broken_videos_eval":
        argv, cmd, want = (["eval", str(clf), f"data.test_list={_broken_list(tmp_path)}", "--quiet"],
                           "eval", "could not be read|no readable video|unreadable")
    else:
        import mgmae.engine.pretrain as eng

        real = eng.build_model

        def poisoned(c):
            model = real(c)
            forward = model.forward

            def fwd(*a, **k):
                res = forward(*a, **k)
                res.loss = res.loss * float("nan")
                return res
            model.forward = fwd
            return model

        monkeypatch.setattr(eng, "build_model", poisoned)
        argv, cmd, want = ["pretrain", *TINY, *out, "train.max_bad_steps=2"], "pretrain", "consecutive steps"
    rc = main(argv)
    assert rc == 2
    assert re.search(want, one_error_line(capsys, cmd))


def load_model_free():
    torch.manual_seed(0)
    return create_model("vit_nano_patch8", num_classes=3, num_frames=4, img_size=16)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        main(["pretrain", "-c", str(tmp_path / "missing.yaml"), "--debug"])
    monkeypatch.setenv("MGMAE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["eval", str(tmp_path / "missing.pth")])


# ----------------------------------------------------------------------------- smaller pieces
def test_extract_reads_the_clip_shape_from_the_checkpoint(tmp_path):
    run = pretrain(cfg_for(tmp_path, "train.max_steps=1"))  # 4 frames at 32 px
    assert main(["extract", str(run / "checkpoint-final.pth"), "synthetic", "-o",
                 str(tmp_path / "feats"), "data.synthetic_videos=4", "--quiet"]) == 0
    meta = json.loads((tmp_path / "feats" / "meta.json").read_text())
    assert meta["num_frames"] == 4 and meta["img_size"] == 32


def test_ctrl_c_saves_once_and_the_run_resumes(tmp_path):
    args = ["pretrain", *TINY, f"train.output_dir={tmp_path}", "train.run_name=int", "train.epochs=1000"]
    rc, out = signal_run(args, tmp_path / "int" / "log.jsonl", signal.SIGINT)
    assert rc == 130, out[-2000:]
    assert "Ctrl-C" in out and "resume point" in out
    step = ckpt.load_checkpoint(tmp_path / "int" / "checkpoint-last.pth")["step"]
    assert step >= 2
    assert find_resume(tmp_path / "int", "auto") == tmp_path / "int" / "checkpoint-last.pth"


def test_two_ctrl_c_abort_without_a_checkpoint(tmp_path):
    from mgmae.engine.loop import Signals

    before = signal.getsignal(signal.SIGINT)  # (SIG_IGN when pytest runs in the background)
    with Signals() as s:
        os.kill(os.getpid(), signal.SIGINT)
        assert s.caught == signal.SIGINT  # the first one only asks the loop to stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back


def test_finetune_resume_checks_the_number_of_classes(tmp_path):
    cfg = load_config(None, FT + [f"train.output_dir={tmp_path}", "train.run_name=ft",
                                  "finetune.epochs=2"])
    with pytest.raises(Preempted):
        finetune(cfg, "scratch", progress=False, stop_at_step=1)
    other = load_config(None, FT + [f"train.output_dir={tmp_path}", "train.run_name=ft",
                                    "finetune.epochs=2", "finetune.num_classes=9", "train.resume=auto"])
    with pytest.raises(ValueError, match="finetune.num_classes=8"):
        finetune(other, "scratch", progress=False)
    np.testing.assert_equal((tmp_path / "ft" / "checkpoint-last.pth").is_file(), True)


# ----------------------------------------------------------------- errors raised in loader workers
def _videos(tmp_path: Path, n: int = 4, frames: int = 24, labels: bool = False) -> list[str]:
    from mgmae.data.video import write_video

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):  # a blocky texture moving right by 1 px per frame: the codec sees motion
        tex = np.kron(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8))
        clip = np.stack([np.roll(tex, t, axis=1)[16:48, 16:48] for t in range(frames)])
        path = write_video(tmp_path / f"ok{i}.mp4", clip)
        out.append(f"{path} {i % 2}" if labels else path)
    return out


@pytest.mark.parametrize("row", ["pretrain_missing", "finetune_missing", "codec_without_vectors"])
def test_errors_raised_in_loader_workers_are_the_same_one_line(tmp_path, capsys, row):
    """With loader workers (train.num_workers=2) the user reads the line the main process would
    print with num_workers=0: the original message naming the file, not PyTorch's wrapper."""
    from mgmae.data.video import write_video

    missing = tmp_path / "gone.mp4"
    out = [f"train.output_dir={tmp_path}/runs", "train.run_name=r", "train.num_workers=2"]
    lst = tmp_path / "list.txt"
    if row == "pretrain_missing":
        lst.write_text("\n".join([*_videos(tmp_path), str(missing)]) + "\n")
        argv = ["pretrain", *TINY, *out, f"data.train_list={lst}", "data.max_fail_frac=0.1"]
        want = [str(missing), "could not be read"]
    elif row == "finetune_missing":
        lst.write_text("\n".join([*_videos(tmp_path, labels=True), f"{missing} 1"]) + "\n")
        argv = ["finetune", "scratch", *FT[:1], "data.img_size=16", "finetune.batch_size=4",
                "finetune.warmup_epochs=0", "train.tensorboard=false", *out, f"data.train_list={lst}",
                f"data.val_list={lst}", "data.max_fail_frac=0.1", "finetune.epochs=1", "--quiet"]
        want = [str(missing), "could not be read"]
    else:
        intra = write_video(tmp_path / "intra.avi", np.zeros((24, 32, 32, 3), np.uint8), codec="mjpeg",
                            pix_fmt="yuvj420p")
        lst.write_text("\n".join([*_videos(tmp_path)] + [intra] * 4) + "\n")
        argv = ["pretrain", *TINY, *out, f"data.train_list={lst}", "masking.name=motion_guided",
                "flow.name=codec"]
        want = [intra, "flow.fallback=dis"]
    cmd = argv[0]
    assert main(argv) == 2
    line = one_error_line(capsys, cmd)
    assert "DataLoader worker" not in line and "Caught" not in line and "Traceback" not in line, line
    for w in want:
        assert w in line, line


def test_worker_message_unwraps_pytorchs_text():
    from mgmae.commands import worker_message

    text = ("Caught DatasetFailureError in DataLoader worker process 1.\nOriginal Traceback (most recent "
            "call last):\n  File \"x.py\", line 1, in f\n    raise E('inner')\nKeyError: 'k'\n\nDuring "
            "handling of the above exception, another exception occurred:\n\nTraceback (most recent call "
            "last):\n  File \"y.py\", line 2, in g\nmgmae.data.datasets.DatasetFailureError: 2 of 3 videos "
            "could not be read\n  /a.mp4: file not found\n")
    assert worker_message(text) == "2 of 3 videos could not be read\n  /a.mp4: file not found"
    assert worker_message("an ordinary message") is None


@pytest.mark.parametrize("command", ["eval", "linprobe", "extract"])
def test_unreadable_test_videos_over_the_limit_stop_under_it_are_counted(tmp_path, capsys, command):
    """1 of 3 videos missing: over data.max_fail_frac (default 0.05) one line and exit 2, never a
    score on the rest; under it (0.5) the result says how many were left out, in print and JSON."""
    cfg = load_config(None, FT)
    clf = ckpt.save_checkpoint(tmp_path / "clf.pth", model=load_model_free(), config=cfg.to_dict(),
                               kind="classify", extra={"class_names": ["a", "b", "c"]})
    missing = tmp_path / "gone.mp4"
    lst = tmp_path / "test.txt"
    lst.write_text("\n".join([*_videos(tmp_path, n=2, labels=True), f"{missing} 1"]) + "\n")
    common = ["train.num_workers=2", "--quiet"]
    if command == "eval":
        argv = ["eval", str(clf), f"data.test_list={lst}", "-o", str(tmp_path / "ev"), *common]
    elif command == "linprobe":
        argv = ["linprobe", str(clf), *FT[:2], f"data.train_list={lst}", f"data.val_list={lst}",
                f"train.output_dir={tmp_path}/lp", "train.run_name=lp", "finetune.linprobe_epochs=2",
                *common]
    else:
        argv = ["extract", str(clf), str(lst), "-o", str(tmp_path / "feats"), *common]
    assert main(argv) == 2
    line = one_error_line(capsys, command)
    assert "1 of 3 videos could not be read" in line and str(missing) in line, line
    assert "max_fail_frac" in line
    if command == "eval":
        assert not (tmp_path / "ev" / "metrics.json").exists()
    if command == "extract":  # (a second run into the same folder would resume the first)
        argv[argv.index("-o") + 1] = str(tmp_path / "feats2")
    assert main([*argv, "data.max_fail_frac=0.5"]) == 0
    out = capsys.readouterr().out
    if command == "eval":
        assert "1 of 3 videos unreadable, not scored" in out, out
        metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert metrics["num_unreadable"] == 1 and metrics["unreadable"] == [str(missing)]
        assert metrics["num_videos"] == 2
    elif command == "linprobe":
        assert "1 train videos unreadable, left out" in out and "1 val videos unreadable" in out, out
        res = json.loads((tmp_path / "lp" / "lp" / "result.json").read_text())
        assert res["unreadable_val"] == [str(missing)] and res["num_val"] == 2 and res["num_train"] == 2
    else:
        assert "1 unreadable" in out, out
        assert str(missing) in (tmp_path / "feats2" / "failed.csv").read_text()


# ----------------------------------------------------------------------- unusable videos are said
def test_an_image_named_like_a_video_is_not_a_one_frame_video(tmp_path):
    import cv2

    from mgmae.data.video import VideoError, open_video

    png = tmp_path / "picture.mp4"
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "p.png").rename(png)
    with pytest.raises(VideoError, match=r"picture\.mp4: a single PNG image, not a video"):
        open_video(png)


@pytest.mark.parametrize("workers", [0, 2])
def test_short_videos_are_counted_and_said_and_pad_error_refuses_them(tmp_path, capsys, caplog, workers):
    """data.num_frames=4 at stride 2 spans 7 frames: a 2-frame video is padded, said once (naming
    the file), counted in the summary; data.pad=error makes it an error naming the file. Unreadable
    videos' replacements are counted across loader workers."""
    from mgmae.data.video import write_video

    short = write_video(tmp_path / "two.mp4", np.zeros((2, 32, 32, 3), np.uint8))
    missing = tmp_path / "gone.mp4"
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join([*_videos(tmp_path, n=6), short, str(missing)]) + "\n")
    args = ["pretrain", *TINY, f"train.output_dir={tmp_path}/runs", "train.run_name=r",
            f"data.train_list={lst}", f"train.num_workers={workers}", "data.max_fail_frac=0.2",
            "train.epochs=2"]
    assert main(args) == 0
    said = [r.getMessage() for r in caplog.records if "fewer than one clip needs" in r.getMessage()]
    assert len(said) == 1 and short in said[0] and "2 frames" in said[0] and "7" in said[0], said
    lines = (tmp_path / "runs" / "r" / "log.jsonl").read_text().splitlines()
    summary = json.loads(lines[-1])["summary"]
    assert summary["data_short"] == 1 and summary["data_unreadable"] == 1
    assert summary["data_replaced"] == 2  # gone.mp4 is drawn once per epoch: 2 epochs
    assert "1 videos shorter than one clip" in capsys.readouterr().out
    assert main([*args, "train.run_name=strict", "data.pad=error"]) == 2
    line = one_error_line(capsys, "pretrain")
    assert short in line and "data.pad=error" in line and "2 frames" in line, line


def test_data_check_counts_the_frame_stride(tmp_path, capsys):
    from mgmae.data.video import write_video

    five = write_video(tmp_path / "five.mp4", np.zeros((5, 32, 32, 3), np.uint8))
    lst = tmp_path / "list.txt"
    lst.write_text(f"{five}\n")
    # 4 frames at stride 2 span 7 frames: a 5-frame video is too short (it passed as >= 4 before)
    assert main(["data", "check", str(lst), "data.num_frames=4", "data.sampling_rate=2", "--quiet"]) == 1
    assert "too short: 5 frames" in capsys.readouterr().out
    assert main(["data", "check", str(lst), "data.num_frames=4", "data.sampling_rate=1", "--quiet"]) == 0


@pytest.mark.parametrize("row", ["masks_of_a_picture", "binary_list", "every_video_missing",
                                 "short_codec_clip"])
def test_errors_name_the_real_cause(tmp_path, capsys, row):
    import cv2

    from mgmae.data.video import write_video

    out = [f"train.output_dir={tmp_path}/runs", "train.run_name=r"]
    lst = tmp_path / "list.txt"
    if row in ("masks_of_a_picture", "binary_list"):
        pic = tmp_path / ("picture.png" if row == "masks_of_a_picture" else "picture.dat")
        cv2.imwrite(str(tmp_path / "p.png"), np.zeros((16, 16, 3), np.uint8))
        (tmp_path / "p.png").rename(pic)
        argv = ["masks", str(pic), "-o", str(tmp_path / "m")]
        want = "is a single image" if row == "masks_of_a_picture" else "not a text file, so not a list file"
    elif row == "every_video_missing":  # (it said: lower the batch size)
        lst.write_text(f"{tmp_path / 'a.mp4'}\n{tmp_path / 'b.mp4'}\n")
        argv = ["pretrain", *TINY, *out, f"data.train_list={lst}"]
        want = "none of the 2 videos of the list exists"
    else:  # (it said: gives no motion vectors)
        tex = np.kron(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8),
                      np.ones((4, 4, 1), np.uint8))
        two = write_video(tmp_path / "two.mp4", np.stack([tex, np.roll(tex, 1, axis=1)]))
        lst.write_text(f"{two}\n" * 4)
        argv = ["pretrain", *TINY, *out, f"data.train_list={lst}", "masking.name=motion_guided",
                "flow.name=codec"]
        want = "has only 2 frames (one clip needs 7"
    assert main(argv) == 2
    line = one_error_line(capsys, argv[0])
    assert want in line, line


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_a_finished_run_resumed_with_another_config_is_refused_and_left_as_it_was(tmp_path, capsys, command):
    """It printed 'no steps were run' and rewrote config.yaml, the config inside the final
    checkpoint and the log's summary."""
    if command == "pretrain":
        argv = ["pretrain", *TINY, f"train.output_dir={tmp_path}", "train.run_name=r", "train.max_steps=2"]
    else:
        argv = ["finetune", "scratch", *FT, f"train.output_dir={tmp_path}", "train.run_name=r",
                "train.max_steps=2", "--quiet"]
    assert main(argv) == 0
    run = tmp_path / "r"
    files = sorted(p for p in run.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    capsys.readouterr()
    other = "train.batch_size=2" if command == "pretrain" else "finetune.batch_size=2"
    assert main([*argv, other, "--resume", "auto"]) == 2
    line = one_error_line(capsys, command)
    assert "finished run" in line and "batch_size=4 (now 2)" in line, line
    assert sorted(p for p in run.rglob("*") if p.is_file()) == files
    assert all(p.read_bytes() == before[p] for p in files)
    # the run's own config: nothing to run, nothing rewritten, exit 0
    assert main([*argv, "--resume", "auto"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert all(p.read_bytes() == before[p] for p in files)
