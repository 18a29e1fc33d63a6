"""A weight-free pairwise judge: compares two videos by the DQA measures (no model, always available).

It judges Visual Quality and Motion Quality from `dqa.measures.video`, and Overall from both; Text Alignment needs
a vision-language model, so TA is always missing and the verdict's reason is "needs_vlm".
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict

from dqa.measures.video import MAX_FRAMES, MAX_SIDE, MEASURES_VERSION, VideoMeasures, measure_video
from vrthinker.errors import VideoError
from vrthinker.verdict import Verdict, failed

MODEL_ID = "weight-free-metrics"
PROTOCOL = "metrics/1"
BACKEND = "metrics"

# Scores closer than this (on the 0..1 scale) are a tie: differences of about 0.01 come from codec and
# flow noise alone (two encodes of the same clip), while a visible defect moves VQ or MQ by 0.03 or more.
TIE_MARGIN = 0.02


def _label(a: float, b: float, margin: float) -> int:
    """1 if a is better by more than margin, 2 if b is, else 0 (tie)."""
    if abs(a - b) <= margin:
        return 0
    return 1 if a > b else 2


def _overall(vq: int, mq: int, m1: VideoMeasures, m2: VideoMeasures, margin: float) -> int:
    """Overall: a video better on one dimension and not worse on the other wins (Pareto); when the two
    dimensions disagree (or both tie), the mean of VQ and MQ decides, with the same margin."""
    if vq == mq or 0 in (vq, mq):
        return vq or mq
    return _label((m1.vq + m1.mq) / 2, (m2.vq + m2.mq) / 2, margin)


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
        vq = _label(m1.vq, m2.vq, self.tie_margin)
        mq = _label(m1.mq, m2.mq, self.tie_margin)
        labels = {"TA": None, "VQ": vq, "MQ": mq, "OA": _overall(vq, mq, m1, m2, self.tie_margin)}
        timings["total_s"] = time.perf_counter() - t0
        reasoning = (f"VQ {m1.vq:.3f} vs {m2.vq:.3f}, MQ {m1.mq:.3f} vs {m2.mq:.3f} "
                     f"(a difference under {self.tie_margin:g} is a tie)")
        return Verdict(labels=labels, reason="needs_vlm",
                       detail="Text Alignment needs a vision-language model", reasoning=reasoning,
                       timings=timings,
                       extra={"scores": {"video1": m1.to_dict(), "video2": m2.to_dict()},
                              "tie_margin": self.tie_margin},
                       **common)
