"""Fine-tuning: layer-wise lr decay groups, video Mixup/CutMix targets, a tiny end-to-end run,
bad inputs (no encoder, other head size, labels out of range), linear probe, resumable extraction."""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest
import torch
from timm.data.mixup import mixup_target

from mgmae.config import Config, load_config
from mgmae.convert import load_model
from mgmae.data.datasets import ListFileError
from mgmae.engine.checkpoint import load_checkpoint, save_checkpoint
from mgmae.engine.extract import extract, read_features
from mgmae.engine.finetune import VideoMixup, build_criterion, cli_main, finetune
from mgmae.engine.linprobe import linprobe, train_probe
from mgmae.engine.optim import build_optimizer, param_groups, set_lr
from mgmae.models import create_model
from mgmae.models.build import build_classifier

TINY = ["data.num_frames=4", "data.img_size=16", "data.synthetic_videos=8",
        "finetune.synthetic_val_videos=4", "finetune.batch_size=4", "train.num_workers=0",
        "finetune.epochs=1", "finetune.warmup_epochs=0"]


def tiny_cfg(tmp_path, *more) -> Config:
    return load_config(None, TINY + [f"train.output_dir={tmp_path}"] + list(more))


def tiny_classifier(num_classes=5):
    return create_model("vit_nano_patch8", num_classes=num_classes, num_frames=4, img_size=16)


# ----------------------------------------------------------------------------- layer decay
def test_layer_decay_groups_exact_scales_and_no_weight_decay():
    model = tiny_classifier()
    depth = len(model.blocks)  # 4
    decay = 0.65
    groups = param_groups(model, 0.05, layer_decay=decay, num_layers=depth)
    scale, wd = {}, {}
    for g in groups:
        for n in g["names"]:
            scale[n], wd[n] = g["lr_scale"], g["weight_decay"]
    assert set(scale) == {n for n, _ in model.named_parameters()}
    # patch embedding = layer 0, block i (0-based) = layer i + 1, fc_norm/head = layer depth + 1
    assert scale["patch_embed.proj.weight"] == pytest.approx(decay ** (depth + 1))
    for i in range(depth):
        for n in (f"blocks.{i}.attn.qkv.weight", f"blocks.{i}.mlp.fc2.bias", f"blocks.{i}.norm1.weight"):
            assert scale[n] == pytest.approx(decay ** (depth - i)), n
    for n in ("fc_norm.weight", "head.weight", "head.bias"):
        assert scale[n] == 1.0
    no_wd = {n for n, v in wd.items() if v == 0.0}
    expected = {n for n, p in model.named_parameters() if p.ndim <= 1}  # norms, biases, q/v bias
    assert no_wd == expected
    assert {"blocks.0.attn.q_bias", "blocks.0.attn.v_bias", "fc_norm.bias", "head.bias",
            "patch_embed.proj.bias"} <= no_wd
    assert {"head.weight", "blocks.3.mlp.fc1.weight", "patch_embed.proj.weight"}.isdisjoint(no_wd)
    # the optimizer applies the scales, and keeps them when the schedule sets a new lr
    opt = build_optimizer(model, 1e-3, 0.05, (0.9, 0.999), layer_decay=decay, num_layers=depth)
    assert opt.defaults["betas"] == (0.9, 0.999)
    set_lr(opt, 2e-3)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(2e-3 * g["lr_scale"])
        assert any(g["lr_scale"] == pytest.approx(decay ** k) for k in range(depth + 2))


# ----------------------------------------------------------------------------- mixup
def _smooth_onehot(y, k, s):
    return torch.nn.functional.one_hot(y, k).float() * (1 - s) + s / k


