"""The command line's small faces (issue 31, item 7): a config error is said before torch is
imported; ``mgmae config --keys`` says what each key means; options and overrides in any order;
``--quiet`` everywhere; no progress-bar redraws in a log; progress on masks and reconstruct;
``mgmae masks`` draws the demo's clips unless told otherwise."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgmae.cli import DELEGATED, build_parser, main
from mgmae.config import load_config, valid_keys
from mgmae.precheck import SPECS, check_early

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
TINY = ["data.synthetic_videos=8", "data.num_frames=4", "data.img_size=32", "train.batch_size=4",
        "train.num_workers=0", "train.baseline_clips=2", "train.vis_clips=1", "train.tensorboard=false",
        "train.max_steps=2"]


def _in_fresh_python(argv: list[str]) -> tuple[int, str, list[str]]:
    """``mgmae argv`` in a new interpreter: exit status, stderr, and which of torch / timm it
    imported."""
    code = ("import sys, json\nfrom mgmae.cli import main\nrc = main(sys.argv[1:])\n"
            "print(json.dumps([rc, sorted(m for m in ('torch', 'timm') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         env=ENV, cwd=ROOT, timeout=300)
    rc, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    return rc, out.stderr, heavy


# ----------------------------------------------------------------- config errors before torch
@pytest.mark.parametrize("argv, words", [
    (["pretrain", "train.bogus=1"], "unknown config key 'train.bogus'"),
    (["pretrain", "--resume", "auto", "flow.name=bogus"], "config key 'flow.name' = 'bogus'"),
    (["pretrain", "-c", "no_such_recipe"], "config file not found"),
    (["finetune", "scratch", "finetune.epochs=many"], "'finetune.epochs' expects an integer"),
    (["linprobe", "scratch", "data.num_frames=15"], "not divisible by model.tubelet_size"),
    (["probe", "scratch", "--head", "bogus"], "config key 'probe.head' = 'bogus'"),
    (["eval", "run/checkpoint-best.pth", "data.backend=ffmpeg"], "config key 'data.backend' = 'ffmpeg'"),
    (["eval", "run/checkpoint-best.pth", "-c", "finetune_demo", "data.num_frames=15"], "not divisible"),
    (["extract", "scratch", "videos/", "-o", "feats", "data.nmu_frames=8"], "'data.num_frames'"),
    (["extract", "run/ck.pth", "videos/", "-o", "feats", "masking.mask_ratio=0.5"], "does not apply"),
    (["masks", "synthetic", "masking.name=tubee"], "config key 'masking.name' = 'tubee'"),
    (["reconstruct", "run/ck.pth", "synthetic", "masking.where=gpu"], "config key 'masking.where'"),
    (["data", "check", "list.txt", "data.roots=/x"], "Did you mean 'data.root'"),
    (["study", "--dry-run", "train.bogus=1"], "unknown config key 'train.bogus'"),
    (["study", "-c", "study_smal"], "Did you mean 'study_small'"),
    (["config", "train.lr=fast"], "'train.lr' expects a number"),
])
def test_a_config_error_is_said_before_torch_is_imported(argv, words):
    """Every command that takes a config checks it before importing torch, timm and the engine: the
    error costs ~0.1 s instead of 5-10 s (docs/reliability.md)."""
    rc, err, heavy = _in_fresh_python(argv)
    name = "data check" if argv[0] == "data" else argv[0]
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"mgmae {name}: error: "), err
    assert words in err, err
    assert heavy == [], f"imported {heavy} before saying: {err}"


@pytest.mark.parametrize("command, argv", [
    ("eval", ["ck.pth", "data.num_frames=15"]),  # the checkpoint's tubelet may be 1: its to judge
    ("extract", ["ck.pth", "videos", "-o", "a.b=c"]),  # an option's value, not an override
    ("extract", ["scratch", "videos", "-o", "o", "--window", "16", "data.num_frames=15"]),
    ("masks", ["synthetic", "--img-size", "30", "--out", "x=y"]),  # the command's own checks
    ("reconstruct", ["ck.pth", "synthetic", "data.num_frames=15"]),
    ("finetune", ["scratch", "--seeds"]),  # a usage error: the command's parser says it
    ("finetune", ["--help", "train.bogus=1"]),
])
def test_the_early_check_refuses_nothing_the_command_accepts(command, argv):
    check_early(command, argv)


def _value_options(parser: argparse.ArgumentParser) -> dict[tuple[str, ...], int]:
    return {tuple(a.option_strings): 1 if a.nargs is None else a.nargs for a in parser._actions
            if a.option_strings and a.nargs != 0}


@pytest.mark.parametrize("command", sorted(SPECS))
def test_the_early_check_knows_each_commands_options(command):
    """The early check must know which options take values (``-o out`` is no override): its list
    is each command's real parser's."""
    module = importlib.import_module(DELEGATED[command][0])
    assert _value_options(module.build_parser()) == SPECS[command].options, \
        "an option that takes a value was added or removed: list it in mgmae.precheck.SPECS"


def test_a_bad_flow_name_needs_no_torch():
    from mgmae.registry import FLOWS

    before = set(FLOWS.names())
    code = ("import sys, json\nimport mgmae.flow\nfrom mgmae.registry import FLOWS\n"
            "print(json.dumps(FLOWS.names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert set(json.loads(out.stdout)) == before  # importing mgmae.flow registers nothing more


# ----------------------------------------------------------------- config --keys
def test_every_key_has_words_and_keys_prints_them(capsys):
    from mgmae.keydocs import key_docs

    docs = key_docs()
    assert sorted(docs) == valid_keys()
    assert not [k for k, words in docs.items() if len(words.split()) < 2], "keys without a comment"
    assert "pixels" in docs["data.img_size"] and "per-patch normalized" in docs["model.norm_pix_loss"]
    assert main(["config", "--keys"]) == 0
    lines = dict((ln.split()[0], ln) for ln in capsys.readouterr().out.splitlines())
    assert list(lines) == valid_keys()
    assert lines["data.img_size"].split()[1] == "64" and "pixels" in lines["data.img_size"]
    assert lines["train.betas"].split(None, 1)[1].startswith("[0.9, 0.95]")
    assert main(["config", "-c", "pretrain_vit_base_ssv2", "--keys"]) == 0  # the recipe's values
    lines = dict((ln.split()[0], ln) for ln in capsys.readouterr().out.splitlines())
    assert lines["data.img_size"].split()[1] == "224"


# ----------------------------------------------------------------- options and overrides in any order
@pytest.mark.parametrize("argv", [
    ["--resume", "auto", "train.max_steps=1"],
    ["train.max_steps=1", "--resume", "auto"],
    ["train.epochs=3", "--resume", "auto", "-c", "demo", "train.max_steps=1"],
])
def test_pretrain_takes_options_and_overrides_in_any_order(argv, monkeypatch):
    import mgmae.engine.pretrain as engine

    seen = {}
    monkeypatch.setattr(engine, "pretrain", lambda cfg, **kw: seen.update(cfg=cfg, **kw))
    assert main(["pretrain", *argv]) == 0
    assert seen["cfg"].train.max_steps == 1 and seen["cfg"].train.resume == "auto"
    assert seen["quiet"] is False and seen["progress"] is False  # (stderr is not a terminal here)


@pytest.mark.parametrize("argv", [
    ["finetune", "data.num_frames=8", "scratch", "-c", "finetune_demo", "train.bogus=1"],
    ["linprobe", "data.num_frames=8", "-c", "demo", "scratch", "train.bogus=1"],
    ["eval", "data.num_frames=8", "--split", "val", "missing.pth", "train.bogus=1"],
    ["extract", "data.num_frames=8", "-o", "feats", "scratch", "--quiet", "videos", "train.bogus=1"],
    ["masks", "data.num_frames=8", "--clips", "1", "synthetic", "train.bogus=1"],
    ["reconstruct", "data.num_frames=8", "missing.pth", "-o", "out", "synthetic", "train.bogus=1"],  # reads
    # the checkpoint first: its error says the command line was taken
    ["data", "check", "data.num_frames=8", "--quiet", "list.txt", "train.bogus=1"],
    ["study", "train.epochs=1", "--dry-run", "train.bogus=1"],
    ["config", "train.epochs=1", "-c", "demo", "train.bogus=1"],
])
def test_every_command_takes_options_and_overrides_in_any_order(argv, capsys):
    """Overrides before and after options and positional arguments: the command's own parser
    takes them (called without the early check), and the config error is the one said."""
    if argv[0] == "config":
        rc = main(argv)
    else:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        rc = module.cli_main(argv[2:] if argv[0] == "data" else argv[1:])
    err = capsys.readouterr().err
    words = "checkpoint not found: missing.pth" if argv[0] == "reconstruct" else "unknown config key 'train.bogus'"
    assert rc == 2 and "unrecognized arguments" not in err and words in err, err


# ----------------------------------------------------------------- --quiet, progress bars
def _parser_of(command: str) -> argparse.ArgumentParser:
    if command in ("pretrain", "config"):
        sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices[command]
    return importlib.import_module(DELEGATED[command][0]).build_parser()


@pytest.mark.parametrize("command", ["pretrain", *DELEGATED])
def test_every_command_has_quiet(command):
    assert any("--quiet" in a.option_strings for a in _parser_of(command)._actions)


def test_progress_bars_only_on_a_terminal():
    import io

    from mgmae.commands import show_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert show_progress(False, Terminal()) and not show_progress(True, Terminal())
    assert not show_progress(False, io.StringIO())  # a pipe, a log file
    with open(os.devnull, "w") as f:
        assert not show_progress(False, f)


@pytest.mark.parametrize("command", sorted(DELEGATED))
def test_every_command_asks_whether_to_draw_bars(command):
    """The bars of every command are off in a log, not only with --quiet: each decides with
    show_progress (the engines' `progress=` argument stays a plain switch for Python callers)."""
    source = Path(importlib.import_module(DELEGATED[command][0]).__file__).read_text()
    assert "progress=not args.quiet" not in source


def test_a_log_of_pretraining_has_no_bar_redraws(tmp_path):
    """Output to a pipe (a log file, a cluster's job log): no carriage returns or escape codes,
    the epoch lines and the summary as plain lines (the demo's log: ~85 KB of redraws before)."""
    out = subprocess.run([sys.executable, "-m", "mgmae", "pretrain", *TINY, f"train.output_dir={tmp_path}"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr
    both = out.stdout + out.stderr
    assert "\r" not in both and "\x1b" not in both
    assert "[mgmae] epoch 1: loss" in out.stdout and "[mgmae] wrote:" in out.stdout
    assert out.stderr == ""


def test_quiet_pretraining_says_the_result_only(tmp_path, capsys):
    assert main(["pretrain", "--quiet", *TINY, f"train.output_dir={tmp_path}"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "[mgmae] epoch" not in cap.out and "[mgmae] model" not in cap.out
    assert "[mgmae] loss" in cap.out and "checkpoint-final.pth" in cap.out


FAST = ["--num-frames", "8", "--img-size", "32", "--stride", "1"]


def test_masks_shows_progress_on_a_terminal_and_quiet_prints_the_files(tmp_path, capsys, monkeypatch):
    import mgmae.masks as masks

    monkeypatch.setattr(masks, "show_progress", lambda quiet: not quiet)  # as on a terminal
    assert masks.cli_main(["synthetic", "--flow", "gt", "--clips", "2", "--no-gif", *FAST,
                           "-o", str(tmp_path / "a")]) == 0
    cap = capsys.readouterr()
    assert "masks:" in cap.err and "/2 [" in cap.err and "clip/s" in cap.err
    assert cap.out.count(".png") == 2 and "base frame" in cap.out
    assert masks.cli_main(["synthetic", "--flow", "gt", "--clips", "2", "--no-gif", "--quiet", *FAST,
                           "-o", str(tmp_path / "b")]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out.split() == [str(tmp_path / "b" / f"synthetic_{i:03d}.png") for i in range(2)]


def test_reconstruct_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    import torch

    import mgmae.reconstruct as reconstruct
    from mgmae.convert import export_model
    from mgmae.engine.pretrain import build_model

    cfg = load_config(None, ["data.num_frames=4", "data.img_size=32", "masking.mask_ratio=0.75"])
    torch.manual_seed(0)
    ckpt = export_model(build_model(cfg), tmp_path / "tiny.pth", config=cfg.to_dict())
    monkeypatch.setattr(reconstruct, "show_progress", lambda quiet: not quiet)
    assert reconstruct.cli_main([str(ckpt), "synthetic", "--masker", "tube", "--clips", "2",
                                 "-o", str(tmp_path / "o")]) == 0
    cap = capsys.readouterr()
    assert "reconstruct:" in cap.err and "/2 [" in cap.err and cap.out.count("loss") >= 2
    assert reconstruct.cli_main([str(ckpt), "synthetic", "--masker", "tube", "--clips", "2", "--quiet",
                                 "-o", str(tmp_path / "q")]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and len(cap.out.strip().splitlines()) == 2  # one line per clip


# ----------------------------------------------------------------- masks: the demo's clips
def test_masks_draws_the_demos_clips_unless_told_otherwise():
    import mgmae.masks as masks

    def resolved(*argv):
        a = masks.build_parser().parse_intermixed_args(["synthetic", *argv])
        from mgmae.commands import split_positionals

        _, overrides = split_positionals(a.args, 1)
        return masks.resolve_args(a, overrides)

    demo = load_config("demo")
    a = resolved()
    assert (a.img_size, a.num_frames, a.patch_size) == (demo.data.img_size, demo.data.num_frames, 8)
    assert (a.img_size, a.patch_size) == (64, 8)
    a = resolved("-c", "pretrain_vit_base_ssv2")
    assert (a.img_size, a.patch_size) == (224, 16)
    a = resolved("data.img_size=224", "model.name=mae_vit_base_patch16")
    assert (a.img_size, a.patch_size) == (224, 16)
