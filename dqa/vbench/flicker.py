"""VBench's temporal_flickering, number for number: (255 - mean adjacent-frame MAE) / 255 on native frames.

VBench 0.1.5 (temporal_flickering.py) reads every frame with OpenCV at native resolution and averages
cv2.absdiff of consecutive float32 BGR frames. We do the same arithmetic on the same decoder's pixels, so
the score is identical (scripts/check_vbench.py checks it against the official file). Native size matters:
downscaling averages away pixel noise and would raise the score, so a capped sample is not reused when
the clip is larger than the cap. VBench applies this dimension to videos of static-scene prompts; on a
moving scene the difference also counts real motion, which lowers the score.
"""
from __future__ import annotations

import cv2
import numpy as np

from vrthinker.media.decode import VideoSample

from dqa.workers.base import Score, ScoreError, Worker
from dqa.vbench.frames import frame_batches, is_capped

MIN_FRAMES = 2  # one adjacent pair; VBench returns NaN for a single frame (mean of nothing)


def frame_maes(frames: np.ndarray) -> np.ndarray:
    """VBench's mae_seq: float32 mean |f[i] - f[i+1]| per adjacent pair, computed on BGR float32 frames
    exactly as calculate_mae does (BGR, so even float32 summation order matches)."""
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR).astype(np.float32) for f in frames]
    return np.array([np.mean(cv2.absdiff(a, b)) for a, b in zip(bgr[:-1], bgr[1:])])


def flicker_score(frames: np.ndarray) -> tuple[float, np.ndarray]:
    """(VBench's cal_score, the per-pair MAEs) for RGB uint8 frames [T, H, W, 3]."""
    maes = frame_maes(frames)
    return (255.0 - np.mean(maes).item()) / 255.0, maes


class FlickerWorker(Worker):
    """temporal_flickering, no model. A static clip scores exactly 1.0 (every MAE is 0), as in VBench."""

    name = "vbench.flicker"
    components = ("temporal_flickering",)

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if video.total_frames < MIN_FRAMES or len(video.frames) < MIN_FRAMES:
            raise ScoreError("too_few_frames", f"{video.total_frames} frame(s); temporal_flickering needs "
                                              f"at least {MIN_FRAMES}")
        # streamed in batches with the last frame carried over: a long 4K clip never sits in memory whole
        maes, prev, size = [], None, None
        for batch in frame_batches(video, 4):  # 4K: 5 float32 frames in memory at once (~0.5 GB)
            seq = batch if prev is None else np.concatenate([prev[None], batch])
            maes.extend(frame_maes(seq).tolist())
            prev, size = batch[-1], batch.shape[1:3]
        if not maes:
            raise ScoreError("too_few_frames", "fewer than 2 decodable frames; temporal_flickering needs 2")
        maes = np.asarray(maes, dtype=np.float32)  # VBench averages its float32 MAEs in float32
        value = (255.0 - np.mean(maes).item()) / 255.0
        details = {"mean_abs_diff": float(np.mean(maes)), "max_abs_diff": float(np.max(maes)),
                   "pairs": len(maes), "size": [int(size[1]), int(size[0])]}
        if is_capped(video):
            details["notes"] = [f"decoded again: all {len(maes) + 1} frames at native size"]
        return [Score("temporal_flickering", value, value, details)]
