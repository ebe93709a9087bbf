"""The weight-decay schedule (train.weight_decay_end / finetune.weight_decay_end, VideoMAE's cosine)."""

import json
import math

import pytest
import torch

from mgmae.config import load_config
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.optim import build_optimizer, set_weight_decay, weight_decay_at, weight_decay_schedule
from mgmae.engine.pretrain import pretrain
from test_engine import TINY, assert_same, weights


def test_weight_decay_cosine_by_hand():
    # VideoMAE's cosine_scheduler(0.05, 0.5, ...): 0.05 at the first step, the mean half-way, -> 0.5
    assert weight_decay_at(0, 10, 0.05, 0.5) == pytest.approx(0.05)
    assert weight_decay_at(5, 10, 0.05, 0.5) == pytest.approx(0.275)
    assert weight_decay_at(10, 10, 0.05, 0.5) == pytest.approx(0.5)
    assert weight_decay_at(9, 10, 0.05, 0.5) == pytest.approx(0.5 - 0.225 * (1 + math.cos(0.9 * math.pi)))
    assert weight_decay_at(3, 10, 0.1, 0.0) < weight_decay_at(2, 10, 0.1, 0.0)  # decreasing too
    assert weight_decay_schedule(10, 0.05, None) is None  # null: constant, left as built


def test_groups_without_weight_decay_stay_at_zero():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, 1e-3, 0.05)
    set_weight_decay(opt, 0.3)
    wds = sorted(g["weight_decay"] for g in opt.param_groups)
    assert wds == [0.0, 0.3]  # biases and the norm: 0; the weight matrix follows the schedule


def _cfg(tmp_path, name, *extra):
    return load_config(None, TINY + [f"train.output_dir={tmp_path}", f"train.run_name={name}",
                                      "train.max_steps=3", "train.num_workers=0", *extra])


def _log(run_dir):
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if '"loss"' in x]


def test_pretrain_weight_decay_schedule_is_applied_logged_and_null_keeps_the_old_run(tmp_path):
    const = pretrain(_cfg(tmp_path, "const", "train.weight_decay=0.5"))
    same = pretrain(_cfg(tmp_path, "same", "train.weight_decay=0.5", "train.weight_decay_end=0.5"))
    sched = pretrain(_cfg(tmp_path, "sched", "train.weight_decay=0.5", "train.weight_decay_end=0.0"))
    assert all("weight_decay" not in r for r in _log(const))  # null: the log and the run as before
    assert_same(weights(const), weights(same))  # a flat cosine applies the same decay
    logged = [r["weight_decay"] for r in _log(sched)]
    assert logged == pytest.approx([weight_decay_at(k, 3, 0.5, 0.0) for k in range(3)])
    assert logged[0] == 0.5 and logged[-1] < logged[1] < 0.5
    w_const, w_sched = weights(const), weights(sched)
    assert any(not torch.equal(w_const[k], w_sched[k]) for k in w_const)
    groups = ckpt.load_checkpoint(sched / "checkpoint-final.pth")["optimizer"]["param_groups"]
    assert sorted({g["weight_decay"] for g in groups}) == pytest.approx([0.0, logged[-1]])


def test_weight_decay_end_needs_a_weight_decay():
    with pytest.raises(ValueError, match="finetune.weight_decay_end"):
        load_config(None, ["finetune.weight_decay=0", "finetune.weight_decay_end=0.1"])
    with pytest.raises(ValueError, match="train.weight_decay_end"):
        load_config(None, ["train.weight_decay_end=-1"])


def test_finetune_weight_decay_schedule_is_logged(tmp_path):
    from mgmae.engine.finetune import finetune
    from test_finetune import tiny_cfg

    cfg = tiny_cfg(tmp_path, "train.run_name=ft", "finetune.synthetic_val_videos=0", "finetune.weight_decay=0.1",
                   "finetune.weight_decay_end=0.3", "train.tensorboard=false")
    finetune(cfg, "scratch", progress=False)
    logged = [r["weight_decay"] for r in _log(tmp_path / "ft")]
    assert logged == pytest.approx([weight_decay_at(k, len(logged), 0.1, 0.3) for k in range(len(logged))])
    assert len(logged) == 2 and logged[0] == pytest.approx(0.1)
