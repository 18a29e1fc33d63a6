"""The one video decoder (OpenCV): capped, native and streamed reads, their metadata, and the cache of them.

No other module opens a video. Each read opens the file once and goes through it in order (no per-frame
seek, which on long-GOP H.264 re-decodes from the keyframe every time); only the frames asked for are
retrieved and converted. `VideoCache` keeps decoded videos of any kind (the judge's frame grids, the
scorers' samples) in one byte-bounded LRU, so whoever asks for a decode already made gets it back.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Iterator, TypeVar

import numpy as np

from vrthinker.errors import VideoError
from vrthinker.lru import ByteLRU

V = TypeVar("V")


@dataclass(frozen=True)
class VideoInfo:
    """What was decoded: `total_frames` is the count actually decodable, `indices` the frames returned."""

    path: str
    total_frames: int
    fps: float
    width: int
    height: int
    indices: tuple[int, ...] = ()
    count_note: str | None = None


@dataclass(frozen=True)
class Decoded:
    """One pass over a file: the converted frames by real index, and what the file said about itself.

    `total_frames` is the decodable count, `header_frames` what the container claimed, `count_note` why they
    differ (None when they agree); `width`/`height` are those of the decoded frames."""

    path: str
    frames: dict[int, np.ndarray]
    total_frames: int
    header_frames: int
    fps: float
    width: int
    height: int
    count_note: str | None = None


@dataclass(frozen=True, eq=False)
class VideoSample:
    """Decoded frames of one video: `frames` RGB uint8 [T, H, W, 3], `indices` their original frame numbers."""

    path: str
    frames: np.ndarray
    indices: tuple[int, ...]
    fps: float
    total_frames: int
    size: tuple[int, int]  # original (width, height)
    notes: tuple[str, ...] = field(default=())

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    @property
    def consecutive(self) -> bool:
        """True when the frames are every frame of the clip's start (no subsampling)."""
        return len(self.indices) < 2 or self.indices[-1] - self.indices[0] == len(self.indices) - 1

    def sampled(self, target_fps: float) -> np.ndarray:
        """Frames taken at about `target_fps`, as VBench's dynamic degree does (every round(fps/target) frame)."""
        step = max(1, round(self.fps / target_fps)) if self.fps > 0 else 1
        return self.frames[::step]

    def uniform(self, n: int) -> np.ndarray:
        """`n` frames spread uniformly over the sample (all of them when there are fewer)."""
        if n >= len(self.frames):
            return self.frames
        idx = np.linspace(0, len(self.frames) - 1, n).round().astype(int)
        return self.frames[idx]


# ----------------------------------------------------------------------------------------------------------
# opening a file


def check_path(path) -> str:
    """`path` as a string; VideoError when it does not exist or is a directory."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoError(p, "file not found")
    if os.path.isdir(p):
        raise VideoError(p, "is a directory, not a video file")
    return p


def _open(cv2, path: str):
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise VideoError(path, "not a decodable video (OpenCV could not open it)")
    return cap


def _sequential(cap, wanted: set[int], convert: Callable[[np.ndarray, int], np.ndarray], got: dict,
                stop_after: int | None = None) -> tuple[int, tuple[int, int] | None]:
    """Read frames in order: grab() every frame, retrieve() and convert only the wanted ones.

    Returns the number of frames grabbed and the (width, height) of the first retrieved frame.
    Stops at the end of the stream, or after frame `stop_after` if given.
    """
    n, size = 0, None
    while cap.grab():
        if n in wanted and n not in got:
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:  # grabbed but not decodable: treat as the end of the video
                break
            size = size or (bgr.shape[1], bgr.shape[0])
            got[n] = convert(bgr, n)
        n += 1
        if stop_after is not None and n > stop_after:
            break
    return n, size


def probe(path) -> VideoInfo:
    """What the container says (header frame count, fps, width, height), nothing decoded. VideoError when
    the file is missing or cannot be opened; the count is the header's and may be wrong (see decode_frames)."""
    import cv2

    path = check_path(path)
    cap = _open(cv2, path)
    try:
        return VideoInfo(path, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS)),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


# ----------------------------------------------------------------------------------------------------------
# chosen frames, in one pass


def decode_frames(path, pick: Callable[[int], Iterable[int]], convert: Callable[[np.ndarray, int], np.ndarray],
                  min_frames: int = 1) -> Decoded:
    """Decode `path` once, keeping convert(BGR frame, index) for the frames `pick(total)` names.

    `total` starts as CAP_PROP_FRAME_COUNT (what the reference uses) and is checked against the frames
    actually decodable; when they differ, the real count wins and a second pass fetches what it needs.
    Raises VideoError for a missing, unreadable or corrupt file, or fewer than `min_frames` frames.
    """
    import cv2

    path = check_path(path)
    cap = _open(cv2, path)
    try:
        header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        got: dict[int, np.ndarray] = {}
        wanted = set(pick(header)) if header > 0 else set()
        n, size = _sequential(cap, wanted, convert, got)
    finally:
        cap.release()
    if n == 0:
        raise VideoError(path, "no decodable frames")
    if n < min_frames:
        raise VideoError(path, f"only {n} decodable frame{'s' if n != 1 else ''}; "
                               f"at least {min_frames} are needed")
    note = None
    total = header
    if n != header:
        note = (f"header frame count {header}, {n} frames decodable: using {n}" if header > 0
                else f"no frame count in the header, {n} frames decodable")
        total = n
        wanted = set(pick(n))
        missing = wanted - got.keys()
        if missing:  # rare: reopen and read again as far as the last missing frame
            cap = _open(cv2, path)
            try:
                _, size2 = _sequential(cap, missing, convert, got, stop_after=max(missing))
            finally:
                cap.release()
            size = size or size2
            if missing - got.keys():
                raise VideoError(path, f"decoding is not repeatable: frames {sorted(missing - got.keys())[:5]}"
                                       " decoded once but not twice")
    if size is not None:
        width, height = size
    frames = {k: got[k] for k in sorted(wanted)}
    return Decoded(path, frames, total, header, fps, width, height, note)


