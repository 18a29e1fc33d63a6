"""Pairwise evidence from raw measures: which of two videos is better, measure by measure, beyond noise.

For each raw measure (`MEASURES`) the two videos are compared by a scale-free difference, the log-ratio
log((x2 + floor) / (x1 + floor)), signed so that positive means video 1 is better. `floor` is a level under
which the measure cannot tell values apart (its value on clean footage is of that order), so two near-zero
values do not make a large ratio. A difference counts only by how far it exceeds `NOISE[name]`: the largest
log-ratio between re-encodes of the same clean content (x264 CRF 17, 20 and 23 of the calibration families
and camera clips, scripts/bench_metrics.py --noise --real). Each counted difference is capped at CAP, and a
dimension's evidence is their sum: one large reliable difference decides, differences inside the noise count
zero, and a measure that both videos fail equally (the same content, the same fault) has a log-ratio near 0
and cancels. A fault's side effects on other measures (noise breaking up blocks, blur removing noise, a
codec removing a camera's sensor noise and jitter) are explained away (MASKS), by noise only when it is
visible (EXPLAINS_ABOVE). One quantity measured two ways (ONE_VOTE: temporal noise) counts once.
A measure missing on either side (NaN: no edges to measure, no motion to judge) says nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

# name -> (dimension, direction: +1 when more is worse, -1 when less is worse, floor in the measure's unit)
MEASURES: dict[str, tuple[str, int, float]] = {
    "edge_width": ("VQ", +1, 0.3),  # px of edge spread at the working size: blur, upscaling, smearing
    "noise_sigma": ("VQ", +1, 0.5),  # grey levels of fresh temporal noise (from the mean residual)
    "noise_mad": ("VQ", +1, 0.5),  # the same, robust (median residual): not fooled by hand-held warping errors
    "flicker": ("VQ", +1, 0.3),  # grey levels of unexplained brightness change per frame
    "blockiness": ("VQ", +1, 0.15),  # block-edge excess on the codec grid
    "grid_steps": ("VQ", +1, 0.2),  # grey levels by which steps on the 8 px grid exceed the others (visible blocks)
    "ringing": ("VQ", +1, 0.5),  # busy flat pixels beside edges, relative (about 1 when clean)
    "banding": ("VQ", +1, 0.05),  # spikiness of the ramps' grey-level histogram
    "detail_ratio": ("VQ", -1, 0.05),  # finest-octave energy over the next one
    "combing": ("VQ", +1, 0.005),  # row teeth in excess of column teeth (interlace)
    "echo": ("VQ", +1, 0.07),  # frame-difference echo (ghosting, frame blending)
    "clipped": ("VQ", +1, 0.01),  # share of pixels clipped to black or white
    "highlights": ("VQ", +1, 0.01),  # share of pixels with a channel blown (over-exposure)
    "luma_std": ("VQ", -1, 2.0),  # RMS contrast, grey levels (washed out, under-exposed)
    "colourfulness": ("VQ", -1, 3.0),  # Hasler-Suesstrunk M (washed out)
    "still_fraction": ("MQ", +1, 0.05),  # share of frame pairs with no visible motion
    "frozen_fraction": ("MQ", +1, 0.03),  # share of pairs frozen relative to the clip's own motion
    "accel_ratio": ("MQ", +1, 0.1),  # flow change along its path per unit of flow (jerkiness)
    "jitter": ("MQ", +1, 0.005),  # global motion jumping, fraction of the long side per frame (hand-held: ~0.007)
    "order_violations": ("MQ", +1, 0.02),  # share of frame triples out of order
}

# Explaining away: a fault has side effects that look like improvements on other measures (added noise breaks
# up blocks and bands and adds fine "detail"; blur and codecs remove noise; a frozen clip has no fresh noise or
# flicker; over-exposure raises contrast). When a video is worse on the measure on the left, evidence IN ITS
# FAVOUR from the measures on the right is dropped. Measures are taken strongest first, and a dropped measure
# explains nothing away, so two faults cannot cancel each other's evidence.
_NOISE = ("noise_sigma", "noise_mad")
_PICTURE = (*_NOISE, "blockiness", "grid_steps", "banding", "ringing", "detail_ratio", "edge_width", "flicker")
# A damaged picture also moves the motion measures: noise and codec pumping turn still pairs into moving ones,
# and a codec smooths away small global motion (jitter) and changes the flow along its path.
_MOTION = ("jitter", "accel_ratio", "still_fraction", "frozen_fraction")
_NOISE_HIDES = ("blockiness", "grid_steps", "banding", "ringing", "detail_ratio", "edge_width", "combing", *_MOTION)
MASKS: dict[str, tuple[str, ...]] = {
    "noise_sigma": _NOISE_HIDES,
    "noise_mad": _NOISE_HIDES,
    "edge_width": (*_NOISE, "ringing", "blockiness", "grid_steps", "banding", "flicker", "detail_ratio", *_MOTION),
    "detail_ratio": (*_NOISE, "ringing", "blockiness", "grid_steps", "banding", "flicker", "edge_width", *_MOTION),
    # a codec that blocks also removes sensor noise and grain, lifts clipped blacks, dulls highlights and
    # smooths frame-to-frame echo: on camera footage those "gains" are its side effects, not improvements
    "blockiness": (*_NOISE, "ringing", "banding", "detail_ratio", "edge_width", "flicker", "clipped", "highlights",
                   "echo", *_MOTION),
    "banding": (*_NOISE, "blockiness", "grid_steps", "detail_ratio", "ringing"),
    "grid_steps": (*_NOISE, "ringing", "banding", "detail_ratio", "edge_width", "flicker", "clipped", "highlights",
                   "echo", *_MOTION),
    "ringing": (*_NOISE, "detail_ratio", "edge_width"),
    "combing": ("edge_width", "detail_ratio", *_NOISE),
    "echo": ("edge_width", "detail_ratio", *_NOISE, "flicker"),
    "flicker": _NOISE,
    "luma_std": (*_NOISE, "flicker", "clipped", "highlights", "banding", "blockiness", "grid_steps", "ringing", "echo"),
    "colourfulness": (*_NOISE, "flicker", "clipped", "highlights", "banding", "blockiness", "grid_steps", "ringing"),
    "clipped": ("luma_std", "colourfulness", *_NOISE, "detail_ratio", "edge_width", "banding"),
    "highlights": ("luma_std", "colourfulness", *_NOISE, "detail_ratio", "edge_width", "banding"),
    "still_fraction": ("frozen_fraction", "accel_ratio", "jitter", "order_violations", *_PICTURE, "echo"),
    "frozen_fraction": ("accel_ratio", "jitter", "order_violations", *_NOISE, "flicker", "echo"),
    "jitter": ("edge_width", "detail_ratio"),
    "accel_ratio": (),
    "order_violations": ("accel_ratio",),
}

# Re-encoding noise per measure (log-ratio units): see the module docstring and docs/measures.md.
# Measured by `scripts/bench_metrics.py --noise` (largest |log-ratio| over the 9 calibration families and the
# 3 calibration camera clips of eval/real_footage.py x 3 encode pairs, plus 0.02); the camera clips raised
# banding, clipped and jitter. still_fraction, frozen_fraction and order_violations never moved (0 + 0.02).
NOISE: dict[str, float] = {
    "edge_width": 0.03, "noise_sigma": 0.10, "noise_mad": 0.13, "flicker": 0.13, "blockiness": 0.33, "grid_steps": 0.32,
    "ringing": 0.18, "banding": 0.11, "detail_ratio": 0.07, "combing": 0.09, "echo": 0.04, "clipped": 0.06,
    "highlights": 0.08, "luma_std": 0.03,
    "colourfulness": 0.03, "still_fraction": 0.02, "frozen_fraction": 0.02, "accel_ratio": 0.28, "jitter": 0.14,
    "order_violations": 0.02}
CAP = 3.0  # one measure counts at most this much (log-ratio units beyond its noise)
# A measure explains other measures' gains away only when the worse video's value is visible: temporal noise
# under about 1.5 grey levels (a camera's sensor noise at a near-lossless encode) hides no blocks or smearing.
EXPLAINS_ABOVE: dict[str, float] = {"noise_sigma": 1.5, "noise_mad": 1.5}


# Measures of one quantity two ways (temporal noise from the mean and from the median residual): each sees cases
# the other misses, but a difference both see is one fault, and counting it twice would outweigh every other
# measure (a codec removing a clip's own faint noise would count twice against its blocking).
ONE_VOTE: tuple[tuple[str, ...], ...] = (("noise_sigma", "noise_mad"),)


def log_ratio(name: str, x1: float, x2: float) -> float:
    """Signed log-ratio of one measure (positive: video 1 better); NaN when either value is missing."""
    _, direction, floor = MEASURES[name]
    if x1 is None or x2 is None or math.isnan(x1) or math.isnan(x2):
        return float("nan")
    return direction * math.log((max(x2, 0.0) + floor) / (max(x1, 0.0) + floor))


def excess(d: float, noise: float) -> float:
    """The part of a log-ratio beyond the noise, sign kept, capped at CAP; 0 inside the noise or if NaN."""
    if math.isnan(d) or abs(d) <= noise:
        return 0.0
    return math.copysign(min(abs(d) - noise, CAP), d)


@dataclass(frozen=True)
class Evidence:
    """Per-measure log-ratios and counted excesses (positive: video 1 better), summed per dimension."""

    ratios: Mapping[str, float]
    counted: Mapping[str, float]
    vq: float
    mq: float
    top: Mapping[str, str] = field(default_factory=dict)  # per dimension, the measure that counted most

    @property
    def oa(self) -> float:
        return self.vq + self.mq

    def to_dict(self) -> dict:
        return {"vq": round(self.vq, 4), "mq": round(self.mq, 4), "oa": round(self.oa, 4), "top": dict(self.top),
                "counted": {k: round(v, 4) for k, v in self.counted.items() if v},
                "noise": {k: NOISE[k] for k, v in self.counted.items() if v}}


def compare(raw1: Mapping[str, float], raw2: Mapping[str, float],
            noise: Mapping[str, float] | None = None) -> Evidence:
    """Evidence that video 1 is better than video 2, from their raw measures (VideoMeasures.measures)."""
    noise = NOISE if noise is None else noise
    ratios = {k: log_ratio(k, raw1.get(k, float("nan")), raw2.get(k, float("nan"))) for k in MEASURES}
    counted = {k: excess(d, noise[k]) for k, d in ratios.items()}
    for group in ONE_VOTE:  # one quantity measured two ways counts once: the stronger, or the sum if they disagree
        parts = [counted[k] for k in group]
        if all(p >= 0 for p in parts) or all(p <= 0 for p in parts):
            keep = max(group, key=lambda k: abs(counted[k]))
            counted.update({k: (counted[k] if k == keep else 0.0) for k in group})
    masked = {1: set(), 2: set()}  # per video, measures whose evidence in its favour is explained away
    for k in sorted(counted, key=lambda k: -abs(counted[k])):
        if not counted[k]:
            break
        favoured = 1 if counted[k] > 0 else 2
        if k in masked[favoured]:
            counted[k] = 0.0
            continue
        worse = (raw2 if favoured == 1 else raw1).get(k, float("nan"))
        if not worse >= EXPLAINS_ABOVE.get(k, -math.inf):  # too faint on the worse video to hide anything
            continue
        masked[3 - favoured].update(MASKS.get(k, ()))  # the other video is worse on k: k explains its gains
    sums, top = {"VQ": 0.0, "MQ": 0.0}, {}
    for dim in sums:
        keys = [k for k in MEASURES if MEASURES[k][0] == dim]
        sums[dim] = sum(counted[k] for k in keys)
        best = max(keys, key=lambda k: abs(counted[k]))
        if counted[best]:
            top[dim.lower()] = best
    return Evidence(ratios, counted, sums["VQ"], sums["MQ"], top)


def label(e: float, margin: float) -> int:
    """1 if the evidence favours video 1 by more than `margin`, 2 if video 2, else 0 (a tie)."""
    if abs(e) <= margin:
        return 0
    return 1 if e > 0 else 2
