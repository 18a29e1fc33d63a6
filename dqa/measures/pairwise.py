"""A weight-free pairwise judge: compares two videos by the DQA measures (no model, always available).

It judges Visual Quality and Motion Quality from the raw measures of `dqa.measures.video`, by the evidence of
`dqa.measures.evidence` (per measure a log-ratio, counted only beyond re-encoding noise, summed per dimension),
not from the absolute VQ/MQ scores: those saturate, and two saturated scores can only tie. Overall is the sum
of both dimensions' evidence. Text Alignment needs a vision-language model, so TA is always missing and the
verdict's reason is "needs_vlm".
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict

from dqa.measures import evidence
from dqa.measures.video import MAX_FRAMES, MAX_SIDE, MEASURES_VERSION, VideoMeasures, measure_video
from vrthinker.errors import VideoError
from vrthinker.verdict import Verdict, failed

MODEL_ID = "weight-free-metrics"
PROTOCOL = "metrics/1"
BACKEND = "metrics"

# Evidence (log-ratio units beyond each measure's re-encoding noise, summed per dimension) within this of 0
# is a tie: the noise is already taken out measure by measure, so the margin only absorbs rounding.
TIE_MARGIN = 0.02


def _label(a: float, b: float, margin: float) -> int:
    """1 if a is better by more than margin, 2 if b is, else 0 (tie)."""
    if abs(a - b) <= margin:
        return 0
    return 1 if a > b else 2


class MetricsJudge:
    """Pairwise judge from weight-free measures; `compare` returns a Verdict with TA missing.

    Measures are cached per file (path, size, mtime), so a video compared against many others is
    decoded and measured once; `cache_size=0` turns that off.
    """

    def __init__(self, tie_margin: float = TIE_MARGIN, max_frames: int = MAX_FRAMES,
                 max_side: int = MAX_SIDE, cache_size: int = 64):
        if tie_margin < 0:
            raise ValueError(f"tie_margin must be >= 0, got {tie_margin}")
        self.tie_margin = float(tie_margin)
        self.max_frames = int(max_frames)
        self.max_side = int(max_side)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple, VideoMeasures] = OrderedDict()

    def config(self) -> dict:
        """Everything that shapes this judge's verdicts (JSON-able): a stored verdict is reused only when
        this is unchanged. The cache size only affects speed, so it is left out."""
        return {"backend": BACKEND, "protocol": PROTOCOL, "model_id": MODEL_ID, "measures_version": MEASURES_VERSION,
                "tie_margin": self.tie_margin, "max_frames": self.max_frames, "max_side": self.max_side}

    @classmethod
    def from_pretrained(cls, model=None, **kw) -> "MetricsJudge":
        """Same constructor shape as the model backends; `model` is ignored (there are no weights)."""
        return cls(**kw)

    def measure(self, path) -> VideoMeasures:
        """Measures of one video, from the cache when the file is unchanged. Raises VideoError."""
        p = os.fspath(path)
        try:
            st = os.stat(p)
            key = (os.path.abspath(p), st.st_size, st.st_mtime_ns, self.max_frames, self.max_side)
        except OSError:
            key = None  # let the decoder say what is wrong with it
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        m = measure_video(p, max_frames=self.max_frames, max_side=self.max_side)
        if key is not None and self.cache_size > 0:
            self._cache[key] = m
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return m

    def compare(self, video1, video2, prompt: str = "", *, orders: str = "one") -> Verdict:
        """Judge which of two videos is better on VQ, MQ and OA (1, 2 or 0 = tie); TA is None.

        The measures are per video, so the labels have no position bias: `orders` is accepted for
        interface symmetry and both orders give the same verdict.
        """
        t0 = time.perf_counter()
        videos = (os.fspath(video1), os.fspath(video2))
        common = dict(videos=videos, prompt=prompt, model_id=MODEL_ID, protocol=PROTOCOL, backend=BACKEND)
        timings = {}
        try:
            t = time.perf_counter()
            m1 = self.measure(video1)
            timings["measure_1"] = time.perf_counter() - t
            t = time.perf_counter()
            m2 = self.measure(video2)
            timings["measure_2"] = time.perf_counter() - t
        except VideoError as err:
            timings["total_s"] = time.perf_counter() - t0
            return failed("bad_video", str(err), timings=timings, **common)
        labels = {"TA": None, **self.judge_measures(m1, m2)}
        ev = evidence.compare(m1.measures, m2.measures)
        timings["total_s"] = time.perf_counter() - t0

        def why(dim: str, e: float) -> str:
            top = ev.top.get(dim.lower())
            return f"{dim} {e:+.2f}" + (f" (mostly {top})" if top else "")
        reasoning = (f"evidence beyond re-encoding noise (+ favours video 1): {why('VQ', ev.vq)}, {why('MQ', ev.mq)}; "
                     f"scores VQ {m1.vq:.3f} vs {m2.vq:.3f}, MQ {m1.mq:.3f} vs {m2.mq:.3f} "
                     f"(evidence within {self.tie_margin:g} is a tie)")
        return Verdict(labels=labels, reason="needs_vlm",
                       detail="Text Alignment needs a vision-language model", reasoning=reasoning,
                       timings=timings,
                       extra={"scores": {"video1": m1.to_dict(), "video2": m2.to_dict()},
                              "tie_margin": self.tie_margin, "evidence": ev.to_dict()},
                       **common)

    def judge_measures(self, m1: VideoMeasures, m2: VideoMeasures) -> dict[str, int]:
        """VQ, MQ and OA labels (1, 2 or 0 = tie) from two videos' measures: the sign of the evidence."""
        ev = evidence.compare(m1.measures, m2.measures)
        tm = self.tie_margin
        return {"VQ": evidence.label(ev.vq, tm), "MQ": evidence.label(ev.mq, tm), "OA": evidence.label(ev.oa, tm)}