def test_video_mixup_targets_are_mixed_smoothed_onehots():
    torch.manual_seed(0)
    np.random.seed(0)
    K, s = 4, 0.1
    x = torch.randn(4, 3, 2, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    mix = VideoMixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=s, num_classes=K)
    xm, t = mix(x.clone(), y)
    assert xm.shape == x.shape
    # recover lam from the pixels: xm = lam * x + (1 - lam) * x.flip(0)
    lam = ((xm - x.flip(0)) / (x - x.flip(0)))[0, 0, 0, 0, 0].item()
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0), rtol=1e-5, atol=1e-5)
    expected = lam * _smooth_onehot(y, K, s) + (1 - lam) * _smooth_onehot(y.flip(0), K, s)
    torch.testing.assert_close(t, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t, mixup_target(y, K, lam, s))
    assert torch.allclose(t.sum(1), torch.ones(4))


def test_video_cutmix_cuts_the_same_box_in_every_frame():
    np.random.seed(3)
    K, s = 3, 0.0
    B, C, T, H, W = 2, 3, 4, 16, 16
    x = torch.zeros(B, C, T, H, W)
    x[1] = 1.0
    mix = VideoMixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=s, num_classes=K)
    for _ in range(20):  # until a box that is neither empty nor the whole frame
        xm, t = mix(x.clone(), torch.tensor([0, 2]))
        pasted = xm[0] == 1.0  # [C, T, H, W]
        if 0 < pasted.sum() < pasted.numel():
            break
    box = pasted[0, 0]  # [H, W]
    assert all(torch.equal(pasted[c, f], box) for c in range(C) for f in range(T))  # every frame
    lam = 1 - box.float().mean().item()  # timm corrects lam to the box area
    torch.testing.assert_close(t[0], lam * _smooth_onehot(torch.tensor(0), K, s)
                               + (1 - lam) * _smooth_onehot(torch.tensor(2), K, s))


def test_criterion_choice():
    cfg = Config()
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    assert isinstance(build_criterion(cfg.finetune, True), SoftTargetCrossEntropy)
    assert isinstance(build_criterion(cfg.finetune, False), LabelSmoothingCrossEntropy)
    cfg.finetune.label_smoothing = 0.0
    assert isinstance(build_criterion(cfg.finetune, False), torch.nn.CrossEntropyLoss)


# ----------------------------------------------------------------------------- end to end
def _pretrain_checkpoint(path, cfg: Config, pos_embed: str = "sincos_1d"):
    mae = create_model("mae_vit_nano_patch8", num_frames=cfg.data.num_frames,
                       img_size=cfg.data.img_size, pos_embed=pos_embed)
    cfg = Config.from_dict(cfg.to_dict())
    cfg.model.pos_embed = pos_embed
    return save_checkpoint(path, model=mae, config=cfg.to_dict(), kind="pretrain"), mae


