"""The weight-free worker: VQ and MQ from dqa.measures.video, no model (always available, the offline default).

It measures the file through `dqa.measures.video.measure_video`, the same call (same decode, same numbers) as
`judge --backend metrics`, not the scheduler's shared sample: one measure, one number.
"""
from __future__ import annotations

from vrthinker.errors import VideoError
from vrthinker.media.decode import VideoSample

from dqa.measures.video import MEASURES_VERSION, MIN_FRAMES, MQ_WEIGHTS, VQ_FAULTS, VQ_WEIGHTS, measure_video
from dqa.workers.base import Score, ScoreError, Worker


class MeasuresWorker(Worker):
    name = "measures"
    components = ("vq", "mq")

    def config(self) -> dict:
        return {**super().config(), "measures_version": MEASURES_VERSION}

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        if len(video.frames) < MIN_FRAMES:
            raise ScoreError("too_few_frames", f"{len(video.frames)} frame(s); the weight-free measures need "
                                              f"at least {MIN_FRAMES}")
        try:
            m = measure_video(video.path)
        except VideoError as e:
            raise ScoreError("bad_video", e.cause) from None
        d = m.to_dict()
        common = {"notes": d["notes"], "frames": d["frames"]}
        out = []
        for dim, keys in (("vq", (*VQ_WEIGHTS, *VQ_FAULTS)), ("mq", tuple(MQ_WEIGHTS))):
            worst = m.worst.get(dim)
            value = m.vq if dim == "vq" else m.mq
            out.append(Score(dim, value, value, {"scores": {k: d["scores"][k] for k in keys if k in d["scores"]},
                                                  "pulled_down_by": worst, **common}))
        return out
