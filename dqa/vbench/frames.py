"""Which frames VBench reads: every frame in order at the size it wants, from the shared sample when it holds them.

VBench's temporal and motion dimensions use every decoded frame at native resolution. The shared
VideoSample is capped (192 frames, 512 px); when it already holds every frame at the wanted size it is
reused, otherwise the file is read again through vrthinker.media.decode (same decoder, so the same pixels VBench sees).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from vrthinker.errors import VideoError
from vrthinker.media.decode import VideoSample, capped_size, read_frames, stream_frames

from dqa.workers.base import ScoreError


def all_frames(video: VideoSample, max_side: int | None = None) -> tuple[np.ndarray, str | None]:
    """RGB uint8 [T, H, W, 3]: every frame, long side at most `max_side` (None: native). Also a note when
    the file had to be decoded again (None when the shared sample was used as is)."""
    complete = video.consecutive and len(video.frames) == video.total_frames and video.indices[:1] == (0,)
    if complete and video.frames.shape[1:3] == capped_size(*video.size, max_side):
        return video.frames, None
    try:
        arr, _ = read_frames(video.path, max_frames=None, max_side=max_side)
    except VideoError as e:
        raise ScoreError("bad_video", e.cause) from None
    size = "native size" if max_side is None else f"long side <= {max_side}"
    return arr, f"decoded again: all {len(arr)} frames at {size}"


def frame_batches(video: VideoSample, batch_size: int, full_video: bool = True) -> Iterator[np.ndarray]:
    """RGB uint8 batches of the frames VBench would read: every frame at the original resolution.

    The shared sample is capped (512 px by INTER_AREA, 192 frames), while VBench resizes from full resolution
    without antialiasing, which keeps visibly more high-frequency detail; so when the sample was capped, the
    file is decoded again here batch by batch (memory: one batch of full-size frames). With `full_video`
    False, or when nothing was capped, the shared sample is used as it is."""
    if full_video and is_capped(video):
        yield from stream_frames(video.path, batch_size)
    else:
        for i in range(0, len(video.frames), batch_size):
            yield video.frames[i:i + batch_size]


def is_capped(video: VideoSample) -> bool:
    """True when the shared sample lacks frames or pixels of the file."""
    h, w = video.frames.shape[1:3]
    return len(video.frames) < video.total_frames or (w, h) != tuple(video.size)