def test_tiny_finetune_end_to_end_writes_expected_files(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "train.run_name=ft", "train.max_steps=3", "finetune.mixup=0.8",
                   "finetune.cutmix=1.0", "finetune.ema=true", "finetune.ema_decay=0.9")
    pre, mae = _pretrain_checkpoint(tmp_path / "pre.pth", cfg)
    res = finetune(cfg, pre, progress=False)
    run = tmp_path / "ft"
    assert res.run_dir == str(run) and res.steps == 3
    for name in ("config.yaml", "classes.json", "log.jsonl", "checkpoint-best.pth",
                 "checkpoint-final.pth", "curves.png", "result.json", "test/metrics.json",
                 "test/predictions.csv", "test/confusion.png", "test/scores.npy"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint-last.pth").exists()
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r and "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert set(steps[0]) == {"step", "epoch", "loss", "lr", "grad_norm", "clips_per_s", "data_s",
                             "step_s"}  # the pre-training log format
    vals = [r for r in recs if "val_acc1" in r]
    assert vals and {"val_ema_acc1", "best_acc1"} <= set(vals[-1])
    assert "summary" in recs[-1]
    assert json.loads((run / "classes.json").read_text())[0] == "right-slow"
    # encoder weights came from the pre-trained model, whose output is checked before training
    out = capsys.readouterr().out
    assert "loaded" in out and "encoder output on 4 clips" in out and "random weights" in out
    best = load_model(run / "checkpoint-best.pth")
    assert best.head.out_features == 8
    state = load_checkpoint(run / "checkpoint-final.pth")
    assert state["kind"] == "classify" and state["extra"]["class_names"][1] == "right-fast"
    with open(run / "test" / "predictions.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert res.test["num_videos"] == 4 and 0 <= res.test["top1"] <= 100


def test_finetune_from_scratch_via_cli(tmp_path, capsys):
    args = ["scratch", *TINY, f"train.output_dir={tmp_path}", "train.run_name=s",
            "train.max_steps=2", "--quiet"]
    assert cli_main(args) == 0
    assert (tmp_path / "s" / "checkpoint-final.pth").is_file()
    with pytest.raises(SystemExit):
        cli_main(["train.max_steps=1"])
    assert "scratch" in capsys.readouterr().err


def test_no_synthetic_validation_keeps_the_final_model_only(tmp_path):
    res = finetune(tiny_cfg(tmp_path, "finetune.synthetic_val_videos=0", "train.run_name=noval"),
                   "scratch", progress=False)
    assert res.best_acc1 is None and res.test is None and not res.history
    assert set(res.checkpoints) == {"final"}
    assert not (tmp_path / "noval" / "checkpoint-best.pth").exists()
    assert not (tmp_path / "noval" / "test").exists()


def test_compare_scratch_prints_both_accuracies(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path)  # the fine-tuning config says nothing of positions (sincos_1d) ...
    pre, _ = _pretrain_checkpoint(tmp_path / "pre.pth", cfg, pos_embed="sincos_3d")
    args = [str(pre), "--compare-scratch", *TINY, f"train.output_dir={tmp_path}",
            "train.run_name=cmp", "train.max_steps=2", "--quiet"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "scratch" in out and "best val top-1" in out
    assert "one seed: no significance test" in out
    summary = json.loads((tmp_path / "cmp-compare.json").read_text())
    assert summary["paired_ttest"] is None and summary["significant"] is None
    assert summary["seeds"] == [0]
    (pre_run,), (scratch_run,) = summary["pretrained"], summary["scratch"]
    assert pre_run["run_dir"].endswith("cmp-pretrained")
    assert scratch_run["pretrained"] == "scratch"
    assert summary["difference_best_val_acc1"] == pytest.approx(
        pre_run["best_acc1"] - scratch_run["best_acc1"])
    # ... both models are built like the checkpoint's (separable positions), the scratch one too
    for kind in ("pretrained", "scratch"):
        model = load_model(tmp_path / f"cmp-{kind}" / "checkpoint-final.pth")
        assert model.pos_embed_type == "sincos_3d", kind


def test_compare_scratch_over_seeds_judges_by_paired_differences(tmp_path, monkeypatch, capsys):
    """``--seeds 3``: pairs for seeds 5, 6, 7 (train.seed=5), each pair with its own seed and run
    name; the verdict is the paired t-test of the per-seed differences (two-sided, 5%, df = n - 1)."""
    import mgmae.engine.finetune as ft
    import mgmae.experiments.compare as compare

    cfg = tiny_cfg(tmp_path)
    pre, _ = _pretrain_checkpoint(tmp_path / "pre.pth", cfg)
    acc = {("pretrained", 5): 60.0, ("scratch", 5): 50.0, ("pretrained", 6): 40.0,
           ("scratch", 6): 42.0, ("pretrained", 7): 70.0, ("scratch", 7): 52.0}
    early = {("pretrained", 5): 30.0, ("scratch", 5): 10.0, ("pretrained", 6): 31.0,
             ("scratch", 6): 10.0, ("pretrained", 7): 29.0, ("scratch", 7): 10.0}
    calls = []

    def fake_finetune(c, src, progress=True):
        kind = "scratch" if src == "scratch" else "pretrained"
        calls.append((kind, c.train.seed, c.train.run_name))
        return ft.FinetuneResult(run_dir=str(tmp_path / c.train.run_name), pretrained=str(src),
                                 best_acc1=acc[kind, c.train.seed], best_epoch=1, final_val_acc1=None,
                                 test={"top1": 1.0, "top5": 2.0, "num_videos": 100, "num_classes": 8},
                                 epochs=2, steps=2, seconds=1.0,
                                 history=[{"epoch": 1, "val_acc1": early[kind, c.train.seed]},
                                          {"epoch": 2, "val_acc1": acc[kind, c.train.seed]},
                                          {"epoch": 3, "val_acc1": None}])

    monkeypatch.setattr(compare, "finetune", fake_finetune)
    args = [str(pre), "--compare-scratch", "--seeds", "3", *TINY, f"train.output_dir={tmp_path}",
            "train.run_name=cs", "train.seed=5", "--quiet"]
    assert cli_main(args) == 0
    assert calls == [(k, s, f"cs-{k}-s{s}") for s in (5, 6, 7) for k in ("pretrained", "scratch")]
    summary = json.loads((tmp_path / "cs-compare.json").read_text())
    assert summary["seeds"] == [5, 6, 7]
    assert [r["best_acc1"] for r in summary["scratch"]] == [50.0, 42.0, 52.0]
    # differences 10, -2, 18: mean 26/3, sd = sqrt(((10-m)^2 + (-2-m)^2 + (18-m)^2) / 2) = 10.07,
    # t = m / (sd / sqrt(3)) = 1.49 < 4.303 (two-sided 5% at df 2): not significant
    m = 26 / 3
    sd = (((10 - m) ** 2 + (-2 - m) ** 2 + (18 - m) ** 2) / 2) ** 0.5
    t = m / (sd / 3 ** 0.5)
    assert summary["difference_best_val_acc1"] == pytest.approx(m)
    tt = summary["paired_ttest"]
    assert tt["t"] == pytest.approx(t) and t == pytest.approx(1.49, abs=0.01) and tt["df"] == 2
    assert tt["p"] > 0.05 and tt["significant"] is False
    assert summary["significant"] is False
    out = capsys.readouterr().out
    assert "pre-trained ahead with 2 of 3 seeds" in out
    assert "pre-trained beats scratch: +8.67 points of val top-1 (mean over seeds)" in out
    assert "paired t-test: t=1.49, df=2" in out and "not significant" in out
    # at equal epochs: epoch 1 differences 20, 21, 19 (mean 20, sd 1, t = 20 / (1 / sqrt 3) = 34.6
    # > 4.303: significant), epoch 2 the best-accuracy ones above; epoch 3 has no validation and
    # is left out
    e1, e2 = summary["by_epoch"]
    assert e1["epoch"] == 1 and e2["epoch"] == 2
    assert e1["pretrained"] == pytest.approx(30.0) and e1["scratch"] == pytest.approx(10.0)
    assert e1["difference"] == pytest.approx(20.0)
    assert e1["t"] == pytest.approx(20 * 3 ** 0.5) and e1["df"] == 2 and e1["significant"] is True
    assert e1["p"] < 0.05
    assert e2["difference"] == pytest.approx(m) and e2["t"] == pytest.approx(t)
    assert e2["significant"] is False
    (diff_row,) = [line for line in out.splitlines() if line.startswith("    difference ")]
    assert diff_row.split()[1:] == ["+20.0*", "+8.7"]
    assert "ahead (paired t-test, 5%) at epochs 1; behind at epochs none (of 2 evaluated)" in out
    # --seeds only makes sense with --compare-scratch; 0 seeds is an error
    with pytest.raises(SystemExit):
        cli_main([str(pre), "--seeds", "2", *TINY])
    assert cli_main([str(pre), "--compare-scratch", "--seeds", "0", *TINY]) == 2
    assert "seeds must be >= 1" in capsys.readouterr().err


def test_finetune_resume_auto(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.run_name=r", "finetune.epochs=2")
    # a first run stopped after epoch 1: keep its resume point
    first = tiny_cfg(tmp_path, "train.run_name=r", "finetune.epochs=2", "train.max_steps=2")
    finetune(first, "scratch", progress=False)
    run = tmp_path / "r"
    assert not (run / "checkpoint-last.pth").exists()  # a finished run leaves no resume point
    # simulate an interrupted run: a resume point at the end of epoch 1 (2 steps per epoch)
    state = load_checkpoint(run / "checkpoint-final.pth")
    state["epoch"], state["step"] = 1, 2
    torch.save(state, run / "checkpoint-last.pth")
    cfg.train.resume = "auto"
    res = finetune(cfg, "scratch", progress=False)
    assert res.steps == 4 and res.epochs == 2


def test_finetune_keeps_epochs_like_pretraining(tmp_path):
    """The one checkpoint saver (engine.checkpoint.CheckpointSaver): train.save_every_epochs keeps
    epoch checkpoints, pruned to the last train.keep_last, as in pre-training."""
    cfg = tiny_cfg(tmp_path, "train.run_name=kept", "finetune.epochs=3", "train.save_every_epochs=1",
                   "train.keep_last=1")
    finetune(cfg, "scratch", progress=False)
    names = sorted(p.name for p in (tmp_path / "kept").glob("checkpoint-*.pth"))
    assert names == ["checkpoint-0002.pth", "checkpoint-best.pth", "checkpoint-final.pth"]


def test_preempted_finetune_resumes_exactly(tmp_path):
    from mgmae.engine.loop import Preempted

    over = ["finetune.epochs=2", "finetune.mixup=0.8", "finetune.cutmix=1.0", "finetune.ema=true",
            "finetune.ema_decay=0.5"]
    whole = tiny_cfg(tmp_path, "train.run_name=whole", *over)
    finetune(whole, "scratch", progress=False)
    cut = tiny_cfg(tmp_path, "train.run_name=cut", *over)
    with pytest.raises(Preempted):  # a signal in the middle of epoch 2 (2 steps per epoch)
        finetune(cut, "scratch", progress=False, stop_at_step=3)
    state = load_checkpoint(tmp_path / "cut" / "checkpoint-last.pth")
    assert (state["step"], state["epoch"], state["extra"]["steps_in_epoch"]) == (3, 1, 1)
    cut.train.resume = "auto"
    res = finetune(cut, "scratch", progress=False)
    assert res.steps == 4
    a = load_checkpoint(tmp_path / "whole" / "checkpoint-final.pth")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint-final.pth")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    for k in a["extra"]["model_ema"]:
        torch.testing.assert_close(a["extra"]["model_ema"][k], b["extra"]["model_ema"][k])
    assert a["extra"]["best_acc1"] == b["extra"]["best_acc1"]


def test_two_process_ddp_equals_one_process_with_double_batch(tmp_path, torchrun):
    """torchrun --nproc_per_node 2 (gloo, CPU) x batch 2 == 1 process x batch 4: same weights,
    and the sharded validation / test gather the same predictions."""
    common = [*TINY, f"train.output_dir={tmp_path}", "finetune.epochs=2", "finetune.drop_path=0"]
    torchrun(2, "finetune", "scratch", *common, "train.run_name=ddp", "finetune.batch_size=2", "--quiet")
    one = finetune(load_config(None, common + ["train.run_name=one"]), "scratch", progress=False)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint-final.pth")["model"]
    b = load_checkpoint(tmp_path / "one" / "checkpoint-final.pth")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    ddp = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert [h["val_acc1"] for h in ddp["history"]] == [h["val_acc1"] for h in one.history]
    assert ddp["test"]["num_videos"] == 4 and ddp["test"]["top1"] == one.test["top1"]
    with open(tmp_path / "ddp" / "test" / "predictions.csv") as fh:
        assert [r["index"] for r in csv.DictReader(fh)] == ["0", "1", "2", "3"]


# ----------------------------------------------------------------------------- bad inputs
def test_checkpoint_without_encoder_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(tmp_path)
    ours = save_checkpoint(tmp_path / "head_only.pth", model=torch.nn.Linear(4, 2),
                           config=cfg.to_dict(), kind="classify")
    with pytest.raises(ValueError, match="no usable video encoder.*patch_embed"):
        build_classifier(ours, cfg, 8)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"head.weight": torch.zeros(2, 4), "head.bias": torch.zeros(2)}}, foreign)
    with pytest.raises(ValueError, match="no usable video encoder.*patch_embed"):
        build_classifier(foreign, cfg, 8)
    with pytest.raises(FileNotFoundError, match="scratch"):
        build_classifier(tmp_path / "missing.pth", cfg, 8)


