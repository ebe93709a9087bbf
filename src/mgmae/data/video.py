"""Video readers: one interface over PyAV (default), torchcodec, decord and folders of frame images.

>>> with open_video("clip.mp4") as v:                     # doctest: +SKIP
...     v.num_frames, v.fps, v.size, v.duration           # size is (height, width)
...     frames = v.get_frames([0, 2, 4])                  # uint8 (3, H, W, 3), RGB

Every failure to read a video (missing file, not a video, no video stream, no frames, a stream
that ends before a requested frame, a missing image in a frame folder) raises :class:`VideoError`
(a ``RuntimeError``) whose message starts with the offending path, so a data loader can skip the
file and report it. A stream that ends early raises the subclass :class:`TruncatedVideoError`,
which also tells how many frames *are* decodable (``available``), and the reader lowers its
``num_frames`` to that count, so the caller can sample again within the real length.

Frame indices are 0-based positions in presentation order. The PyAV reader seeks (to the keyframe
before the first requested frame) only when that saves work and the stream looks constant-frame-
rate, so a clip from the end of a long video decodes a GOP or two instead of the whole file; the
frames it returns are pixel-identical to decoding everything and picking (tested).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from mgmae.errors import MgmaeError

__all__ = ["VideoError", "TruncatedVideoError", "VideoReader", "PyAVReader", "FrameFolderReader",
           "TorchCodecReader", "DecordReader", "open_video", "write_video", "BACKENDS", "VIDEO_EXTENSIONS",
           "IMAGE_EXTENSIONS"]

BACKENDS = ("pyav", "torchcodec", "decord", "frames")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".3gp", ".ogv", ".wmv", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoError(MgmaeError, RuntimeError):
    """A video (file or frame folder) could not be read. ``path`` names it, ``reason`` says why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # picklable, so it survives the trip out of a DataLoader worker
        return type(self), (self.path, self.reason)


class TruncatedVideoError(VideoError):
    """The stream ended (or broke) before a requested frame; ``available`` frames decode."""

    def __init__(self, path, reason: str, available: int = 0):
        super().__init__(path, reason)
        self.available = int(available)

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.available)


