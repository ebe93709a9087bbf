"""``mgmae masks``: pictures of masks on synthetic data and on a small encoded video."""

import numpy as np
import pytest
import torch
from PIL import Image

from mgmae.masks import cli_main, render_clip

FAST = ["--num-frames", "8", "--img-size", "32", "--patch-size", "8", "--stride", "1"]


def _moving_square_video(path, n=20, h=48, w=64, step=2):
    """A bright textured square moving right over a darker textured background (mpeg4, like a real file)."""
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    bg = (rng.random((h, w, 3)) * 80 + 40).astype(np.uint8)
    sq = (rng.random((16, 16, 3)) * 100 + 150).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for t in range(n):
            img = bg.copy()
            x = 4 + step * t
            img[16:32, x:x + 16] = sq[:, :max(0, min(16, w - x))]
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _sane_png(path, rows, shown, tile):
    im = Image.open(path)
    w, h = im.size
    assert shown * tile <= w <= shown * (tile + 10) + 10, (w, shown, tile)
    assert rows * tile <= h <= rows * (tile + 40), (h, rows, tile)
    return im


def _gif_frames(path):
    with Image.open(path) as im:
        return im.n_frames, im.size


def test_synthetic_with_ground_truth_flow(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["synthetic", "--flow", "gt", "--clips", "2", *FAST, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    pngs, gifs = sorted(out.glob("*.png")), sorted(out.glob("*.gif"))
    assert [p.name for p in pngs] == ["synthetic_000.png", "synthetic_001.png"] and len(gifs) == 2
    assert all(str(p) in printed for p in pngs + gifs)
    # 5 rows (input, motion-guided, mask map, flow, tube) x 4 shown frames (8 frames, every 2nd);
    # 32 px tiles are upscaled to at least 128 px for readability
    _sane_png(pngs[0], rows=5, shown=4, tile=128)
    n, (gw, gh) = _gif_frames(gifs[0])
    assert n == 8 and gw >= 5 * 128 and gh >= 128


def test_encoded_video_file_folder_and_list(tmp_path, capsys):
    video = _moving_square_video(tmp_path / "square.mp4")
    out = tmp_path / "out"
    rc = cli_main([str(video), "--flow", "dis", "--clips", "2", "--display-size", "64", *FAST, "-o", str(out)])
    assert rc == 0
    pngs = sorted(out.glob("square_f*.png"))
    assert len(pngs) == 2 and len(list(out.glob("square_f*.gif"))) == 2
    assert pngs[0].name == "square_f00000.png"  # first clip starts at frame 0, the last ends at the end
    im = _sane_png(pngs[0], rows=5, shown=4, tile=128)  # 64 px tiles -> upscaled to 128 by the strip writer
    assert np.asarray(im.convert("RGB")).std() > 10  # not blank
    # a folder of videos and a list file: one centred clip per video
    lst = tmp_path / "list.txt"
    lst.write_text("square.mp4 0\n")
    for src, extra in ((tmp_path, []), (lst, ["--root", str(tmp_path)])):
        o = tmp_path / ("o_" + src.name)
        assert cli_main([str(src), "--masker", "tube", "--clips", "3", "--no-gif", *FAST, *extra, "-o", str(o)]) == 0
        (png,) = o.glob("*.png")
        _sane_png(png, rows=2, shown=4, tile=128)  # input + tube rows


def test_errors_are_reported_not_raised(tmp_path, capsys):
    video = _moving_square_video(tmp_path / "v.mp4", n=10)
    assert cli_main([str(video), "--flow", "gt", *FAST, "-o", str(tmp_path / "o")]) == 2
    assert "--flow gt" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "missing.mp4"), *FAST, "-o", str(tmp_path / "o")]) == 2
    assert "no such video" in capsys.readouterr().err
    assert cli_main(["synthetic", "--img-size", "30", "--patch-size", "8", "-o", str(tmp_path / "o")]) == 2
    assert "divisible" in capsys.readouterr().err


def test_short_video_is_looped_and_labelled(tmp_path):
    from mgmae.masks import load_clips

    video = _moving_square_video(tmp_path / "short.mp4", n=5)

    clips = load_clips(str(video), num_frames=8, stride=2, clips=3)
    assert len(clips) == 1 and "looped" in clips[0].label and clips[0].frames.shape[0] == 8
    long_rows, _, _ = render_clip(clips[0].frames, masker="random", img_size=32, patch_size=8,
                                  label=clips[0].label)
    assert "looped" in long_rows[0][0]


def test_zero_flow_motion_guided_row_equals_tube_row_and_gt_motion_moves_it():
    from mgmae.data.synthetic import SyntheticVideos

    clip = SyntheticVideos(num_videos=1, num_frames=8, img_size=32, seed=0)[0]
    rows, _, info = render_clip(clip.frames, flow="zero", img_size=32, patch_size=8, seed=3)
    titles = [t for t, _ in rows]
    assert len(rows) == 5 and titles[1].startswith("motion-guided") and titles[4].startswith("tube")
    assert np.array_equal(rows[1][1], rows[4][1]) and info["moved_share"] == 0.0
    assert all(r.dtype == np.uint8 and r.shape == (8, 32, 32, 3) for _, r in rows)
    # a whole-frame translation (constant flow, 2 px/frame to the right): the visible cubes move
    shift = lambda s, d: torch.tensor([2.0 * (d - s), 0.0]).view(2, 1, 1).expand(2, 32, 32)  # noqa: E731
    rows, _, info = render_clip(clip.frames, flow="dis", gt_flow=shift, img_size=32, patch_size=8, seed=3)
    assert info["moved_share"] > 0.2 and "ground truth" in rows[1][0]


def test_config_and_key_value_are_the_flags(tmp_path, capsys):
    """Each flag is an alias of a config key: the same picture either way; a recipe sets the
    masker (and, through model.name, the patch size); a flag wins over the recipe."""
    def picture(*args):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        assert cli_main(["synthetic", "--clips", "1", "--no-gif", *args, "-o", str(out)]) == 0
        (png,) = out.glob("*.png")
        return np.asarray(Image.open(png).convert("RGB"))

    flags = picture("--flow", "gt", "--base-frame", "first", "--mask-ratio", "0.75", *FAST)
    keys = picture("flow.name=gt", "masking.base_frame=first", "masking.mask_ratio=0.75",
                   "data.num_frames=8", "data.img_size=32", "data.sampling_rate=1", "--patch-size", "8")
    assert np.array_equal(flags, keys)
    other = picture("flow.name=gt", "masking.base_frame=middle", "masking.mask_ratio=0.75",
                    "data.num_frames=8", "data.img_size=32", "data.sampling_rate=1", "--patch-size", "8")
    assert not np.array_equal(flags, other)  # the keys do reach the masker
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: mae_vit_nano_patch8\ndata:\n  num_frames: 8\n  img_size: 32\n"
                      "  sampling_rate: 1\nmasking:\n  name: tube\n  mask_ratio: 0.75\n")
    tube = picture("-c", str(recipe))  # patch 8 from the recipe's model; tube: input + tube rows
    assert np.array_equal(tube, picture("--masker", "tube", "--mask-ratio", "0.75", *FAST))
    assert tube.shape[0] < flags.shape[0] / 2
    assert not np.array_equal(picture("-c", str(recipe), "--masker", "random"), tube)  # flag wins
    assert cli_main(["synthetic", "masking.name=tubee", "-o", str(tmp_path / "x")]) == 2
    assert "masking.name" in capsys.readouterr().err
