"""The attentive probe (``mgmae probe``): what the head can read that pooling loses, the token
cache, the command and its bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from mgmae.cli import main
from mgmae.config import load_config
from mgmae.engine.linprobe import train_probe
from mgmae.engine.probe import AttentiveProbe, Tokens, TokenSource, train_attentive
from mgmae.engine.pretrain import pretrain

TINY = ["data.synthetic_videos=24", "data.num_frames=4", "data.img_size=32", "train.tensorboard=false",
        "train.num_workers=0", "finetune.synthetic_val_videos=12"]


def test_the_probe_does_not_depend_on_token_order():
    """No positions in the head: permuting the tokens leaves the logits unchanged (the encoder's
    positional embeddings carry where a token was)."""
    torch.manual_seed(0)
    head = AttentiveProbe(dim=16, num_classes=3, num_heads=4, depth=2, num_queries=2).eval()
    x = torch.randn(5, 12, 16)
    torch.testing.assert_close(head(x), head(x[:, torch.randperm(12)]), atol=1e-5, rtol=0)
    assert head(x).shape == (5, 3)


def _pooling_blind_tokens(n: int, seed: int):
    """The class says in which channel one token is +6 and another -6: the mean over tokens is
    the same for both classes, so a probe on pooled features is at chance."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, 8, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for k in range(n):
        i, j = torch.randperm(16, generator=g)[:2]
        x[k, i, y[k]] += 6.0
        x[k, j, y[k]] -= 6.0
    return x, y.numpy()


def test_the_attentive_probe_reads_what_mean_pooling_loses():
    cfg = load_config(None, ["probe.epochs=30", "probe.batch_size=32", "probe.lr=3e-3"])
    x, y = _pooling_blind_tokens(512, 0)
    xv, yv = _pooling_blind_tokens(256, 1)
    head, history = train_attentive(Tokens(x, y, num_heads=2), 2, cfg, seed=0, progress=False)
    acc = (head(xv).argmax(1).numpy() == yv).mean()
    lin, _ = train_probe(x.mean(1).numpy(), y, 2, epochs=30, seed=0)
    lin_acc = (lin(xv.mean(1)).argmax(1).numpy() == yv).mean()
    assert acc > 0.85 and lin_acc < 0.65, (acc, lin_acc)
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("pt")
    run = pretrain(load_config(None, [*TINY, f"train.output_dir={out}", "train.run_name=pt",
                                      "train.batch_size=8", "train.max_steps=2", "masking.name=tube"]))
    return run / "checkpoint-final.pth"


def test_cached_and_recomputed_tokens_are_the_same(checkpoint, tmp_path):
    from mgmae.engine.evaluate import build_eval_dataset
    from mgmae.models.build import build_encoder

    cfg = load_config(None, TINY)
    enc = build_encoder(str(checkpoint), cfg).eval()
    ds, _, _ = build_eval_dataset(cfg, "val", views=(1, 1))
    cached = TokenSource(enc, ds, cfg, "cpu", progress=False)
    cfg.probe.cache_gb = 0.0
    fresh = TokenSource(enc, ds, cfg, "cpu", progress=False)
    assert cached.cached and not fresh.cached and cached.tokens.dtype == torch.float16
    a = torch.cat([t for t, _ in cached.batches(5)])
    b = torch.cat([t for t, _ in fresh.batches(5)])
    assert a.shape == b.shape == (12, enc.num_patches, enc.embed_dim)
    torch.testing.assert_close(a, b, atol=2e-2, rtol=1e-3)  # (float16 storage)
    assert np.array_equal(cached.labels, fresh.labels)


def test_probe_command_prints_a_top1_and_writes_its_result(checkpoint, tmp_path, capsys):
    argv = ["probe", str(checkpoint), "--head", "attentive", *TINY, "probe.epochs=2",
            f"train.output_dir={tmp_path}", "train.run_name=ap", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"attentive probe: val top-1 \d+\.\d\d%, top-5", out), out
    res = json.loads((tmp_path / "ap" / "result.json").read_text())
    assert res["head"] == "attentive" and res["num_val"] == 12 and res["cached"]
    state = torch.load(tmp_path / "ap" / "probe.pth", weights_only=True)
    assert state["head"] == "attentive" and state["num_classes"] == 8
    # the linear head through the same command
    assert main(["probe", str(checkpoint), "--head", "linear", *TINY, "finetune.linprobe_epochs=2",
                 f"train.output_dir={tmp_path}", "train.run_name=lp", "--quiet"]) == 0
    assert "linear probe: train top-1" in capsys.readouterr().out


def test_seeds_and_compare_scratch_give_paired_numbers(checkpoint, tmp_path, capsys):
    assert main(["probe", str(checkpoint), *TINY, "probe.epochs=1", f"train.output_dir={tmp_path}",
                 "train.run_name=cmp", "--seeds", "2", "--compare-scratch", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "pre-trained" in out and "scratch" in out
    summary = json.loads((tmp_path / "cmp-probe.json").read_text())
    assert summary["seeds"] == [0, 1] and len(summary["acc1"]["scratch"]) == 2
    assert "paired_ttest" in summary


@pytest.mark.parametrize("row", ["unknown_head", "no_encoder", "diverges"])
def test_bad_input_is_one_line_and_no_result(checkpoint, tmp_path, capsys, row):
    argv = ["probe", str(checkpoint), *TINY, "probe.epochs=2", f"train.output_dir={tmp_path}",
            "train.run_name=bad", "--quiet"]
    if row == "unknown_head":
        argv += ["--head", "mlp"]
        want = "probe.head' = 'mlp'; allowed: attentive, linear"
    elif row == "no_encoder":
        junk = tmp_path / "junk.pth"
        torch.save({"something": torch.zeros(3)}, junk)
        argv[1] = str(junk)
        want = str(junk)
    else:
        argv += ["probe.lr=1e30"]
        want = "the probe diverged"
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mgmae probe: error: ")]
    assert len(err) == 1 and want in err[0], err
    assert not (tmp_path / "bad" / "result.json").exists() and not (tmp_path / "bad" / "probe.pth").exists()


def test_under_torchrun_the_ranks_share_the_tokens_and_rank_0_reports(checkpoint, tmp_path, torchrun):
    common = [str(checkpoint), *TINY, "probe.epochs=2", "finetune.synthetic_val_videos=13", "--quiet"]
    assert main(["probe", *common, f"train.output_dir={tmp_path}", "train.run_name=one"]) == 0
    res = torchrun(2, "probe", *common, f"train.output_dir={tmp_path}", "train.run_name=two")
    assert res.stdout.count("attentive probe: val top-1") == 1, res.stdout[-2000:]
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert two["num_train"] == one["num_train"] == 24 and two["num_val"] == one["num_val"] == 13
    assert abs(two["val_acc1"] - one["val_acc1"]) <= 100 / 13 + 1e-9  # (batching may move a near tie)