def test_head_with_other_class_count_is_reinitialised(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path)
    clf = tiny_classifier(num_classes=5)
    path = save_checkpoint(tmp_path / "clf5.pth", model=clf, config=cfg.to_dict(), kind="classify")
    model = build_classifier(path, cfg, 8)
    assert model.head.out_features == 8
    assert "re-initialised" in capsys.readouterr().out
    assert any(k.startswith("head.") for k in model.load_report.initialised)
    torch.testing.assert_close(model.blocks[2].mlp.fc1.weight, clf.blocks[2].mlp.fc1.weight)
    torch.testing.assert_close(model.fc_norm.weight, clf.fc_norm.weight)
    same = build_classifier(path, cfg, 5)  # same size: the head is kept
    torch.testing.assert_close(same.head.weight, clf.head.weight)


def test_labels_outside_range_name_the_line(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("a.mp4 0\nb.mp4 1\n# comment\n\nc.mp4 2\n")
    val = tmp_path / "val.txt"
    val.write_text("d.mp4 1\ne.mp4 7\n")
    cfg = tiny_cfg(tmp_path, f"data.train_list={train}", f"data.val_list={val}")
    with pytest.raises(ListFileError, match=r"val\.txt:2: label 7 is outside \[0, 3\)"):
        finetune(cfg, "scratch", progress=False)
    cfg.finetune.num_classes = 2
    with pytest.raises(ListFileError, match=r"train\.txt:5: label 2 is outside \[0, 2\)"):
        finetune(cfg, "scratch", progress=False)
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("a.mp4\n")
    (tmp_path / "a.mp4").write_bytes(b"")
    cfg = tiny_cfg(tmp_path, f"data.train_list={unlabelled}", "data.root=" + str(tmp_path))
    with pytest.raises(ValueError, match="labels are all -1"):
        finetune(cfg, "scratch", progress=False)


# ----------------------------------------------------------------------------- linear probe
def test_train_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=g) * 4
    y = torch.arange(90) % 3
    x = centers[y] + torch.randn(90, 16, generator=g)
    probe, hist = train_probe(x.numpy(), y.numpy(), 3, epochs=60, lr=1e-2)
    assert (probe(x).argmax(1) == y).float().mean() == 1.0
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert isinstance(probe.bn, torch.nn.BatchNorm1d) and probe.bn.affine is False


