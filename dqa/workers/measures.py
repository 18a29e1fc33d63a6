"""The weight-free worker: VQ and MQ from dqa.measures, no model (always available, the offline default)."""
from __future__ import annotations

from vrthinker.errors import VideoError
from vrthinker.video import VideoSample

from ..measures import MIN_FRAMES, measure_frames
from .base import Score, ScoreError, Worker


class MeasuresWorker(Worker):
    name = "measures"
    components = ("vq", "mq")

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if len(video.frames) < MIN_FRAMES:
            raise ScoreError("too_few_frames", f"{len(video.frames)} frame(s); the weight-free measures need "
                                              f"at least {MIN_FRAMES}")
        try:
            m = measure_frames(video.frames, path=video.path, indices=video.indices)
        except VideoError as e:
            raise ScoreError("bad_video", e.cause) from None
        d = m.to_dict()
        common = {"notes": d["notes"], "frames": d["frames"]}
        vq_keys = ("sharpness", "noise", "exposure", "contrast", "colourfulness", "flicker")
        return [Score("vq", m.vq, m.vq, {"scores": {k: d["scores"][k] for k in vq_keys if k in d["scores"]},
                                        **common}),
                Score("mq", m.mq, m.mq, {"scores": {k: v for k, v in d["scores"].items() if k not in vq_keys},
                                        **common})]
