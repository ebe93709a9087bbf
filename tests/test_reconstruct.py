"""``mgmae reconstruct``: pictures of what a pre-training checkpoint reconstructs, from our files,
Hugging Face directories, synthetic clips and encoded videos; one-line errors."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mgmae.cli import main
from mgmae.config import load_config
from mgmae.convert import export_model
from mgmae.engine.pretrain import build_model
from mgmae.models.build import build_classifier
from mgmae.models.mae import denormalize

# nano, patch 8, 4 frames of 32 px: a (2, 4, 4) grid; tube masks at 0.75 keep 4 of 16 per slice
TINY = ["data.num_frames=4", "data.img_size=32", "masking.mask_ratio=0.75", "data.sampling_rate=1"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    return export_model(build_model(cfg), tmp_path_factory.mktemp("ck") / "tiny.pth", config=cfg.to_dict())


def reconstruct(*args):
    return main(["reconstruct", *map(str, args)])


def tiles(png, row: int, n_rows: int = 3):
    """The first tile of ``row`` of a reconstruction strip (tiles of 32 px are drawn at 128 px,
    under a 14-px title, rows 2 px apart)."""
    im = np.asarray(Image.open(png).convert("RGB"))
    assert im.shape[0] == n_rows * (14 + 128 + 2)
    top = row * (14 + 128 + 2) + 14
    return im[top:top + 128, :128]


def test_synthetic_tube_pictures_show_the_mask_and_paste_the_visible_cubes(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert reconstruct(ckpt, "synthetic", "--masker", "tube", "--clips", "2", "-o", out) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "TubeMasker" in lines[0] and "mask_ratio=0.75" in lines[0]
    for i in range(2):
        png, gif = out / f"synthetic_{i:03d}.png", out / f"synthetic_{i:03d}.gif"
        assert f"{png}  {gif}  loss " in lines[1 + i] and float(lines[1 + i].split()[-1]) > 0
        with Image.open(gif) as im:
            assert im.n_frames == 4
        inp, vis, rec = (tiles(png, r) for r in range(3))
        hidden = (vis == 0).all(-1)  # [128, 128]: black = hidden
        assert 0.75 <= hidden.mean() < 0.8  # 12 of 16 cubes of the first slice (a few black input pixels)
        cubes = hidden.reshape(4, 32, 4, 32).all(axis=(1, 3))  # the 4 x 4 patch grid
        assert cubes.sum() == 12
        assert np.array_equal(rec[~hidden], inp[~hidden])  # visible cubes come from the input
        assert not np.array_equal(rec[hidden], inp[hidden])  # hidden ones are the model's


def test_encoded_video_motion_guided_and_key_value_overrides(ckpt, tmp_path, capsys):
    from mgmae.data.synthetic import SyntheticVideos
    from mgmae.data.video import write_video

    frames = SyntheticVideos(num_videos=1, num_frames=24, img_size=48, seed=3)[0].frames
    video = write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "out"
    assert reconstruct(ckpt, video, "--masker", "motion_guided", "--clips", "2", "masking.mask_ratio=0.5",
                       "flow.name=farneback", "-o", out) == 0
    text = capsys.readouterr().out
    assert "MotionGuidedMasker" in text and "flow=farneback" in text and "mask_ratio=0.5" in text
    pngs = sorted(out.glob("clip_f*.png"))
    assert len(pngs) == 2 and len(sorted(out.glob("clip_f*.gif"))) == 2
    hidden = (tiles(pngs[0], 1) == 0).all(-1).reshape(4, 32, 4, 32).all(axis=(1, 3))
    assert hidden.sum() == 8  # ratio 0.5 from key=value: 8 of 16 cubes per slice hidden


def test_hugging_face_directory(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=128, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=512, decoder_hidden_size=64, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=4, decoder_intermediate_size=256, norm_pix_loss=True)
    transformers.VideoMAEForPreTraining(hf_cfg).save_pretrained(tmp_path / "hf")
    out = tmp_path / "out"
    assert reconstruct(tmp_path / "hf", "synthetic", "--clips", "1", "--masker", "random", "-o", out) == 0
    text = capsys.readouterr().out
    assert "(hf)" in text and "4 x 32 px clips" in text and "per-cube normalised pixels" in text
    assert (out / "synthetic_000.png").is_file() and (out / "synthetic_000.gif").is_file()


def test_norm_pix_predictions_are_shown_de_normalised():
    """A model that predicted the normalised target exactly reconstructs the input exactly."""
    cfg = load_config(None, TINY + ["model.norm_pix_loss=true"])
    model = build_model(cfg).eval()
    video = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    mask = torch.ones(1, 32, dtype=torch.bool)
    mask[0, ::3] = False
    out = model(video, mask)
    exact = dataclasses.replace(out, pred=out.target)
    torch.testing.assert_close(model.reconstruct(video, mask, exact), denormalize(video).clamp(0, 1),
                               atol=1e-4, rtol=0)


def test_errors_are_one_line(ckpt, tmp_path, capsys):
    cfg = load_config(None, TINY)
    clf = export_model(build_classifier("scratch", cfg, num_classes=3), tmp_path / "clf.pth",
                       config=cfg.to_dict())
    for args, words in [((tmp_path / "nope.pth", "synthetic"), "checkpoint not found"),
                        ((clf, "synthetic"), "classify checkpoint without a decoder"),
                        ((ckpt, tmp_path / "missing.mp4"), "no such video"),
                        ((ckpt, "synthetic", "masking.nme=tube"), "masking.nme")]:
        assert reconstruct(*args, "-o", tmp_path / "o") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mgmae reconstruct: error: ") and "\n" not in err and words in err, err


def test_a_list_file_gives_one_clip_per_video(ckpt, tmp_path, capsys):
    from mgmae.data.synthetic import SyntheticVideos
    from mgmae.data.video import write_video

    videos = SyntheticVideos(num_videos=2, num_frames=8, img_size=32, seed=1)
    names = [write_video(tmp_path / f"v{i}.mp4", videos[i].frames) for i in range(2)]
    (tmp_path / "list.txt").write_text("".join(f"{n} 0\n" for n in names))
    out = tmp_path / "out"
    assert reconstruct(ckpt, tmp_path / "list.txt", "--masker", "tube", "-o", out) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["v0_f00002.png", "v1_f00002.png"]
    assert len(re.findall(r"\.gif  loss \d", capsys.readouterr().out)) == 2


def test_flows_that_come_with_the_clips(ckpt, tmp_path, capsys):
    """flow.name=gt on synthetic clips and flow.name=codec on an encoded video mask along those
    flows (no DIS fallback); codec on synthetic clips falls back to DIS and says so."""
    from test_codec_flow import ENCODINGS, translating_frames  # (pytest puts tests/ on the path)

    from mgmae.data.video import write_video

    video = write_video(tmp_path / "t.mp4", translating_frames(24), options=ENCODINGS["b_pyramid"])
    for source, flow in (("synthetic", "gt"), (video, "codec")):
        out = tmp_path / flow
        assert reconstruct(ckpt, source, "--masker", "motion_guided", f"flow.name={flow}",
                           "--clips", "1", "-o", out) == 0
        text = capsys.readouterr().out
        assert "DIS flow" not in text and len(list(out.glob("*.png"))) == 1
    assert reconstruct(ckpt, "synthetic", "--masker", "motion_guided", "flow.name=codec",
                       "--clips", "1", "-o", tmp_path / "x") == 0
    assert "computes DIS flow" in capsys.readouterr().out
