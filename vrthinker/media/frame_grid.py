"""The judge's view of a video: a grid of frame indices, each frame RGB and resized as the reference shows it.

Decoding is vrthinker.media.decode's (one sequential pass per video); this module picks the grid's real frames,
converts them (PIL resize, on first use) and keeps grids in the shared cache of decoded videos.
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import numpy as np
from PIL import Image

from vrthinker.media.decode import VideoCache, check_path, decode_frames

GRID_SIZE = 128
IMAGE_SIDE = 448


def grid_to_real(index: int, total: int, grid_size: int = GRID_SIZE) -> int:
    """Real frame shown at grid `index`: min(int(index / grid_size * total), total - 1), as the reference."""
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    return min(int(index / grid_size * total), total - 1)


def sample_indices(total: int, grid_size: int = GRID_SIZE, sampling: str = "floor") -> list[int]:
    """Real frame at each grid index: "floor" is `grid_to_real`; "linspace" spreads the grid evenly from the
    first to the last frame, rounded (qwen_vl_utils' video sampling)."""
    if sampling == "floor":
        return [grid_to_real(i, total, grid_size) for i in range(grid_size)]
    if sampling == "linspace":
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        return np.linspace(0, total - 1, grid_size).round().astype(int).tolist()
    raise ValueError(f"sampling must be 'floor' or 'linspace', not {sampling!r}")


def fit_size(height: int, width: int, pixels: tuple[int, int]) -> tuple[int, int]:
    """(height, width) with the aspect kept, sides multiples of 28, area within `pixels` = (min, max):
    qwen_vl_utils' smart_resize, as its fetch_image sizes a frame."""
    return smart_resize(height, width, factor=28, min_pixels=pixels[0], max_pixels=pixels[1])


MAX_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """qwen_vl_utils' smart_resize, line for line (tests compare the two): vendored so that the light core (no
    torch, no torchvision, which qwen_vl_utils imports) sizes frames exactly as the checkpoint saw them."""
    if max_pixels < min_pixels:
        raise ValueError("The max_pixels of image must be greater than or equal to min_pixels.")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {max(height, width) / min(height, width)}"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# ----------------------------------------------------------------------------------------------------------
# the 128-index grid the judge sees


def _square(bgr: np.ndarray, side: int) -> np.ndarray:
    """BGR frame -> RGB side x side, with the reference's pixels (PIL default resample).

    The resize treats channels independently, so resizing the BGR frame and then reversing the
    channels gives the same bytes as the reference's cvtColor-then-resize, one full-size copy cheaper.
    """
    out = np.ascontiguousarray(np.asarray(Image.fromarray(bgr).resize((side, side)))[..., ::-1])
    out.setflags(write=False)
    return out


def _fit(bgr: np.ndarray, pixels: tuple[int, int]) -> np.ndarray:
    """BGR frame -> RGB resized as fetch_image does (aspect kept, PIL default resample); see `fit_size`."""
    h, w = fit_size(bgr.shape[0], bgr.shape[1], pixels)
    out = np.ascontiguousarray(np.asarray(Image.fromarray(bgr).resize((w, h)))[..., ::-1])
    out.setflags(write=False)
    return out


def _convert(bgr: np.ndarray, side: int, pixels: tuple[int, int] | None) -> np.ndarray:
    return _square(bgr, side) if pixels is None else _fit(bgr, pixels)


RAW_BUDGET_MB = 512  # per video: decoded frames kept unconverted until asked for (720p: ~190 frames)


class FrameGrid:
    """One video seen through a grid of `grid_size` indices, each a `side` x `side` RGB frame.

    Decoded once; a frame is converted (RGB, resized) the first time it is asked for, because the
    resize costs more than decoding and a conversation looks at about half of the grid. Frames past the
    raw-memory budget are converted while decoding. What a grid index shows never changes.
    `total_frames` is the frame count the grid maps onto (the decodable count); `header_frames` is what
    the container claimed and `count_note` says why they differ (None when they agree). With `pixels`
    = (min, max) frames keep their aspect ratio instead (see `fit_size`); `sampling` picks how grid
    indices map onto real frames (see `sample_indices`).
    """

    __slots__ = ("path", "grid_size", "side", "total_frames", "header_frames", "fps", "width", "height",
                 "count_note", "_rows", "_real", "_frames", "_lock", "pixels", "sampling")

    def __init__(self, path: str, grid_size: int, side: int, total_frames: int, fps: float, width: int,
                 height: int, frames: dict[int, np.ndarray], header_frames: int | None = None,
                 count_note: str | None = None, pixels: tuple[int, int] | None = None,
                 sampling: str = "floor"):
        """`frames` maps real frame index -> either a converted [side, side, 3] RGB frame or raw BGR."""
        real = sample_indices(total_frames, grid_size, sampling)
        order = sorted(set(real))
        row_of = {r: k for k, r in enumerate(order)}
        real_a = np.asarray(real, np.int64)
        rows = np.asarray([row_of[r] for r in real], np.int64)
        real_a.setflags(write=False)
        rows.setflags(write=False)
        for name, value in (("path", str(path)), ("grid_size", int(grid_size)), ("side", int(side)),
                            ("total_frames", int(total_frames)), ("fps", float(fps)), ("width", int(width)),
                            ("height", int(height)), ("count_note", count_note), ("_rows", rows),
                            ("header_frames", int(total_frames if header_frames is None else header_frames)),
                            ("_real", real_a), ("_frames", [frames[r] for r in order]),
                            ("_lock", threading.Lock()), ("pixels", None if pixels is None else tuple(pixels)),
                            ("sampling", sampling)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"FrameGrid is immutable (tried to set {name!r})")

    def __delattr__(self, name):
        raise AttributeError(f"FrameGrid is immutable (tried to delete {name!r})")

    def __len__(self) -> int:
        return self.grid_size

    def __repr__(self) -> str:
        return (f"FrameGrid({self.path!r}, total_frames={self.total_frames}, grid_size={self.grid_size}, "
                f"side={self.side}, distinct={len(self._frames)})")

    def _check(self, i) -> int:
        try:
            i = operator.index(i)
        except TypeError:
            raise IndexError(f"grid index must be an integer, got {i!r}") from None
        if not 0 <= i < self.grid_size:
            raise IndexError(f"grid index {i} out of range 0..{self.grid_size - 1}")
        return i

    def real_index(self, i: int) -> int:
        """The real frame number shown at grid index `i`."""
        return int(self._real[self._check(i)])

    def array(self, i: int) -> np.ndarray:
        """The RGB frame at grid index `i`, uint8 [side, side, 3] or aspect-kept with `pixels` (read-only)."""
        row = int(self._rows[self._check(i)])
        frame = self._frames[row]
        if frame.flags.writeable:  # still raw BGR (converted frames are read-only)
            with self._lock:
                frame = self._frames[row]
                if frame.flags.writeable:
                    frame = self._frames[row] = _convert(frame, self.side, self.pixels)
        return frame

    def image(self, i: int) -> Image.Image:
        """The RGB frame at grid index `i` as a new PIL image."""
        return Image.fromarray(self.array(i).copy(), "RGB")

    def sha256(self, i: int) -> str:
        """Hex sha256 of the RGB bytes of `array(i)` (identifies what the model was shown)."""
        return hashlib.sha256(np.ascontiguousarray(self.array(i)).tobytes()).hexdigest()

    @property
    def nbytes(self) -> int:
        """Memory held by the frames now (raw ones shrink once converted)."""
        return sum(f.nbytes for f in self._frames)

    @property
    def distinct_frames(self) -> int:
        """How many different real frames the grid holds (fewer than grid_size for short videos)."""
        return len(self._frames)


def load_grid(path, grid_size: int = GRID_SIZE, side: int = IMAGE_SIDE, min_frames: int = 4,
              eager: Iterable[int] = (), raw_budget_mb: float = RAW_BUDGET_MB,
              pixels: tuple[int, int] | None = None, sampling: str = "floor") -> FrameGrid:
    """Decode `path` once and keep the frames its `grid_size`-index grid needs.

    Grid indices in `eager` (e.g. the initial ones every conversation shows) are converted while
    decoding, as is every frame beyond `raw_budget_mb` of unconverted frames; the rest on first use.
    Raises VideoError for a missing, unreadable or corrupt file, or fewer than `min_frames` frames.
    `pixels` and `sampling`: see FrameGrid.
    """
    if grid_size < 1 or side < 1:
        raise ValueError(f"grid_size and side must be >= 1, got {grid_size}, {side}")
    eager = tuple(eager)
    state = {"eager": set(), "raw_bytes": 0}

    def pick(total: int) -> set[int]:
        real = sample_indices(total, grid_size, sampling)
        state["eager"] = {real[i] for i in eager}
        return set(real)

    def keep(bgr: np.ndarray, n: int) -> np.ndarray:
        if n in state["eager"] or state["raw_bytes"] + bgr.nbytes > raw_budget_mb * 2**20:
            return _convert(bgr, side, pixels)
        state["raw_bytes"] += bgr.nbytes
        return bgr

    d = decode_frames(path, pick, keep, max(1, min_frames))
    return FrameGrid(os.fspath(path), grid_size, side, d.total_frames, d.fps, d.width, d.height, d.frames,
                     d.header_frames, d.count_note, pixels, sampling)


def load_pair(path1, path2, cache: GridCache | None = None, **kw) -> tuple[FrameGrid, FrameGrid]:
    """`load_grid` both videos of a pair at once, on two threads (the decoder and PIL release the GIL).

    With a `cache`, a video already decoded in this process (same file, size and mtime) is reused.
    """
    load = cache.load if cache is not None else load_grid
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="frames") as pool:
        f1 = pool.submit(load, path1, **kw)
        f2 = pool.submit(load, path2, **kw)
        return f1.result(), f2.result()


_POOL: ThreadPoolExecutor | None = None


def prefetch(requests: Iterable[tuple[FrameGrid, Iterable[int]]]) -> None:
    """Convert the frames a turn is about to show, in parallel (PIL's resize releases the GIL)."""
    global _POOL
    jobs = [(g, i) for g, idx in requests for i in idx]
    if len(jobs) < 2:
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="resize")
    list(_POOL.map(lambda job: job[0].array(job[1]), jobs))


class GridCache(VideoCache):
    """Decoded grids kept across comparisons (a video in many pairs is decoded once), least recently
    used first out once they hold more than `max_mb`. A VideoCache: the scorers' samples can share it."""

    def __init__(self, max_mb: float = 2048):
        super().__init__(max_mb)

    def load(self, path, **kw) -> FrameGrid:
        """`load_grid(path, **kw)`, decoded once while the file is unchanged and the grid stays cached."""
        p = check_path(path)
        what = ("grid", tuple(sorted((k, str(v)) for k, v in kw.items())))
        return self.cached(p, what, lambda q: load_grid(q, **kw))
