"""Nothing in a checkpoint runs on load: the safe loader, its allowlist, the explicit opt-in.

A malicious pickle (``__reduce__`` -> ``os.system``) is refused by every loader and command, with a
message naming the global and ``--trust-checkpoint``; official-style files (``args`` Namespace,
numpy scalars / arrays / RNG tuples, from numpy 1 or 2) and ours load without the opt-in.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
import pytest
import torch

from mgmae.cli import main
from mgmae.convert import load_model
from mgmae.engine import checkpoint as ckpt
from mgmae.models import create_model
from mgmae.serialization import UntrustedCheckpointError, torch_load, trust_checkpoints


class _Evil:
    """Unpickling this creates the file ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _nano_classifier():
    torch.manual_seed(0)
    return create_model("vit_nano_patch8", num_classes=3, num_frames=4, img_size=16)


@pytest.fixture
def evil(tmp_path):
    """An official-looking fine-tuned checkpoint whose pickle also runs a shell command."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save({"model": _nano_classifier().state_dict(), "epoch": 3, "payload": _Evil(marker)}, path)
    return path, marker


def test_malicious_pickle_is_refused_and_nothing_runs(evil):
    path, marker = evil
    with pytest.raises(UntrustedCheckpointError) as e:
        torch_load(path)
    msg = str(e.value)
    assert "posix.system" in msg or "os.system" in msg
    assert "--trust-checkpoint" in msg and "trusted=True" in msg and str(path) in msg
    for load in (lambda: load_model(path), lambda: ckpt.load_checkpoint(path)):
        with pytest.raises(UntrustedCheckpointError):
            load()
    assert not marker.exists()


@pytest.mark.parametrize("cmd", [
    ["eval", "{p}"],
    ["convert", "{p}", "{tmp}/out.safetensors"],
    ["finetune", "{p}", "train.max_steps=1"],
    ["extract", "{p}", "synthetic", "-o", "{tmp}/feats"],
    ["linprobe", "{p}"],
    ["pretrain", "train.init_from={p}"],
    ["reconstruct", "{p}", "synthetic", "-o", "{tmp}/recon"],
])
def test_every_command_refuses_it_in_one_line(evil, tmp_path, capsys, cmd):
    path, marker = evil
    argv = [a.format(p=path, tmp=tmp_path) for a in cmd] + [f"train.output_dir={tmp_path}/runs"]
    if cmd[0] == "convert":
        argv = argv[:-1]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mgmae {cmd[0]}: error: ")
    assert "--trust-checkpoint" in err[0] and "system" in err[0]
    assert not marker.exists()


def test_trusted_is_an_explicit_opt_in(evil):
    path, marker = evil
    obj = torch_load(path, trusted=True)  # the user vouches for the file: the full unpickler
    assert marker.exists() and obj["epoch"] == 3
    marker.unlink()
    with trust_checkpoints():  # what --trust-checkpoint does for a whole command
        model = load_model(path)
    assert marker.exists() and model.num_classes == 3
    marker.unlink()
    with pytest.raises(UntrustedCheckpointError):  # and only inside it
        torch_load(path)
    assert not marker.exists()


def _official_style(sd):
    """What the official VideoMAE / V2 / MGMAE ``save_model`` writes: weights, optimizer, epoch,
    scaler and the argparse ``args``; numpy values as the research code leaves them about."""
    args = argparse.Namespace(model="vit_nano_patch8", input_size=16, num_frames=4,
                              window_size=(2, 2, 2), lr=np.float64(1e-3), opt_betas=[0.9, 0.999],
                              output_dir="/out", seed=0, mask_ratio=0.9, finetune="")
    return {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 39,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0}, "args": args,
            "max_accuracy": np.float32(71.5), "rng": np.random.get_state(),
            "counts": np.arange(6, dtype=np.int64).reshape(2, 3)}


def test_official_style_files_load_safely(tmp_path):
    model = _nano_classifier()
    torch.save(_official_style(model.state_dict()), tmp_path / "official.pth")
    obj = torch_load(tmp_path / "official.pth")
    assert obj["args"].window_size == (2, 2, 2) and obj["args"].lr == 1e-3
    assert obj["max_accuracy"] == np.float32(71.5) and obj["counts"].sum() == 15
    loaded = load_model(tmp_path / "official.pth", num_frames=4, img_size=16, num_heads=2)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_files_from_numpy_1_load_too(tmp_path):
    """numpy 1.x pickled its reconstructors as ``numpy.core.multiarray.*`` (2.x: ``numpy._core``);
    the legacy (non-zip) torch format keeps those names as plain text, so rewrite them there."""
    buf = io.BytesIO()
    obj = {"model": {"w": torch.ones(2)}, "acc": np.float64(0.5), "arr": np.arange(3),
           "args": argparse.Namespace(lr=0.1)}
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    if b"numpy._core.multiarray" in raw:
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    (tmp_path / "old.pth").write_bytes(raw)
    back = torch_load(tmp_path / "old.pth")
    assert back["acc"] == 0.5 and back["arr"].tolist() == [0, 1, 2] and back["args"].lr == 0.1


def test_our_checkpoints_need_no_allowlist(tmp_path):
    """Ours hold only tensors and builtins (the numpy RNG state as a tensor): nothing to allow."""
    model = _nano_classifier()
    opt = torch.optim.AdamW(model.parameters())
    np.random.seed(5)
    np.random.rand(3)
    ckpt.save_checkpoint(tmp_path / "c.pth", model=model, config={"a": 1}, kind="classify",
                         optimizer=opt, extra={"history": [{"epoch": 1, "val_acc1": 50.0}]})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp_path / "c.pth")) == []
    torch.load(tmp_path / "c.pth", weights_only=True)  # the default allowlist alone reads it
    expected = np.random.rand(4)
    np.random.seed(0)  # scramble, then restore from the file
    ckpt.set_rng_state(ckpt.load_checkpoint(tmp_path / "c.pth")["rng"])
    np.testing.assert_array_equal(np.random.rand(4), expected)


def test_rng_state_of_older_checkpoints_still_restores():
    """Checkpoints written before the tensor form stored numpy's legacy tuple."""
    np.random.seed(3)
    legacy = {**ckpt.rng_state(), "numpy": np.random.get_state()}
    expected = np.random.rand(2)
    np.random.seed(9)
    ckpt.set_rng_state(legacy)
    np.testing.assert_array_equal(np.random.rand(2), expected)


def test_unreadable_files_are_value_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        torch_load(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        torch_load(tmp_path / "missing.pth")
