"""Weights & Biases logging (train.wandb) through the one scalar-logging path, with a fake module."""

import sys
import types


from mgmae.cli import main
from mgmae.engine.pretrain import pretrain
from test_engine import TINY, cfg_for


def _fake_wandb(calls):
    mod = types.ModuleType("wandb")

    class Run:
        def log(self, values, step=None):
            calls.append(("log", dict(values), step))

        def finish(self):
            calls.append(("finish",))

    def init(**kw):
        calls.append(("init", kw))
        return Run()

    mod.init = init
    return mod


def test_wandb_gets_init_the_step_scalars_and_finish(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "wandb", _fake_wandb(calls))
    run = pretrain(cfg_for(tmp_path, "wb", "train.max_steps=3", "train.num_workers=0", "train.wandb=proj"))
    assert calls[0][0] == "init" and calls[-1] == ("finish",)
    init = calls[0][1]
    assert (init["project"], init["name"], init["dir"]) == ("proj", "wb", str(run))
    assert init["config"]["train"]["wandb"] == "proj"
    logs = [c for c in calls if c[0] == "log"]
    steps = [c for c in logs if "pretrain/loss" in c[1]]
    assert [c[2] for c in steps] == [1, 2, 3]
    assert set(steps[0][1]) == {"pretrain/loss", "pretrain/lr", "pretrain/grad_norm", "pretrain/clips_per_s"}
    assert sum(c[0] == "init" for c in calls) == 1 and sum(c[0] == "finish" for c in calls) == 1


def test_wandb_not_installed_is_a_one_line_error_at_the_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    rc = main(["pretrain", *TINY, f"train.output_dir={tmp_path}", "train.run_name=x", "train.wandb=proj"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("mgmae pretrain: error:") and "pip install wandb" in err[0]
    assert not (tmp_path / "x").exists()  # nothing was started


def test_without_wandb_nothing_is_imported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # would fail if it were imported
    pretrain(cfg_for(tmp_path, "plain", "train.max_steps=1", "train.num_workers=0"))
