"""Sliding-window features for temporal action detection: ``mgmae extract ... --window W --stride S``."""

import csv
import json

import numpy as np
import pytest

from mgmae.cli import main
from mgmae.data.sampling import window_starts
from mgmae.engine.extract import extract, read_features
from test_finetune import _write_frames, tiny_cfg


def test_window_starts():
    assert window_starts(40, 16, 1, 4) == [0, 4, 8, 12, 16, 20, 24]  # 7 windows, the last ends at 39
    assert window_starts(10, 16, 1, 4) == [0]  # shorter than a window: one, padded
    assert window_starts(40, 16, 2, 4) == [0, 4, 8]  # span 31 at rate 2
    with pytest.raises(ValueError, match="stride"):
        window_starts(40, 16, 1, 0)


def _list(tmp_path, *videos):
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{tmp_path / v} 0\n" for v in videos))
    return str(lst)


def test_extract_windows_per_video_resumable_and_short_videos_padded(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "data.num_frames=16", "data.sampling_rate=1")
    _write_frames(tmp_path / "long", n=40)
    _write_frames(tmp_path / "short", n=10)
    out = tmp_path / "feats"
    res = extract("scratch", _list(tmp_path, "long", "short"), out, cfg, stride=4, progress=False)
    assert (res.new, res.skipped, res.num_rows) == (2, 0, 8)  # 7 windows + 1 padded window
    assert res.padded == [str(tmp_path / "short")]
    assert "1 videos shorter than one window" in capsys.readouterr().out
    feats, rows = read_features(out)
    assert [(r["path"].rsplit("/", 1)[1], int(r["start"])) for r in rows] == \
        [("long", s) for s in range(0, 25, 4)] + [("short", 0)]
    long = np.load(out / "per_video" / "long.npz")
    assert long["features"].shape == (7, 128) and long["starts"].tolist() == [0, 4, 8, 12, 16, 20, 24]
    np.testing.assert_array_equal(long["features"], feats[:7])
    assert not np.allclose(long["features"][0], long["features"][-1])  # other frames, other features
    assert np.load(out / "per_video" / "short.npz")["features"].shape == (1, 128)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["sampling"], meta["stride"], meta["num_frames"], meta["pad"]) == ("windows", 4, 16, "loop")
    # resume: the finished videos are skipped, their files kept; a new one is added
    mtime = (out / "per_video" / "long.npz").stat().st_mtime_ns
    _write_frames(tmp_path / "more", n=20)
    again = extract("scratch", _list(tmp_path, "long", "short", "more"), out, cfg, stride=4, progress=False)
    assert (again.new, again.skipped, again.num_rows) == (1, 2, 10)  # + 2 windows (0, 4)
    assert (out / "per_video" / "long.npz").stat().st_mtime_ns == mtime
    assert np.load(out / "per_video" / "more.npz")["starts"].tolist() == [0, 4]
    with pytest.raises(ValueError, match="do not apply"):
        extract("scratch", _list(tmp_path, "long"), tmp_path / "f2", cfg, stride=4, per_view=True)


def test_extract_window_cli_defaults_and_bad_flags(tmp_path, capsys):
    _write_frames(tmp_path / "long", n=40)
    lst = _list(tmp_path, "long")
    small = ["data.img_size=16", "model.name=mae_vit_nano_patch8", "--quiet"]
    assert main(["extract", "scratch", lst, "-o", str(tmp_path / "f"), "--window", "16", *small]) == 0
    meta = json.loads((tmp_path / "f" / "meta.json").read_text())
    assert (meta["stride"], meta["sampling_rate"], meta["num_frames"]) == (4, 1, 16)  # window // 4, rate 1
    with open(tmp_path / "f" / "index.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 7
    for flags, said in ((["--stride", "4"], "--stride needs --window"),
                        (["--window", "16", "--stride", "0"], "--stride must be >= 1"),
                        (["--window", "16", "--views", "2", "1"], "--views and --per-view do not apply")):
        with pytest.raises(SystemExit) as e:
            main(["extract", "scratch", lst, "-o", str(tmp_path / "g"), *flags, *small])
        assert e.value.code == 2
        assert said in capsys.readouterr().err