class VideoReader:
    """Common interface. Subclasses set ``path``, ``num_frames``, ``fps``, ``size`` and implement
    :meth:`_read` for sorted unique in-range indices."""

    path: str
    num_frames: int
    fps: float | None  # None where unknown (frame folders without a given fps)
    size: tuple[int, int]  # (height, width)

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def duration(self) -> float | None:
        """Seconds (``num_frames / fps`` unless the container says otherwise); None if unknown."""
        return self.num_frames / self.fps if self.fps else None

    def __len__(self) -> int:
        return self.num_frames

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as ``uint8 (len(indices), H, W, 3)`` RGB."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.empty((0, *self.size, 3), np.uint8)
        if idx.min() < 0:
            raise IndexError(f"{self.path}: negative frame index {int(idx.min())}")
        if idx.max() >= self.num_frames:
            raise IndexError(f"{self.path}: frame index {int(idx.max())} out of range "
                             f"(the video has {self.num_frames} frames)")
        uniq, inverse = np.unique(idx, return_inverse=True)
        frames = self._read([int(i) for i in uniq])  # [U, H, W, 3]
        return frames[inverse]

    def _read(self, indices: list[int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({getattr(self, 'path', '?')!r}, num_frames="
                f"{getattr(self, 'num_frames', None)}, fps={getattr(self, 'fps', None)}, "
                f"size={getattr(self, 'size', None)})")


# ----------------------------------------------------------------------------------------- PyAV
class PyAVReader(VideoReader):
    """PyAV (FFmpeg) decoder.

    ``threads``: decoder threads per video (1 suits DataLoader workers, 0 lets FFmpeg choose);
    ``thread_type``: ``"AUTO"``, ``"FRAME"``, ``"SLICE"`` or ``"NONE"``. ``count``: how to count
    frames when the stream has no frame count (WebM/MKV, e.g. Something-Something V2):
    ``"demux"`` counts packets (reads the file, decodes nothing), ``"decode"`` decodes every frame
    (exact, slower). ``seek_threshold``: seek only if the first requested frame is at least this
    far into the video. ``skip_unwanted``: do not decode unwanted frames that nothing references
    (before the clip and between its strided frames; pixel-identical, ~1/3 less decoding on
    x264 streams). ``export_mvs``: also collect the codec's motion vectors of the decoded frames
    from the first to the last requested one (skipping stays on: a skipped frame's motion is
    filled in from its neighbours); after each read, :attr:`motion` holds them as a
    :class:`mgmae.flow.codec.CodecMotion` (``flow.name=codec``).
    """

    def __init__(self, path, *, threads: int = 1, thread_type: str = "AUTO", count: str = "demux",
                 seek_threshold: int = 16, skip_unwanted: bool = True, export_mvs: bool = False):
        import av

        self.path = str(path)
        self._container = None
        if count not in ("demux", "decode"):
            raise ValueError(f"count must be 'demux' or 'decode', got {count!r}")
        if not os.path.isfile(self.path):
            raise VideoError(self.path, "file not found" if not os.path.exists(self.path)
                             else "not a regular file")
        if os.path.getsize(self.path) == 0:
            raise VideoError(self.path, "empty file (0 bytes)")
        self.threads, self.thread_type, self.count = threads, thread_type, count
        self.seek_threshold = seek_threshold
        self.skip_unwanted = skip_unwanted
        self.export_mvs = export_mvs
        self.motion = None  # CodecMotion of the last read (export_mvs)
        self.decoded_frames = 0  # frames the decoder produced (all reads; for tests and tuning)
        self._can_seek = False
        self._fresh = True  # the demuxer/decoder is at the start of the file
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoError(self.path, f"cannot open: {_reason(e)}") from None
        try:
            self._setup()
        except VideoError:
            self.close()
            raise
        except (av.FFmpegError, OSError, ValueError) as e:
            self.close()
            raise VideoError(self.path, f"cannot read stream: {_reason(e)}") from None

    def _setup(self) -> None:
        c = self._container
        if not c.streams.video:
            raise VideoError(self.path, "no video stream")
        fmt = c.format.name or ""
        if fmt.endswith("_pipe") or fmt in ("image2", "image2pipe"):  # png_pipe, jpeg_pipe, ...
            kind = fmt.removesuffix("_pipe").upper() if fmt.endswith("_pipe") else "image"
            raise VideoError(self.path, f"a single {kind} image, not a video (FFmpeg reads it as the "
                                        f"{fmt} format); a frame folder is a directory of images")
        s = self._stream = c.streams.video[0]
        self._configure(s)
        rate = s.average_rate or s.guessed_rate or s.base_rate
        self.fps = float(rate) if rate else None
        self._rate = Fraction(rate) if rate else None
        self._tb = Fraction(s.time_base) if s.time_base else None
        self._start = s.start_time if s.start_time is not None else 0
        if s.duration and self._tb:
            self._duration = float(s.duration * self._tb)
        elif c.duration:
            self._duration = c.duration / 1e6
        else:
            self._duration = None
        h, w = s.codec_context.height, s.codec_context.width
        self.frames_from_metadata = bool(s.frames and s.frames > 0)
        if self.frames_from_metadata:
            self.num_frames = int(s.frames)
        else:
            self.num_frames = self._count_frames()
        self.declared_frames = self.num_frames  # before any truncation is found
        if self.num_frames <= 0:
            raise VideoError(self.path, "no frames in the video stream")
        if not (h and w):
            h, w = self._read([0])[0].shape[:2]
        self.size = (int(h), int(w))
        # Seeking maps a frame index to a timestamp, which is exact only at a constant frame rate:
        # allow it when the stream's duration agrees with num_frames / fps.
        self._can_seek = bool(self._rate and self._tb and self._duration
                              and abs(self._duration * self.fps - self.num_frames) <= 2)

    @property
    def duration(self) -> float | None:
        return self._duration if self._duration else super().duration

    def _count_frames(self) -> int:
        import av

        c, s = self._container, self._stream
        n = 0
        self._fresh = False
        try:
            if self.count == "demux":
                for packet in c.demux(s):
                    if packet.size:
                        n += 1
            else:
                for _ in c.decode(s):
                    n += 1
        except av.FFmpegError:
            pass  # broken tail: count what was readable
        self._rewind()
        return n

    def _rewind(self) -> None:
        """Back to the start; re-open where the format cannot seek."""
        import av

        if self._fresh:
            return
        self._fresh = True
        try:
            self._container.seek(min(self._start, 0), backward=True, stream=self._stream)
        except av.FFmpegError:
            self._container.close()
            self._container = av.open(self.path, metadata_errors="ignore")
            self._stream = self._container.streams.video[0]
            self._configure(self._stream)

    def _configure(self, stream) -> None:
        stream.thread_type = self.thread_type
        stream.codec_context.thread_count = self.threads
        self._mv_packets = self._mv_frames = None
        if self.export_mvs:  # FFmpeg attaches each frame's vectors as side data
            from mgmae.flow.codec import motion_vectors, nal_length_size, packet_is_reference

            stream.codec_context.options = {"flags2": "+export_mvs"}
            self._nal_len = nal_length_size(stream.codec_context)
            self._is_reference, self._motion_vectors = packet_is_reference, motion_vectors  # (per packet / frame)

    def _read(self, indices: list[int]) -> np.ndarray:
        import av

        out: dict[int, np.ndarray] = {}
        try:
            got = None
            if self._can_seek and indices[0] >= self.seek_threshold:
                got = self._read_seeking(indices, out)
            elif self._can_seek:  # from the start, placing frames by timestamp (allows skipping)
                self._rewind()
                self._fresh = False
                got = self._decode(indices, out, by_pts=True)
            if got is None:  # plain sequential decoding from the start, every frame
                out.clear()
                self._rewind()
                self._fresh = False
                self._decode(indices, out, by_pts=False)
        except TruncatedVideoError:
            raise
        except av.FFmpegError as e:
            raise VideoError(self.path, f"decoding failed: {_reason(e)}") from None
        if self.export_mvs:
            self.motion = self._build_motion()
        return np.stack([out[i] for i in indices])

    def _read_seeking(self, indices: list[int], out: dict):
        target = indices[0]
        for attempt in range(3):
            self._fresh = False
            pts = self._start + int((target / self._rate) / self._tb)
            self._container.seek(pts, backward=True, stream=self._stream)
            try:
                got = self._decode(indices, out, by_pts=True)
            except VideoError:  # broken after the seek point: find the real end from the start
                return None
            if got is not None or self._landed is None:
                return got
            # landed on a keyframe after the first wanted frame (the demuxer seeks by decode
            # timestamps, which run behind presentation timestamps when there are B-frames)
            target = min(target, self._landed) - 4 * 2**attempt
            if target < 0:
                return None
        return None

    def _pts_index(self, pts) -> int | None:
        if pts is None or not self._can_seek:
            return None
        return int(round((pts - self._start) * self._tb * self._rate))

    def _index_of(self, frame) -> int | None:
        return self._pts_index(frame.pts)

    def _frames(self, skip_unwanted: set | None):
        """Decoded frames in presentation order from where the demuxer stands. With
        ``skip_unwanted`` (a set of wanted indices), the packet of every other frame is decoded
        with FFmpeg's ``skip_frame=NONREF``: a frame that no other frame references is then not
        decoded at all, which is exact (nothing depends on it) and saves a third of the work on
        typical x264 streams, before the clip and between the strided frames of the clip."""
        cc = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if self._mv_packets is not None and packet.size:  # export_mvs: decode order, reference?
                self._mv_packets.append((packet.pts, self._is_reference(bytes(packet), cc.name,
                                                                        self._nal_len)))
            if skip_unwanted is not None:
                pidx = self._pts_index(packet.pts)
                cc.skip_frame = "NONREF" if pidx is not None and pidx not in skip_unwanted else "DEFAULT"
            for frame in packet.decode():
                self.decoded_frames += 1
                yield frame

    def _decode(self, indices: list[int], out: dict, by_pts: bool):
        """Decode forward from where the demuxer stands, filling ``out[i]`` (RGB) for the wanted
        ``indices`` (sorted, unique). ``by_pts``: place frames by timestamp (after a seek), and
        skip decoding unwanted unreferenced frames (``skip_unwanted``). Returns True, or None when
        the caller must decode from the start, every frame (a seek overshot, a timestamp is
        missing, or a wanted frame did not appear while skipping)."""
        import av

        wanted = indices
        self._landed = None  # index of the first frame after a seek that overshot
        k = 0  # next wanted position
        seq = -1
        prev = None  # the previous decoded frame
        last_seen = -1
        skipping = by_pts and self.skip_unwanted
        if self.export_mvs:  # (the skipped frames' motion is filled in from their neighbours)
            self._mv_packets, self._mv_frames = [], []
        frames = self._frames(set(wanted) if skipping else None)
        try:
            for frame in frames:
                seq += 1
                idx = self._index_of(frame) if by_pts else seq
                if idx is None:  # no timestamp: cannot place the frame
                    return None
                if by_pts and prev is None and idx > wanted[0]:
                    self._landed = idx
                    return None
                if by_pts and idx <= last_seen:  # duplicate timestamp: keep the first
                    continue
                last_seen = idx
                if self._mv_frames is not None:
                    self._record_motion(frame, idx, wanted)
                while k < len(wanted) and wanted[k] <= idx:
                    if wanted[k] != idx:  # a gap: no frame has this index
                        if skipping:
                            return None  # (a codec that skipped more than asked) decode all
                        src = frame if prev is None else prev  # (dropped frame) the one before
                    else:
                        src = frame
                    out[wanted[k]] = _rgb(src, getattr(self, "size", None))
                    k += 1
                if k == len(wanted):
                    return True
                prev = frame
        except av.FFmpegError as e:
            available = last_seen + 1
            if available <= 0:
                raise VideoError(self.path, f"no decodable frames ({_reason(e)})") from None
            self.num_frames = min(self.num_frames, available)
            raise TruncatedVideoError(
                self.path, f"truncated: the stream breaks after frame {last_seen} ({_reason(e)}); "
                f"frame {wanted[k]} was requested (the container declares {self.declared_frames})",
                available) from None
        finally:
            frames.close()
            self._stream.codec_context.skip_frame = "DEFAULT"
        available = last_seen + 1
        if available <= 0:
            raise VideoError(self.path, "no decodable frames")
        self.num_frames = min(self.num_frames, available)
        raise TruncatedVideoError(
            self.path, f"truncated: the stream ends after {available} frames but frame {wanted[k]} "
            f"was requested (the container declares {self.declared_frames})", available)

    def _record_motion(self, frame, idx: int, wanted: list[int]) -> None:
        ptype = _PICT_TYPES.get(int(frame.pict_type), "?")
        vectors = self._motion_vectors(frame) if wanted[0] <= idx <= wanted[-1] else None
        self._mv_frames.append((frame.pts, idx, ptype, vectors))

    def _build_motion(self):
        """The :class:`~mgmae.flow.codec.CodecMotion` of the last read: output frames are matched
        to their packets by timestamp (decode order, reference flag); packets decoded but not yet
        shown (the future references of the last B frames) follow the last shown frame in
        timestamp order."""
        from mgmae.flow.codec import CodecMotion, FrameRecord

        packets = {}
        for order, (pts, is_ref) in enumerate(self._mv_packets or []):
            if pts is not None:
                packets.setdefault(pts, (order, is_ref))
        frames = self._mv_frames or []
        records, shown = [], set()
        for pts, idx, ptype, vectors in frames:
            order, is_ref = packets.get(pts, (None, None))
            shown.add(pts)
            records.append(FrameRecord(idx, order if order is not None else -1, is_ref, ptype, vectors))
        if frames and sum(r.decode >= 0 for r in records) < len(records) / 2:
            # no usable timestamps: assume decode order = display order (exact without B frames)
            for r in records:
                r.decode = r.index
        elif frames:
            last_pts = max((p for p, *_ in frames if p is not None), default=None)
            last_idx = max(r.index for r in records)
            later = sorted(p for p in packets if p not in shown and last_pts is not None and p > last_pts)
            for rank, pts in enumerate(later, 1):
                order, is_ref = packets[pts]
                records.append(FrameRecord(last_idx + rank, order, True if is_ref is None else is_ref, "?"))
        self._mv_packets = self._mv_frames = None
        return CodecMotion(records, self.size, self.path)

    def scan(self) -> tuple[int, str | None]:
        """Decode every frame (no colour conversion): ``(frames decoded, error or None)``. For
        integrity checks; also corrects ``num_frames`` to the decodable count."""
        import av

        self._rewind()
        self._fresh = False
        n, err = 0, None
        try:
            for _ in self._container.decode(self._stream):
                n += 1
        except av.FFmpegError as e:
            err = _reason(e)
        if n:
            self.num_frames = n
        return n, err

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None


_PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}  # FFmpeg's AVPictureType


def _rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB with one swscale thread: ``frame.to_ndarray(format="rgb24")`` lets
    swscale set up its own thread pool for every frame, which costs several times more (same
    pixels)."""
    kw = {}
    if size is not None and (frame.height, frame.width) != size:  # resolution change mid-stream
        kw = {"width": size[1], "height": size[0]}
    return frame.reformat(format="rgb24", threads=1, **kw).to_ndarray()


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"{type(e).__name__}: {msg}" if type(e).__name__ not in msg else msg


# ---------------------------------------------------------------------------------- frame folders
def _template_regex(template: str) -> re.Pattern:
    parts = list(string.Formatter().parse(template))
    fields = [p for p in parts if p[1] is not None]
    if len(fields) != 1:
        raise ValueError(f"frame template must have exactly one {{}} field, got {template!r}")
    regex = ""
    for literal, field, _spec, _conv in parts:
        regex += re.escape(literal)
        if field is not None:
            regex += r"(\d+)"
    return re.compile(f"^{regex}$")


class FrameFolderReader(VideoReader):
    """A folder of frame images named by ``template`` (``img_{:05d}.jpg``: ``img_00001.jpg`` is frame
    0 when ``start_index=1``, the SSv2 / VideoMAE convention). ``num_frames``: trust this count (from
    the list file) instead of listing the folder. ``decoder``: ``"cv2"`` (faster) or ``"pil"``."""

    def __init__(self, path, *, template: str = "img_{:05d}.jpg", start_index: int = 1,
                 num_frames: int | None = None, fps: float | None = None, decoder: str = "cv2"):
        self.path = str(path)
        self.template, self.start_index, self.fps = template, start_index, fps
        if decoder not in ("cv2", "pil"):
            raise ValueError(f"decoder must be 'cv2' or 'pil', got {decoder!r}")
        self.decoder = decoder
        if not os.path.isdir(self.path):
            raise VideoError(self.path, "frame folder not found" if not os.path.exists(self.path)
                             else "not a directory")
        if num_frames is None:
            num_frames = self._count()
        self.num_frames = int(num_frames)
        if self.num_frames <= 0:
            names = sorted(os.listdir(self.path))[:3]
            raise VideoError(self.path, f"no frames named like {template!r} "
                             f"(folder holds {names if names else 'nothing'})")
        self.size = self._read([0])[0].shape[:2]

    def _count(self) -> int:
        rx = _template_regex(self.template)
        top = -1
        with os.scandir(self.path) as it:
            for e in it:
                m = rx.match(e.name)
                if m:
                    top = max(top, int(m.group(1)))
        return top - self.start_index + 1 if top >= 0 else 0

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, self.template.format(index + self.start_index))

    def _load(self, file: str) -> np.ndarray:
        if not os.path.isfile(file):
            raise VideoError(self.path, f"missing frame {file}")
        try:
            if self.decoder == "cv2":
                import cv2

                img = cv2.imdecode(np.fromfile(file, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise ValueError("not a decodable image")
                return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            from PIL import Image

            with Image.open(file) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise VideoError(self.path, f"cannot decode frame {file}: {e}") from None

    def _read(self, indices: list[int]) -> np.ndarray:
        frames = [self._load(self.frame_path(i)) for i in indices]
        shape = frames[0].shape
        for i, f in zip(indices, frames):
            if f.shape != shape:
                raise VideoError(self.path, f"frame {self.frame_path(i)} is {f.shape[1]}x{f.shape[0]}, "
                                 f"others are {shape[1]}x{shape[0]}")
        return np.stack(frames)


# -------------------------------------------------------------------------- optional backends
class TorchCodecReader(VideoReader):
    """torchcodec's ``VideoDecoder`` (only if torchcodec is installed)."""

    def __init__(self, path, *, threads: int = 1):
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError as e:
            raise ImportError("backend='torchcodec' needs the torchcodec package matching your torch "
                              "(pip install torchcodec), or use backend='pyav'") from e
        self.path = str(path)
        self._dec = None
        if not os.path.isfile(self.path):
            raise VideoError(self.path, "file not found")
        try:
            self._dec = VideoDecoder(self.path, dimension_order="NHWC", num_ffmpeg_threads=threads)
            md = self._dec.metadata
        except Exception as e:  # torchcodec raises RuntimeError/ValueError for bad files
            raise VideoError(self.path, f"cannot open: {e}") from None
        self.num_frames = int(md.num_frames or 0)
        if self.num_frames <= 0:
            raise VideoError(self.path, "no frames in the video stream")
        self.fps = float(md.average_fps) if md.average_fps else None
        self.size = (int(md.height), int(md.width))
        self._duration = md.duration_seconds

    @property
    def duration(self):
        return self._duration or super().duration

    def _read(self, indices):
        try:
            return self._dec.get_frames_at(indices=indices).data.numpy()
        except (RuntimeError, IndexError, ValueError) as e:
            raise VideoError(self.path, f"decoding failed: {e}") from None

    def close(self):
        self._dec = None


class DecordReader(VideoReader):
    """decord's ``VideoReader`` (only if decord is installed)."""

    def __init__(self, path, *, threads: int = 1):
        try:
            import decord
        except ImportError as e:
            raise ImportError("backend='decord' needs the decord package (pip install decord), "
                              "or use backend='pyav'") from e
        self.path = str(path)
        self._vr = None
        if not os.path.isfile(self.path):
            raise VideoError(self.path, "file not found")
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=threads)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps()) or None
        except Exception as e:  # decord raises DECORDError (a RuntimeError) for bad files
            raise VideoError(self.path, f"cannot open: {e}") from None
        if self.num_frames <= 0:
            raise VideoError(self.path, "no frames in the video stream")
        self.size = tuple(self._vr[0].shape[:2])

    def _read(self, indices):
        try:
            return self._vr.get_batch(indices).asnumpy()
        except Exception as e:
            raise VideoError(self.path, f"decoding failed: {e}") from None

    def close(self):
        self._vr = None