def test_linprobe_runs_on_synthetic(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.run_name=lp", "finetune.linprobe_epochs=5")
    pre, _ = _pretrain_checkpoint(tmp_path / "pre.pth", cfg)
    res = linprobe(cfg, pre, progress=False)
    assert res.num_train == 8 and res.num_val == 4 and res.dim == 128
    assert 0 <= res.val_acc1 <= 100
    for name in ("probe.pth", "result.json", "log.jsonl", "val/predictions.csv", "val/confusion.png"):
        assert (tmp_path / "lp" / name).is_file(), name


def test_linprobe_compare_scratch_uses_the_checkpoint_architecture(tmp_path, monkeypatch, capsys):
    """The random-encoder baseline of ``mgmae linprobe CK --compare-scratch`` is built like CK's
    encoder (here: separable positions), whatever the probing config says."""
    import mgmae.engine.linprobe as lp

    cfg = tiny_cfg(tmp_path)
    pre, _ = _pretrain_checkpoint(tmp_path / "pre.pth", cfg, pos_embed="sincos_3d")
    seen, real = [], lp.linprobe

    def spy(c, pretrained, progress=True):
        seen.append((str(pretrained), c.model.pos_embed))
        from mgmae.models.build import build_encoder

        seen.append(("encoder", build_encoder(pretrained, c).pos_embed_type))
        return real(c, pretrained, progress=progress)

    monkeypatch.setattr(lp, "linprobe", spy)
    args = [str(pre), "--compare-scratch", *TINY, f"train.output_dir={tmp_path}",
            "train.run_name=lp", "finetune.linprobe_epochs=2", "--quiet"]
    assert lp.cli_main(args) == 0
    assert seen[1] == ("encoder", "sincos_3d") and seen[2][0] == "scratch"
    assert seen[3] == ("encoder", "sincos_3d")  # the random encoder has the checkpoint's positions
    assert "vs random encoder" in capsys.readouterr().out


# ----------------------------------------------------------------------------- extraction
def test_extract_is_resumable(tmp_path):
    cfg = tiny_cfg(tmp_path, "data.synthetic_videos=6")
    pre, _ = _pretrain_checkpoint(tmp_path / "pre.pth", cfg)
    out = tmp_path / "feats"
    r1 = extract(pre, "synthetic", out, cfg, progress=False)
    assert (r1.new, r1.skipped, r1.num_rows, r1.dim) == (6, 0, 6, 128)
    f1, rows1 = read_features(out)
    cfg.data.synthetic_videos = 9
    r2 = extract(pre, "synthetic", out, cfg, progress=False)
    assert (r2.new, r2.skipped, r2.num_rows) == (3, 6, 9)
    f2, rows2 = read_features(out)
    np.testing.assert_allclose(f2[:6], f1, rtol=1e-5, atol=1e-6)  # old rows untouched
    assert [r["path"] for r in rows2] == [f"synthetic:0:{i}" for i in range(9)]
    assert [int(r["row"]) for r in rows2] == list(range(9))
    # a crash after writing a shard but before indexing it leaves an orphan: it is dropped
    (out / "shards").mkdir(exist_ok=True)
    np.save(out / "shards" / "shard-0000000009.npy", np.zeros((2, 128), np.float32))
    r3 = extract(pre, "synthetic", out, cfg, progress=False)
    assert (r3.new, r3.skipped, r3.num_rows) == (0, 9, 9)
    assert not (out / "shards").exists()
    # other settings in the same folder are refused
    cfg.data.img_size = 32
    with pytest.raises(ValueError, match="other settings"):
        extract(pre, "synthetic", out, cfg, progress=False)


def _write_frames(folder, n=10, h=20, w=24):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        img = np.full((h, w, 3), (i * 20) % 256, np.uint8)
        cv2.imwrite(os.path.join(folder, f"img_{i + 1:05d}.jpg"), img)


def test_extract_list_with_unreadable_video_and_safetensors(tmp_path):
    from safetensors.numpy import load_file

    cfg = tiny_cfg(tmp_path, "data.max_fail_frac=0.5")  # 1 of 3 unreadable: accepted, counted
    _write_frames(tmp_path / "v0")
    _write_frames(tmp_path / "v1")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path / 'v0'} 10 1\n{tmp_path / 'missing'} 10 0\n{tmp_path / 'v1'} 10 2\n")
    out = tmp_path / "feats"
    res = extract("scratch", str(lst), out, cfg, fmt="safetensors", views=(2, 1), per_view=True,
                  progress=False)
    assert res.failed == [str(tmp_path / "missing")]
    assert res.num_rows == 4  # 2 readable videos x 2 views
    data = load_file(str(out / "features.safetensors"))
    assert data["features"].shape == (4, 128) and data["labels"].tolist() == [1, 1, 2, 2]
    with open(out / "index.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["label"], r["view"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    again = extract("scratch", str(lst), out, cfg, fmt="safetensors", views=(2, 1), per_view=True,
                    progress=False)
    assert again.new == 0 and again.skipped == 3