def capped_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) of a frame whose long side is brought down to `max_side` (None: as it is)."""
    if max_side is None or max(width, height) <= max_side:
        return height, width
    s = max_side / max(width, height)
    return max(1, round(height * s)), max(1, round(width * s))


def read_frames(path, max_frames: int | None = None,
                max_side: int | None = None) -> tuple[np.ndarray, VideoInfo]:
    """Decode a video once into RGB uint8 [T, H, W, 3]: native with no caps, capped otherwise.

    `max_frames` keeps at most that many frames, spread uniformly (first and last included);
    `max_side` downscales (cv2.INTER_AREA, aspect kept) so the longer side is at most that.
    Raises VideoError (a video needs at least one decodable frame here).
    """
    import cv2

    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")

    def pick(total: int) -> list[int]:
        if max_frames is None or max_frames >= total:
            return list(range(total))
        return sorted(set(np.linspace(0, total - 1, max_frames).round().astype(int).tolist()))

    def convert(bgr: np.ndarray, _n: int) -> np.ndarray:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        nh, nw = capped_size(w, h, max_side)
        if (nh, nw) != (h, w):
            rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        return rgb

    d = decode_frames(path, pick, convert, 1)
    idx = tuple(d.frames)
    arr = np.stack([d.frames[k] for k in idx])
    return arr, VideoInfo(os.fspath(path), d.total_frames, d.fps, d.width, d.height, idx, d.count_note)


def read_sample(path, max_frames: int | None = None, max_side: int | None = None) -> VideoSample:
    """`read_frames` as a VideoSample, whose notes say when the header count was wrong or frames were sampled."""
    arr, info = read_frames(path, max_frames=max_frames, max_side=max_side)
    notes = [info.count_note] if info.count_note else []
    if len(arr) < info.total_frames:
        notes.append(f"{len(arr)} of {info.total_frames} frames used (sampled uniformly)")
    return VideoSample(os.fspath(path), arr, tuple(int(i) for i in info.indices), float(info.fps or 0.0),
                       int(info.total_frames), (int(info.width), int(info.height)), tuple(notes))


# ----------------------------------------------------------------------------------------------------------
# every frame, streamed


def stream_frames(path, batch_size: int) -> Iterator[np.ndarray]:
    """Every decodable frame of `path` at native size, RGB uint8, in batches of `batch_size` (the last may
    be shorter), as VBench's load_video reads them (read() until it fails). VideoError when the file cannot
    be opened or yields no frame; memory: one batch."""
    import cv2

    path = str(path)
    cap = _open(cv2, path)
    n, batch = 0, []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            batch.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            n += 1
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
    finally:
        cap.release()
    if n == 0:
        raise VideoError(path, "no decodable frames")
    if batch:
        yield np.stack(batch)


# ----------------------------------------------------------------------------------------------------------
# the cache of decoded videos


def file_key(path) -> tuple:
    """(real path, size, mtime in ns) of `path`: a decode is reused only while the file is unchanged.
    Size and mtime are None when the file cannot be stat'ed (the decoder then says what is wrong)."""
    p = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError:
        return p, None, None
    return p, st.st_size, st.st_mtime_ns


class VideoCache:
    """Decoded videos of this process, by file and by what was decoded, least recently used dropped first
    once they hold more than `max_mb` (the most recent one is always kept).

    One instance can serve the judge (frame grids, see vrthinker.media.frame_grid.GridCache) and the scorers
    (samples) at once: a decode anyone already made is handed back, not made again. `decodes` counts the
    decodes this cache made. Failed sample reads are remembered, so a bad file is tried once.
    """

    def __init__(self, max_mb: float = 1024):
        self.lru: ByteLRU[tuple, object] = ByteLRU(max_mb * 2**20)
        self._errors: dict[tuple, VideoError] = {}
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> float:
        return self.lru.max_bytes

    @property
    def decodes(self) -> int:
        return self.lru.loads

    @property
    def nbytes(self) -> int:
        return self.lru.nbytes

    def cached(self, path, what: Hashable, decode: Callable[[str], V], remember_errors: bool = False) -> V:
        """`decode(path)` for this file and `what` (a hashable naming the kind of decode and its settings),
        made once while the file is unchanged and the cache holds it. With `remember_errors`, a VideoError
        it raised is raised again for the same key without decoding."""
        p = os.fspath(path)
        key = (*file_key(p), what)
        if remember_errors:
            with self._lock:
                if key in self._errors:
                    raise self._errors[key]
        try:
            return self.lru.get_or_load(key, lambda: decode(p))
        except VideoError as e:
            if remember_errors:
                with self._lock:
                    self._errors[key] = e
            raise

    def sample(self, path, max_frames: int | None = None, max_side: int | None = None) -> VideoSample:
        """`read_sample(path, max_frames, max_side)`, cached; a failure is remembered for the file."""
        return self.cached(path, ("sample", max_frames, max_side),
                           lambda p: read_sample(p, max_frames, max_side), remember_errors=True)
