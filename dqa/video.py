"""One decoded video as every DQA worker sees it: RGB frames at a capped size, decoded once per process.

Workers run one after another (the scheduler), so the same video is asked for by each worker in turn; a
small LRU keeps recent decodes so a batch does not decode a video once per worker when memory allows.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrthinker.errors import VideoError
from vrthinker.frames import read_frames

MAX_SIDE = 512  # VBench's frames go to 224-512 px models; 512 keeps MUSIQ's own size (long side <= 512)
MAX_FRAMES = 192  # 8 s at 24 fps kept consecutive; longer videos are sampled uniformly (named in notes)


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


def decode(path, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE) -> VideoSample:
    """Decode `path` (VideoError when missing, corrupt or empty). Long clips keep `max_frames` uniformly."""
    arr, info = read_frames(path, max_frames=max_frames, max_side=max_side)
    notes = [info.count_note] if info.count_note else []
    if len(arr) < info.total_frames:
        notes.append(f"{len(arr)} of {info.total_frames} frames used (sampled uniformly)")
    return VideoSample(os.fspath(path), arr, tuple(int(i) for i in info.indices), float(info.fps or 0.0),
                       int(info.total_frames), (int(info.width), int(info.height)), tuple(notes))


class VideoCache:
    """Decoded videos kept up to `max_mb` (least recently used dropped first); errors are remembered too."""

    def __init__(self, max_mb: float = 1024, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE):
        self.max_bytes = int(max_mb * 2**20)
        self.max_frames, self.max_side = max_frames, max_side
        self._items: OrderedDict[str, VideoSample] = OrderedDict()
        self._errors: dict[str, VideoError] = {}
        self._lock = threading.Lock()
        self.decodes = 0

    def get(self, path) -> VideoSample:
        key = str(Path(path).expanduser().resolve())
        with self._lock:
            if key in self._errors:
                raise self._errors[key]
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            sample = decode(path, self.max_frames, self.max_side)
        except VideoError as e:
            self._errors[key] = e
            raise
        with self._lock:
            self.decodes += 1
            self._items[key] = sample
            while len(self._items) > 1 and sum(s.frames.nbytes for s in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return sample