def write_video(path, frames, *, fps: int = 25, codec: str = "libx264", options: dict | None = None,
                pix_fmt: str = "yuv420p") -> str:
    """Encode ``uint8 (T, H, W, 3)`` RGB frames to ``path`` with PyAV (libx264 ships in its wheel).
    ``options``: encoder options, e.g. ``{"bframes": "3", "x264-params": "ref=1"}``. Returns the
    path. For test videos and the codec-flow measurements (bench/codec_flow.py)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_video: expected uint8 frames (T, H, W, 3), got {frames.dtype} "
                         f"{frames.shape}")
    with av.open(os.fspath(path), "w") as c:
        s = c.add_stream(codec, rate=fps, options=dict(options or {}))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return os.fspath(path)


def open_video(path, backend: str = "pyav", *, threads: int = 1, thread_type: str = "AUTO",
               template: str = "img_{:05d}.jpg", start_index: int = 1, num_frames: int | None = None,
               fps: float | None = None, count: str = "demux", decoder: str = "cv2",
               export_mvs: bool = False) -> VideoReader:
    """Open a video file, or a folder of frames (any backend: a directory is always a frame folder).

    ``num_frames``, ``fps`` and ``decoder`` (``"cv2"`` or ``"pil"``) are used by frame folders
    only (a file knows its own); ``count`` by PyAV when the stream has no frame count;
    ``export_mvs`` by PyAV (the codec's motion vectors, see :class:`PyAVReader`). Raises
    :class:`VideoError` for anything unreadable; ``ValueError`` for an unknown backend and
    ``ImportError`` for an optional backend that is not installed."""
    path = os.fspath(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "frames" or os.path.isdir(path):
        return FrameFolderReader(path, template=template, start_index=start_index,
                                 num_frames=num_frames, fps=fps, decoder=decoder)
    if backend == "pyav":
        return PyAVReader(path, threads=threads, thread_type=thread_type, count=count,
                          export_mvs=export_mvs)
    if backend == "torchcodec":
        return TorchCodecReader(path, threads=threads)
    return DecordReader(path, threads=threads)
