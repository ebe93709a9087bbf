"""The ``mgmae`` front door: fast (no torch before a command runs), recipes by name, one way to
take ``-c`` and ``key=value``, registered maskers usable from a config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgmae.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "matplotlib", "numpy", "av", "timm", "torchvision")


def _modules_after(code: str) -> set[str]:
    """The heavy modules imported by ``code`` in a fresh interpreter."""
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _run_cli(*argv: str) -> str:
    return ("import contextlib, io\nfrom mgmae.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({list(argv)!r})\n    except SystemExit:\n        pass")


@pytest.mark.parametrize("code", [
    "import mgmae", "import mgmae.cli", "from mgmae import Config, load_config",
    _run_cli("--help"), _run_cli("config", "--keys"), _run_cli("config", "--list"),
    _run_cli("config", "-c", "pretrain_vit_base_ssv2", "masking.name=tube"),
    _run_cli("config", "flow.name=gt", "masking.decoder_mask=run_cell", "masking.base_frame=first"),
    _run_cli("pretrain", "--help"),
])
def test_the_front_door_imports_no_torch(code):
    assert _modules_after(code) == set()


def test_lazy_names_still_import():
    import mgmae

    assert _modules_after("from mgmae import create_model") >= {"torch"}  # the check above can fail
    for name in mgmae.__all__:
        assert getattr(mgmae, name) is not None and name in dir(mgmae)
    from mgmae import build_masker, create_model, load_config
    from mgmae.masking import build_masker as b2

    assert build_masker is b2 and callable(create_model) and callable(load_config)
    with pytest.raises(AttributeError):
        mgmae.no_such_name  # noqa: B018


def test_config_list_and_keys(capsys):
    from mgmae.config import list_recipes, valid_keys

    assert main(["config", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(list_recipes())
    assert any(ln.startswith("pretrain_vit_base_ssv2 ") and "Something-Something V2" in ln for ln in lines)
    assert main(["config", "--keys"]) == 0
    assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()] == valid_keys()


def test_every_command_finds_a_recipe_by_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: the name must resolve inside the package
    assert main(["config", "-c", "pretrain_vit_base_ssv2", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "name: mae_vit_base_patch16" in out and "epochs: 2" in out
    assert main(["pretrain", "-c", "pretrain_vit_base_ssv3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mgmae pretrain: error: config file not found")
    assert "Did you mean 'pretrain_vit_base_ssv2'?" in err


# ----------------------------------------------------------------------------- data check

def _clip_list(tmp_path: Path, frames: int) -> Path:
    from PIL import Image

    folder = tmp_path / "vids" / "v0"
    folder.mkdir(parents=True)
    for i in range(frames):
        Image.new("RGB", (16, 16), (i * 10, 0, 0)).save(folder / f"img_{i + 1:05d}.jpg")
    lst = tmp_path / "list.txt"
    lst.write_text(f"v0 {frames} 0\n")
    return lst


def test_data_check_takes_config_and_overrides(tmp_path, capsys):
    lst = _clip_list(tmp_path, 10)
    root = str(tmp_path / "vids")
    # relative paths resolve against data.root (or its old flag, --root)
    assert main(["data", "check", str(lst), f"data.root={root}", "data.num_frames=8",
                 "data.sampling_rate=1", "--quiet"]) == 0
    assert "all 1 videos readable with >= 8 frames" in capsys.readouterr().out
    assert main(["data", "check", str(lst), "--root", root, "--min-frames", "8", "--quiet"]) == 0
    capsys.readouterr()
    # the minimum length is the span of the config's clip unless --min-frames says otherwise
    assert main(["data", "check", str(lst), f"data.root={root}", "--quiet"]) == 1  # 10 < 31 frames
    assert "too short: 10 frames" in capsys.readouterr().out
    assert main(["data", "check", str(lst), f"data.root={root}", "--min-frames", "4", "--quiet"]) == 0
    capsys.readouterr()
    # the list can come from the config (data.train_list), and the recipe from -c
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  train_list: {lst}\n  root: {root}\n  num_frames: 8\n  sampling_rate: 1\n")
    assert main(["data", "check", "-c", str(recipe), "--quiet"]) == 0
    assert "all 1 videos readable with >= 8 frames" in capsys.readouterr().out
    # mistakes are one line naming the culprit
    assert main(["data", "check", str(lst), "data.roots=x", "--quiet"]) == 2
    assert "'data.root'" in capsys.readouterr().err
    assert main(["data", "check", "--quiet"]) == 2
    assert "data.train_list" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["finetune", "scratch", "masking.name=tube"], "masking.name does not apply to mgmae finetune"),
    (["finetune", "scratch", "train.init_from=x.pth"], "train.init_from does not apply to mgmae finetune"),
    (["linprobe", "scratch", "flow.name=dis"], "flow.name does not apply to mgmae linprobe"),
    (["eval", "missing.pth", "masking.mask_ratio=0.5"], "masking.mask_ratio does not apply to mgmae eval"),
    (["pretrain", "finetune.lr=0.1"], "finetune.lr does not apply to mgmae pretrain"),
])
def test_a_key_that_does_not_apply_to_the_command_is_an_error(argv, message, capsys):
    from mgmae.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mgmae {argv[0]}: error: {message}")


def test_a_closed_pipe_ends_a_command_quietly(capsys):
    """`mgmae study --dry-run | head`: the reader leaves early; the command stops without an
    error line, with the status of a tool killed by SIGPIPE."""
    from mgmae.commands import command

    @command("demo")
    def cli(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert cli([]) == 141
    assert capsys.readouterr().err == ""
