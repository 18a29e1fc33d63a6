"""Every frame of a clip, as VBench reads it (OpenCV, all frames in order), at a chosen size cap.

VBench's temporal and motion dimensions use every decoded frame at native resolution. The shared
VideoSample is capped (192 frames, 512 px); when it already holds every frame at the wanted size it is
reused, otherwise the file is decoded again (same decoder, so the same pixels VBench sees).
"""
from __future__ import annotations

import numpy as np

from vrthinker.errors import VideoError
from vrthinker.frames import read_frames

from ..video import VideoSample
from ..workers.base import ScoreError


def _capped_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) read_frames gives for a `max_side` cap (same rounding as its resize)."""
    if max_side is None or max(width, height) <= max_side:
        return height, width
    s = max_side / max(width, height)
    return max(1, round(height * s)), max(1, round(width * s))


def all_frames(video: VideoSample, max_side: int | None = None) -> tuple[np.ndarray, str | None]:
    """RGB uint8 [T, H, W, 3]: every frame, long side at most `max_side` (None: native). Also a note when
    the file had to be decoded again (None when the shared sample was used as is)."""
    complete = video.consecutive and len(video.frames) == video.total_frames and video.indices[:1] == (0,)
    if complete and video.frames.shape[1:3] == _capped_size(*video.size, max_side):
        return video.frames, None
    try:
        arr, _ = read_frames(video.path, max_frames=None, max_side=max_side)
    except VideoError as e:
        raise ScoreError("bad_video", e.cause) from None
    size = "native size" if max_side is None else f"long side <= {max_side}"
    return arr, f"decoded again: all {len(arr)} frames at {size}"
