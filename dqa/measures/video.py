"""Weight-free quality measures of one video: no model, no download, always available (the offline default).

Every measure is a raw number with a physical unit (pixels, grey levels, fractions) computed at a reduced
working resolution, then mapped to a score in [0, 1] (1 = good) by a fixed monotone curve:
`_falloff(x, half)` = 1 / (1 + (x / half) ** p) for "less is better" and `_rise` = 1 - that for "more is
better". `half` is the raw value judged half-good; each one is explained where it is defined. The look and
motion curves never saturate exactly, so a worse raw value always gives a (slightly) lower score.

VQ (how each picture looks) has two parts. The look: sharpness, noise, exposure, contrast, colourfulness,
flicker, by a weighted geometric mean (noise and flicker are measured across frames after optical-flow
motion compensation: texture stays, noise and flicker do not). The faults (VQ_FAULTS): softness, codec
blocks, ringing, banding, lost fine detail, interlace combing (dqa.measures.nr, on native-resolution centre crops),
ghosting (an echo of the frame differences at the blend's lag) and clipping. A fault score is exactly 1
over the range clean footage and rendered scenes measure (`_dead`), so content alone is never marked down
by it, and VQ = look x the product of the fault scores: one severe fault pulls VQ down by its own factor.
MQ (how things move): smoothness, shake, frozen, order: sqrt(weighted geometric mean x the lowest of them),
so one bad motion score pulls MQ at least halfway (in log terms) to itself.

Absolute scores are rough across very different content (a grey-scale film is not "bad" for being
colourless, a dark film for being dark); comparing two videos of the same prompt (the pairwise judge) is
the reliable use. NIQE (dqa.measures.nr) is measured and reported but not scored: on this footage it calls added
sensor noise and posterising *more* natural (NIQE 5-8 against 11-14 for the clean clip).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from vrthinker.errors import VideoError

from dqa.measures import nr

# Bump whenever any measure, curve or weight changes: stored verdicts and scores carry it, so a change
# invalidates them instead of returning numbers the new code would not give.
MEASURES_VERSION = "7"  # 7: temporal noise also as a robust (MAD) sigma (noise_mad), in the evidence and the
# noise score
# 6: visible grid steps in grey levels (grid_steps), in the evidence and the blockiness score
# (raw measures as in 4). 4: dynamics (still_fraction), highlights, edge width on edge pixels, grid excess with a
# floor, ringing/banding spare flat fills, echo only with motion; pairwise from evidence (dqa.measures.evidence)

MAX_SIDE = 320  # working resolution: enough for edges and optical flow, cheap on a CPU
MAX_FRAMES = 64  # frames used for motion measures (as consecutive as the video allows)
SPATIAL_FRAMES = 16  # frames, spread over the clip, used for the per-picture measures
DETAIL_FRAMES = 6  # frames also kept at native resolution (a centre crop) for the native-grid measures
DECODE_CAP = 480  # frames decoded at most (20 s at 24 fps are kept consecutive); longer videos subsample
MIN_FRAMES = 3  # motion needs at least one triple of frames (velocity and its change)
WINDOWS = 4  # when a video is longer than MAX_FRAMES, motion is measured in this many consecutive windows
OVERLAP = True  # per-picture measures in a second thread while the motion measures run (same numbers)

VQ_WEIGHTS = {"sharpness": 1.0, "noise": 1.5, "exposure": 0.5, "contrast": 0.5, "colourfulness": 0.25,
              "flicker": 1.0}  # exposure, contrast and colour are low weight: they are largely a matter of style
# Damage that no style explains (dqa.measures.nr's codec and processing faults, frame blending, clipped highlights and
# blacks): each is 1 over the whole range clean footage and rendered scenes measure, and multiplies VQ below
# that, so one severe fault pulls VQ down by its own factor however good the rest looks.
VQ_FAULTS = ("softness", "blockiness", "ringing", "banding", "detail", "combing", "ghosting", "clipping")
MQ_WEIGHTS = {"smoothness": 1.0, "shake": 1.0, "frozen": 1.0, "order": 1.0, "dynamics": 1.0}

_FLOOR = 1e-3  # scores are clipped here before the geometric mean (log 0 is undefined)
# A fault score never goes under this in VQ: one fault can pull VQ down by a factor of ten, not erase
# every other difference (two videos with the same fault still differ by the rest).
FAULT_FLOOR = 0.1


@dataclass(frozen=True)
class VideoMeasures:
    """Weight-free measures of one video: raw values (`measures`), their [0, 1] scores, and VQ/MQ."""

    path: str
    measures: Mapping[str, float]
    scores: Mapping[str, float]
    vq: float
    mq: float
    seconds: float
    notes: tuple[str, ...] = ()
    frames: int = 0  # frames analysed
    size: tuple[int, int] = (0, 0)  # working (width, height)
    info: Mapping[str, float] = field(default_factory=dict)
    worst: Mapping[str, str] = field(default_factory=dict)  # per dimension, the score that pulled it down

    def to_dict(self) -> dict:
        """Plain JSON-able dict (NaN raw values, e.g. motion of a static clip, become None)."""
        def clean(m):
            return {k: (None if isinstance(v, float) and math.isnan(v) else round(float(v), 6))
                    for k, v in m.items()}
        return {"path": self.path, "vq": round(self.vq, 6), "mq": round(self.mq, 6),
                "scores": clean(self.scores), "measures": clean(self.measures),
                "seconds": round(self.seconds, 4), "notes": list(self.notes), "frames": self.frames,
                "size": list(self.size), "worst": dict(self.worst)}


# ----------------------------------------------------------------------------------------------------------
# score curves


def _falloff(x: float, half: float, power: float = 2.0) -> float:
    """Monotone decreasing map [0, inf) -> (0, 1]: 1 at 0, 0.5 at `half`."""
    return 1.0 / (1.0 + (max(float(x), 0.0) / half) ** power)


def _rise(x: float, half: float, power: float = 2.0) -> float:
    """Monotone increasing map [0, inf) -> [0, 1): 0 at 0, 0.5 at `half`."""
    return 1.0 - _falloff(x, half, power)


def _geomean(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted geometric mean of the scores named in `weights`."""
    logs = [w * math.log(max(scores[k], _FLOOR)) for k, w in weights.items()]
    return math.exp(sum(logs) / sum(weights.values()))


# ----------------------------------------------------------------------------------------------------------
# per-picture measures (VQ)


# Each channel's share of the luma, per uint8 level, as float32 products (w * level in float32, what numpy's
# float32 arithmetic gives): a table look-up then two additions in the same order give the same bits as
# 0.299 * R + 0.587 * G + 0.114 * B in float32, without a float copy of every frame.
_LUMA_LUT = [np.float32(w) * np.arange(256, dtype=np.float32) for w in (0.299, 0.587, 0.114)]


def _luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB uint8 frames, float32 [T, H, W] in grey levels 0..255."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        f = frames.astype(np.float32)
        return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    out = np.empty(frames.shape[:-1], np.float32)
    for rgb, y in zip(frames.reshape(-1, *frames.shape[-3:]), out.reshape(-1, *out.shape[-2:])):
        _luma1(rgb, y)
    return out


def _luma1(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """_luma of one RGB uint8 frame [H, W, 3] (into `out` if given)."""
    r, g, b = (cv2.LUT(c, lut) for c, lut in zip(cv2.split(rgb), _LUMA_LUT))
    out = cv2.add(r, g, dst=out)
    return cv2.add(out, b, dst=out)


def _grad(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude in grey levels per pixel (Sobel scaled by 1/8 to a per-pixel difference)."""
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    return cv2.magnitude(gx, gy)


# Re-blur width for the edge-width estimate: large enough that sharp and soft edges lose very different
# fractions of their gradient, small enough to stay local at 320 px.
_REBLUR_SIGMA = 2.0
# The strongest 1% of gradients must reach this (grey levels per working pixel) to be edges at all: a soft
# sky or glow peaks near 1-2, a crisp edge of 30 levels at 10+, the same edge blurred by sigma 3 px still at 4.
_EDGE_MIN = 3.0


def edge_width(y: np.ndarray) -> float:
    """Edge spread (Gaussian sigma, in working pixels) of the strongest edges of one luma frame.

    Re-blur method (Crete-Roffet et al. 2007): blurring by a known sigma_b lowers the gradient of an edge of
    width sigma_e by R = sigma_e / sqrt(sigma_e^2 + sigma_b^2); solve for sigma_e. R is taken on the edge
    pixels: those within half of the strongest gradients (99.9th percentile) and at least _EDGE_MIN, so a few
    small hard-edged objects over a soft background are measured by their own edges, contrast-free. NaN when
    the picture has no such edges (soft gradients, fog, glows: their spread is content, not blur).
    """
    grad = _grad(y)
    top = nr.percentile(grad, 99.9)
    edge = grad >= max(_EDGE_MIN, 0.5 * top)
    if int(edge.sum()) < 16:
        return float("nan")
    gb = _grad(cv2.GaussianBlur(y, (0, 0), _REBLUR_SIGMA))
    r = min(float(gb[edge].mean()) / float(grad[edge].mean()), 0.995)
    return _REBLUR_SIGMA * r / math.sqrt(1.0 - r * r)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M of one RGB frame (15 slightly, 33 moderately, 59 quite)."""
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def spatial_measures(frames: Sequence[np.ndarray], ys: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Raw per-picture measures, each the median over the given RGB frames (`ys`: their luma, if known)."""
    ys = _luma(frames) if ys is None else ys
    per = {"edge_width": [], "clipped": [], "highlights": [], "mean_luma": [], "luma_std": [],
           "colourfulness": []}
    for rgb, y in zip(frames, ys):
        per["edge_width"].append(edge_width(y))
        # crushed blacks / blown highlights: within 3 levels of the ends (codec ringing stays inside)
        per["clipped"].append(float(np.mean((y <= 3) | (y >= 252))))
        # blown highlights: two or more channels at the top (a saturated primary colour has one at 255 by
        # design; over-exposure drives bright colours to yellow, cyan, magenta and white) before luma clips
        top = (rgb >= 250).view(np.uint8)  # 0/1 per channel; their uint8 sum counts the channels at the top
        per["highlights"].append(np.count_nonzero(top[..., 0] + top[..., 1] + top[..., 2] >= 2) / top[..., 0].size)
        per["mean_luma"].append(float(y.mean()))
        per["luma_std"].append(float(y.std()))
        per["colourfulness"].append(colourfulness(rgb))
    return {k: float(np.nanmedian(v)) if not np.all(np.isnan(v)) else float("nan") for k, v in per.items()}


def spatial_scores(m: Mapping[str, float]) -> dict[str, float]:
    """Map raw per-picture measures to [0, 1] scores."""
    # Edges spread over sigma = 2 px at a 320 px working width (about 12 px at 1920) read as visibly soft;
    # a crisp anti-aliased edge measures about 0.7-1 px. Power 3: little penalty until edges really soften.
    sharp = 1.0 if math.isnan(m["edge_width"]) else _falloff(m["edge_width"], 2.0, 3.0)  # NaN: no edges to judge
    # Exposure: a quarter of the picture clipped to black/white is half-bad; the mean luma costs little
    # until it is within ~13 levels of either end (the whole picture near black or white: a night scene's
    # mean of 20-25 is a style and costs about a third).
    exposure = _falloff(m["clipped"], 0.25) * _falloff(abs(m["mean_luma"] - 127.5), 115.0, 4.0)
    # RMS contrast: half at 8 levels (3% of the range): fog, haze and flat fills are low-contrast by nature,
    # so this is a mild, quarter-weight term (the calibration families measure 20-51).
    contrast = _rise(m["luma_std"], 8.0)
    # Colourfulness: half at M = 10 ("slightly" colourful is 15): grey-scale and night pictures are a style.
    colour = _rise(m["colourfulness"], 10.0)
    return {"sharpness": sharp, "exposure": exposure, "contrast": contrast,
            "colourfulness": colour}


# Frame differences under this RMS (grey levels, median over the run) are mostly codec noise: their lag
# profile is noise too, so the echo is not measured (a still or barely drifting clip cannot show ghosting).
_ECHO_MIN_RMS = 0.5


def echo(ys: Sequence[np.ndarray], gaps: np.ndarray, max_lag: int = 6) -> float:
    """Frame blending (ghosting, a frame mixed with an earlier one): the strongest bump in the lag profile of
    the frame differences' correlation, corr(D_t, D_t-L) - max(corr at L-1, L+1), over L = 2..max_lag.

    D_t = I_t - I_t-1. Natural motion decorrelates smoothly with the lag; a blend of frame t with frame t-L
    repeats D_t-L inside D_t, a bump at exactly L. Only runs of consecutive frames count (`gaps` == 1)."""
    if len(ys) < max_lag + 3 or np.any(gaps != 1):
        return float("nan")
    small = np.stack([cv2.resize(y, (max(8, y.shape[1] // 2), max(8, y.shape[0] // 2)),
                                 interpolation=cv2.INTER_AREA) for y in ys])
    d = np.diff(small, axis=0).reshape(len(small) - 1, -1)
    d -= d.mean(axis=1, keepdims=True)
    energy = (d * d).sum(axis=1)
    if math.sqrt(float(np.median(energy)) / d.shape[1]) < _ECHO_MIN_RMS:  # too little change to correlate
        return float("nan")
    corr = []
    for lag in range(1, max_lag + 2):
        num = float((d[lag:] * d[:-lag]).sum())
        den = math.sqrt(float(energy[lag:].sum()) * float(energy[:-lag].sum()))
        corr.append(num / den if den > 1e-6 else 0.0)
    return max(0.0, max(corr[k] - max(corr[k - 1], corr[k + 1]) for k in range(1, max_lag)))


# ----------------------------------------------------------------------------------------------------------
# motion measures (MQ) and flicker, from dense optical flow between consecutive frames


@dataclass
class _Motion:
    """Per-pair and per-triple statistics gathered over all consecutive windows."""

    diff: list = field(default_factory=list)  # mean |I(t+1) - I(t)| per pair, grey levels
    speed: list = field(default_factory=list)  # mean flow length per pair, px per source frame
    accel: list = field(default_factory=list)  # mean change of the flow along its own path, per triple
    speed3: list = field(default_factory=list)  # mean flow length of the triple's first pair
    jitter: list = field(default_factory=list)  # change of the global (median) motion per triple, px
    reversed_: list = field(default_factory=list)  # per triple: does motion turn back (cos < -0.3)?
    moving3: list = field(default_factory=list)  # per triple: enough motion to judge direction
    triangle: list = field(default_factory=list)  # per triple: (d(t,t+1), d(t+1,t+2), d(t,t+2)) coarse
    brightness: list = field(default_factory=list)  # per window: motion-compensated brightness steps
    noise: list = field(default_factory=list)  # per pair: temporal noise sigma on flat areas, grey levels
    change: list = field(default_factory=list)  # per pair: 99.5th percentile |coarse change|, grey levels


def _coarse(y: np.ndarray) -> np.ndarray:
    """A 64-px, lightly blurred, zero-mean copy: frame distances there grow smoothly with displacement and
    ignore global brightness changes (flicker must not look like frames out of order)."""
    h, w = y.shape
    s = 64 / max(h, w)
    small = cv2.resize(y, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.0)
    return small - small.mean()


# Flow slower than a quarter pixel per frame is within DIS's error on real texture: such pixels count as
# still when judging how motion changes (otherwise flow noise on a static background looks like jerkiness).
_MOVING_PX = 0.25
# Flow is only observable where there is texture (the aperture problem): pixels whose lightly smoothed
# gradient is under 2 grey levels per pixel (about twice the codec noise) are left out of motion changes.
_TEXTURE_GRAD = 2.0


# median |r| of Gaussian noise is 0.6745 sigma (the MAD estimator): 1 / 0.6745
_MAD_SIGMA = 1.4826


def _temporal_noise(resid: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Noise sigma (grey levels) from a motion-compensated frame difference, on the flatter half of `y`, two
    ways: (from the mean |r|, from the median |r|).

    Noise is fresh every frame, texture is not: the difference of two noisy frames has sigma*sqrt(2). Flat
    areas keep most warping errors at edges out. The mean sees faint noise a codec left in patches (most
    residuals zero, some not); the median (MAD) ignores the warping errors that remain, which on hand-held
    footage (foliage, parallax) read as noise and hide noise that was added. Both are sigma for pure noise.
    """
    structure = _grad(cv2.GaussianBlur(y, (0, 0), 3.0))
    flat = structure <= nr.median(structure[::2, ::2])
    r = np.abs(resid[flat])
    return (float(math.sqrt(math.pi / 2) * r.mean() / math.sqrt(2)),
            float(_MAD_SIGMA * nr.median(r) / math.sqrt(2)))


def _window_motion(ys: Sequence[np.ndarray], gaps: np.ndarray, acc: _Motion) -> None:
    """Add one window of consecutive luma frames to `acc`; `gaps` are source-frame steps between them."""
    h, w = ys[0].shape
    u8 = [np.clip(np.rint(y), 0, 255).astype(np.uint8) for y in ys]
    coarse = [_coarse(y) for y in ys]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    flows, mags, steps, globals_ = [], [], [], []

    def pair(t: int, raw: np.ndarray) -> None:  # frames t and t + 1, their flow `raw`
        mx, my = gx + raw[..., 0], gy + raw[..., 1]
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        # brightness step t -> t+1 where the flow matches pixels: immune to objects moving
        resid = cv2.remap(ys[t + 1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) - ys[t]
        sub = inside[::2, ::2]  # every 4th pixel is plenty for a median and 4x cheaper
        step = nr.median(resid[::2, ::2][sub]) if sub.any() else 0.0
        steps.append(step)
        acc.noise.append(_temporal_noise(np.where(inside, resid - step, 0.0), ys[t]))
        # change between frames, brightness step removed (flicker is not motion)
        acc.diff.append(float(cv2.norm(ys[t + 1] - ys[t] - np.float32(step), cv2.NORM_L1)) / (h * w))
        f = raw / np.float32(gaps[t])  # velocity per source frame
        flows.append(f)
        globals_.append(np.array([nr.median(f[::2, ::2, 0]), nr.median(f[::2, ::2, 1])], np.float32))  # global motion
        mag = cv2.magnitude(f[..., 0], f[..., 1])
        mags.append(mag)
        acc.speed.append(float(mag.mean()))
        acc.change.append(nr.percentile(np.abs(coarse[t + 1] - coarse[t]), 99.5))

    def triple(t: int) -> None:  # frames t, t + 1, t + 2: how the flow changes
        f0, f1 = flows[t], flows[t + 1]
        mx, my = gx + f0[..., 0] * gaps[t], gy + f0[..., 1] * gaps[t]
        f1w = cv2.remap(f1, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # f1 along f0's path
        n0, n1 = mags[t], cv2.magnitude(f1w[..., 0], f1w[..., 1])
        textured = _grad(cv2.GaussianBlur(ys[t], (0, 0), 1.0)) > _TEXTURE_GRAD
        moving = (np.maximum(n0, n1) > _MOVING_PX) & textured
        dv = f1w - f0
        acc.accel.append(float(cv2.magnitude(dv[..., 0], dv[..., 1])[moving].sum()))
        acc.speed3.append(float((0.5 * (n0 + n1))[moving].sum()))
        acc.jitter.append(float(np.linalg.norm(globals_[t + 1] - globals_[t])))
        dot = float((f0[..., 0] * f1w[..., 0] + f0[..., 1] * f1w[..., 1])[moving].sum())
        norm = float((n0 * n1)[moving].sum())
        acc.moving3.append(norm)
        acc.reversed_.append(norm > 0 and dot < -0.3 * norm)
        c0, c1, c2 = coarse[t], coarse[t + 1], coarse[t + 2]
        acc.triangle.append((float(np.abs(c1 - c0).mean()), float(np.abs(c2 - c1).mean()),
                             float(np.abs(c2 - c0).mean())))

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # mean-normalised: flicker-robust
    # With OVERLAP the flow of the next pairs is computed (in order, by one thread, one DIS object) while this
    # thread works on the pairs already done: the same flow, a second core kept busy.
    with ThreadPoolExecutor(1) if OVERLAP else nullcontext() as pool:
        pending = [pool.submit(dis.calc, u8[t], u8[t + 1], None) for t in range(len(ys) - 1)] if pool else None
        for t in range(len(ys) - 1):
            pair(t, pending[t].result() if pending else dis.calc(u8[t], u8[t + 1], None))
            if t:
                triple(t - 1)
    acc.brightness.append(np.asarray(steps))


def _flicker(brightness: Sequence[np.ndarray]) -> float:
    """Mean unexplained brightness change per frame (grey levels): steps minus their running median.

    A slow fade or a sunrise changes brightness steadily (removed by the 5-step running median);
    flicker changes it back and forth from frame to frame (kept).
    """
    dev = []
    for steps in brightness:
        if len(steps) == 0:
            continue
        pad = np.pad(steps, 2, mode="edge")
        trend = np.median(np.lib.stride_tricks.sliding_window_view(pad, 5), axis=1)
        dev.extend(np.abs(steps - trend).tolist())
    return float(np.mean(dev)) if dev else 0.0


# A pair of frames is "frozen" when it changes less than this fraction of the clip's typical change
# (90th percentile of pair differences), or less than 0.15 grey levels (codec residue on a repeat).
_FROZEN_REL, _FROZEN_ABS = 0.1, 0.15
# A clip is static when even its busiest pairs (90th percentile) change under 0.3 grey levels on average
# and flow under 0.05 px: nothing visibly moves.
_STATIC_DIFF, _STATIC_FLOW = 0.3, 0.05
# A pair of frames shows motion when its mean flow exceeds _STATIC_FLOW or when the strongest changes of the
# 64-px coarse copies (99.5th percentile, brightness removed) exceed one grey level: a small subject moving
# over a locked-off background moves a few coarse pixels by much more; codec residue on a repeat by ~0.1-0.3.
_STILL_CHANGE = 1.0


def motion_measures(acc: _Motion, long_side: int) -> dict[str, float]:
    """Raw motion measures from the gathered statistics (NaN where undefined, e.g. a static clip)."""
    diff = np.asarray(acc.diff)
    speed = np.asarray(acc.speed)
    typical = float(np.percentile(diff, 90))
    noise = np.asarray(acc.noise).reshape(-1, 2)  # per pair: (mean-based, median-based) sigma
    out = {"flicker": _flicker(acc.brightness), "noise_sigma": float(np.median(noise[:, 0])),
           "noise_mad": float(np.median(noise[:, 1])),
           "typical_diff": typical, "mean_speed": float(speed.mean()) if len(speed) else 0.0}
    # dynamics: the share of frame pairs in which nothing visibly moves, in absolute terms (unlike
    # frozen_fraction, which is relative to the clip's own busiest pairs and so is blind to a wholly still clip)
    moving = (speed > _STATIC_FLOW) | (np.asarray(acc.change) > _STILL_CHANGE)
    out["still_fraction"] = float(1.0 - moving.mean()) if len(moving) else float("nan")
    if typical < _STATIC_DIFF and float(np.percentile(speed, 90)) < _STATIC_FLOW:
        out.update(accel_ratio=float("nan"), jitter=float("nan"), frozen_fraction=float("nan"),
                   order_violations=float("nan"))
        return out
    # a pair is frozen when it changes little against the clip's own motion AND shows no motion outright
    # (flat fills and thin drifting haze change few pixels per frame while plainly moving)
    frozen = (diff < max(_FROZEN_REL * typical, _FROZEN_ABS)) & ~moving
    if not frozen.all():  # a repeated frame has no fresh noise: judge noise on the pairs that change
        out["noise_sigma"] = float(np.median(noise[~frozen, 0]))
        out["noise_mad"] = float(np.median(noise[~frozen, 1]))
    out["frozen_fraction"] = float(frozen.mean())
    # relative acceleration: how much the flow changes along its path, per unit of flow (scale-free)
    out["accel_ratio"] = float(np.sum(acc.accel) / max(np.sum(acc.speed3), 1e-6)) if acc.accel else 0.0
    # jitter of the global motion, as a fraction of the frame's long side per frame
    out["jitter"] = float(np.mean(acc.jitter)) / long_side if acc.jitter else 0.0
    out["order_violations"] = _order_violations(acc)
    return out


def _order_violations(acc: _Motion) -> float:
    """Fraction of frame triples that look out of order.

    Two signs, both required: motion turning straight back (flow of t->t+1 against t+1->t+2), and frame
    distances breaking the triangle order: with steady motion d(t, t+2) exceeds both d(t, t+1) and
    d(t+1, t+2); if frames are swapped, the "two steps apart" pair is really one step apart and is clearly
    the smaller.
    """
    if not acc.triangle:
        return 0.0
    tri = np.asarray(acc.triangle)
    step = np.maximum(tri[:, 0], tri[:, 1])
    busy = step > 0.2 * np.percentile(step, 90)  # ignore triples that barely move (frozen, turning points)
    tri_bad = busy & (tri[:, 2] < 0.8 * step)
    moving = np.asarray(acc.moving3)
    rev_bad = np.asarray(acc.reversed_) & (moving > 0.2 * np.percentile(moving, 90))
    # both signs must agree: either alone fires now and then on noisy flow or a turning object
    return float(np.mean(tri_bad & rev_bad))


def motion_scores(m: Mapping[str, float], still_ok: bool = False) -> dict[str, float]:
    """Map raw motion measures to [0, 1] scores. Where motion is undefined (a still clip) smoothness, shake,
    holds and order are 1 (nothing seen moving badly) and `dynamics` says what is wrong: nothing moves.
    `still_ok` (the prompt asks for a still scene) scores dynamics 1."""
    def s(key, fn):
        return 1.0 if math.isnan(m[key]) else fn(m[key])
    return {
        # dynamics: a third of the frame pairs without visible motion is half-bad, power 3 (a few held frames
        # cost little, a clip still for most of its length scores near 0); a slow pan or slow animation moves
        # in every pair and scores 1
        "dynamics": 1.0 if still_ok else s("still_fraction", lambda x: _falloff(x, 1 / 3, 3.0)),
        # velocity changing by its own size every frame is plainly jerky on rendered motion (smooth: < 0.1);
        # real handheld footage with flow noise on weak texture measures 0.3-1.1, hence the wide half point
        "smoothness": s("accel_ratio", lambda x: _falloff(x, 1.5)),
        # global motion jumping 0.5% of the frame per frame (about 10 px at 1920) is visible hand shake
        "shake": s("jitter", lambda x: _falloff(x, 0.005)),
        # one frozen pair in ten (a hold every ~0.4 s at 24 fps) is a clear hitch; power 1: no free pass
        "frozen": s("frozen_fraction", lambda x: _falloff(x, 0.1, 1.0)),
        # one triple in twenty out of order (one swapped pair per ~40 frames) is already an obvious glitch
        "order": s("order_violations", lambda x: _falloff(x, 0.05, 1.0)),
    }


# ----------------------------------------------------------------------------------------------------------
# whole video


def _resize(frames: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if max(h, w) <= max_side:
        return frames
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _windows(n: int, max_frames: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) windows covering at most max_frames of n frames, spread evenly."""
    if n <= max_frames:
        return [(0, n)]
    k = max(1, min(WINDOWS, max_frames // MIN_FRAMES))
    length = max(MIN_FRAMES, max_frames // k)
    starts = np.linspace(0, n - length, k).round().astype(int)
    return [(int(s), int(s) + length) for s in starts]


def _dead(x: float, clean: float, half: float, power: float = 2.0) -> float:
    """A fault score: exactly 1 up to `clean` (the worst value clean videos measure), then `_falloff` of the
    excess, 0.5 at clean + half."""
    return _falloff(max(float(x) - clean, 0.0), half, power)


# (clean end, half point) of each fault score; see fault_scores
SOFT_CLEAN, SOFT_HALF = 1.3, 0.6
BLOCK_CLEAN, BLOCK_HALF = 0.4, 0.4
GRID_CLEAN, GRID_HALF = 0.25, 0.3
RING_CLEAN, RING_HALF = 3.1, 1.0
BAND_CLEAN, BAND_HALF = 0.8, 0.12
DETAIL_CLEAN, DETAIL_HALF = 0.63, 0.12
COMB_CLEAN, COMB_HALF = 0.005, 0.025
ECHO_CLEAN, ECHO_HALF = 0.1, 0.12
CLIP_CLEAN, CLIP_HALF = 0.09, 0.2


def fault_scores(m: Mapping[str, float]) -> dict[str, float]:
    """VQ's fault scores (VQ_FAULTS) from raw measures; NaN raw values (nothing to judge) are 1.

    The `clean` ends are the worst each measure gives on the calibration clips of the real-footage suite
    (eval/real_footage.py CAL_CLIPS, 48 frames at <= 480 px) and on the calibration families of
    vrthinker_eval.scenes (CAL_FAMILIES, at x264 CRF 17-23), so clean pictures are not marked down; the half
    points are about one clearly visible step of damage beyond. Each fault counts at least FAULT_FLOOR."""
    def s(key, clean, half, power=2.0):
        return 1.0 if math.isnan(m[key]) else _dead(m[key], clean, half, power)
    return {
        # edge spread (the sharpness measure) beyond the clean clips' (up to 1.25 px): upscaled, defocused, smeared
        "softness": s("edge_width", SOFT_CLEAN, SOFT_HALF),
        # grid-step excess on the 8/16 px grid: the calibration families measure up to 0.33 (a smooth gradient
        # at CRF 23), a further 0.4 is half-bad (x264 CRF 45 measures 0.5-0.8 on them)
        # ... or visible steps on the 8 px grid, in grey levels: the calibration families and clips measure up
        # to 0.21 at x264 CRF 17-23; 0.3 more is half-bad (x264 CRF 45 leaves 0.4-1 on them)
        "blockiness": min(s("blockiness", BLOCK_CLEAN, BLOCK_HALF), s("grid_steps", GRID_CLEAN, GRID_HALF)),
        # busy flat pixels beside edges relative to flat pixels elsewhere: clean 1-3.1 (edges of busy content),
        # one more (4.1) is half-bad
        "ringing": s("ringing", RING_CLEAN, RING_HALF),
        # histogram spikes of smooth ramps: the calibration families measure up to 0.79 (cartoon cel shading's
        # few tones), so only extreme posterising is marked down here; the pairwise evidence compares it
        # is half-bad
        "banding": s("banding", BAND_CLEAN, BAND_HALF),
        # finest-octave energy ratio, as a deficit under DETAIL_CLEAN: natural detail 0.63-1.4, upscaled by 2
        # 0.5-0.54 (too much detail comes only from noise or combing, which other scores see)
        "detail": 1.0 if math.isnan(m["detail_ratio"]) else _dead(DETAIL_CLEAN - m["detail_ratio"], 0.0, DETAIL_HALF),
        # row teeth in excess of column teeth: progressive pictures under 0.005, teeth on a further 2.5% of
        # the picture are half-bad
        "combing": s("combing", COMB_CLEAN, COMB_HALF),
        # frame-difference echo at a fixed lag: clean up to ~0.07 (rendered scenes; footage under 0.04), 0.12
        # more is half-bad
        "ghosting": s("echo", ECHO_CLEAN, ECHO_HALF),
        # clipped to black or white: a dark film clips up to ~9% of the picture; 20% more is half-bad
        "clipping": s("clipped", CLIP_CLEAN, CLIP_HALF),
    }


def score_measures(raw: Mapping[str, float], still_ok: bool = False
                   ) -> tuple[dict[str, float], float, float, dict[str, str]]:
    """Raw measures -> (scores in [0, 1], VQ, MQ, the score that pulled each dimension down).

    VQ = (weighted geometric mean of the VQ_WEIGHTS scores) x (product of the VQ_FAULTS scores); MQ =
    sqrt(weighted geometric mean of the MQ_WEIGHTS scores x the lowest of them). Both are monotone in every
    score. The score named as
    pulling a dimension down is its lowest one, colourfulness left out (a colourless picture is a style)."""
    scores = spatial_scores(raw)
    # flicker of 3 grey levels per frame (about 1.2% of the range) is at the edge of plainly visible on
    # large areas; codec noise on a steady picture measures about 0.1-0.3
    scores["flicker"] = _falloff(raw["flicker"], 3.0)
    # temporal noise of 4 grey levels (1.6% of the range) on flat areas is plainly visible grain; the
    # clean clips here measure 0.1-0.8 (codec residue). The robust sigma: hand-held camera footage's warping
    # errors are not grain (its mean-based sigma reads 2.5 on clean clips, its MAD sigma about 1)
    scores["noise"] = _falloff(raw["noise_mad"], 4.0)
    scores.update(fault_scores(raw))
    scores.update(motion_scores(raw, still_ok))
    vq = _geomean(scores, VQ_WEIGHTS) * math.prod(max(scores[k], FAULT_FLOOR) for k in VQ_FAULTS)
    mq, mq_worst = mq_of(scores)
    vq_keys = [k for k in (*VQ_WEIGHTS, *VQ_FAULTS) if k != "colourfulness"]
    worst = {"vq": min(vq_keys, key=lambda k: scores[k]), "mq": mq_worst}
    return scores, vq, mq, worst


# A prompt that asks for a still scene: then a video that does not move is what was asked for, and the
# dynamics score is 1 (`rescore`). Plain words of stillness only; "slow" or "calm" still ask for motion.
STILL_PROMPT = re.compile(r"\b(still (image|photo|photograph|picture|shot|frame|scene|life)|static (shot|scene|image|"
                          r"camera shot|frame)|freeze[- ]frame|motionless|(no|without) (motion|movement)|"
                          r"nothing moves|not moving|photograph of)\b", re.IGNORECASE)


def asks_for_still(prompt: str) -> bool:
    """Whether a prompt asks for a still scene (STILL_PROMPT)."""
    return bool(STILL_PROMPT.search(prompt or ""))


def mq_of(scores: Mapping[str, float]) -> tuple[float, str]:
    """(MQ, the score that pulled it down) from the MQ_WEIGHTS scores: sqrt(weighted geometric mean x the
    lowest of them), so one bad motion score pulls MQ at least halfway (in log terms) to itself."""
    worst = min(MQ_WEIGHTS, key=lambda k: scores[k])
    return math.sqrt(_geomean(scores, MQ_WEIGHTS) * max(scores[worst], _FLOOR)), worst


def used_positions(n: int, max_frames: int = MAX_FRAMES) -> list[int]:
    """The positions (of n frames) the measures look at: the spatial picks, the motion windows and the
    middle run for the echo. A long video's other frames need not be converted, resized or kept."""
    used = set(_spread(n, SPATIAL_FRAMES).tolist())
    for a, b in _windows(n, max_frames):
        used.update(range(a, b))
    a = max(0, (n - max_frames) // 2)
    used.update(range(a, min(n, a + max_frames)))
    return sorted(used)


def measure_frames(frames: np.ndarray, path: str = "", indices: Sequence[int] | None = None,
                   max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE,
                   native: Sequence[np.ndarray] | None = None) -> VideoMeasures:
    """Weight-free measures of RGB uint8 frames [T, H, W, 3] (T >= 3), consecutive unless `indices`
    gives each frame's source frame number (then motion is normalised per source frame).

    `native`: luma crops at the video's own resolution for the native-grid measures (dqa.measures.nr); when None
    they are taken from `frames` before any resize (so in-memory frames at full size need nothing else)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) < MIN_FRAMES:
        raise VideoError(path, f"only {len(frames)} frames; at least {MIN_FRAMES} are needed to judge motion")
    if native is None:
        native = list(_luma(np.stack([nr.native_crop(f) for f in frames[_spread(len(frames), DETAIL_FRAMES)]])))
    return _measure(dict(enumerate(frames)), len(frames), path, indices, max_frames, max_side, native)


def _measure(frames: Mapping[int, np.ndarray], n: int, path, indices, max_frames: int, max_side: int,
             native: Sequence[np.ndarray]) -> VideoMeasures:
    """measure_frames over `frames`, position -> RGB frame, holding at least used_positions(n)."""
    t0 = time.perf_counter()
    used = used_positions(n, max_frames)
    if max(frames[used[0]].shape[:2]) <= max_side:  # decoded at the working size already: no copy
        rgb = {i: frames[i] for i in used}
    else:
        rgb = dict(zip(used, _resize(np.stack([frames[i] for i in used]), max_side)))
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    notes = []
    ys = {i: _luma1(rgb[i]) for i in used}  # once: the spatial picks are among them
    picks = _spread(n, SPATIAL_FRAMES)
    size = next(iter(rgb.values())).shape[:2]

    def pictures() -> dict[str, float]:
        out = spatial_measures([rgb[i] for i in picks], [ys[i] for i in picks])
        out.update(nr.picture_measures(list(native)))
        return out

    def run(a: int, b: int) -> list[np.ndarray]:
        return [ys[i] for i in range(a, b)]

    # The per-picture measures run beside the motion measures: both spend their time in OpenCV and numpy,
    # which let go of the interpreter, so a second core does them meanwhile (the same numbers either way).
    with ThreadPoolExecutor(1) if OVERLAP else nullcontext() as pool:
        later = pool.submit(pictures) if pool else None
        acc = _Motion()
        for a, b in _windows(n, max_frames):
            _window_motion(run(a, b), np.maximum(np.diff(idx[a:b]), 1).astype(np.float32), acc)
        raw = later.result() if later else pictures()
    a = max(0, (n - max_frames) // 2)  # the middle run of up to max_frames frames
    raw["echo"] = echo(run(a, min(n, a + max_frames)), np.diff(idx[a:a + max_frames]))
    raw.update(motion_measures(acc, max(size)))
    scores, vq, mq, worst = score_measures(raw)
    if math.isnan(raw["accel_ratio"]):
        notes.append("static: no visible motion; the clip is scored as a still image posing as a video "
                     f"(dynamics {scores['dynamics']:.2f})")
    if len(idx) > 1 and np.any(np.diff(idx) > 1):
        notes.append("frames are not consecutive (long video subsampled): short stutters or holds may "
                     "be missed; motion is normalised per source frame")
    return VideoMeasures(path=str(path), measures=raw, scores=scores, vq=vq, mq=mq,
                         seconds=time.perf_counter() - t0, notes=tuple(notes), frames=n,
                         size=(size[1], size[0]), worst=worst)


def _spread(n: int, k: int) -> np.ndarray:
    """Up to k positions spread evenly over range(n), first and last included."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def decode(path, max_side: int = MAX_SIDE, max_frames: int = MAX_FRAMES):
    """One pass over `path`: the positions of up to DECODE_CAP frames, RGB uint8 frames capped at `max_side`
    for the positions the measures use (used_positions; the rest are only grabbed), native-resolution luma
    crops of DETAIL_FRAMES of them (dqa.measures.nr), and the VideoInfo. Raises VideoError like the decoder."""
    import cv2

    from vrthinker.media.decode import VideoInfo, capped_size, decode_frames

    chosen: dict[int, tuple[list[int], set]] = {}

    def pick(total: int) -> list[int]:
        idx = sorted(set(np.linspace(0, total - 1, min(DECODE_CAP, total)).round().astype(int).tolist()))
        detail = {idx[i] for i in _spread(len(idx), DETAIL_FRAMES)}
        chosen[total] = (idx, detail)
        return sorted({idx[i] for i in used_positions(len(idx), max_frames)} | detail)

    def convert(bgr: np.ndarray, n: int):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        crop = None
        if any(n in c[1] for c in chosen.values()):
            crop = _luma(nr.native_crop(rgb)[None])[0]
        nh, nw = capped_size(w, h, max_side)
        if (nh, nw) != (h, w):
            rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        return rgb, crop

    d = decode_frames(path, pick, convert, 1)
    idx = tuple(chosen[d.total_frames][0]) if d.total_frames in chosen else tuple(d.frames)
    pos = {k: i for i, k in enumerate(idx)}
    frames = {pos[k]: v[0] for k, v in d.frames.items() if k in pos}
    crops = [d.frames[k][1] for k in sorted(d.frames) if d.frames[k][1] is not None]
    crops = [crops[i] for i in _spread(len(crops), DETAIL_FRAMES)] if crops else []
    info = VideoInfo(os.fspath(path), d.total_frames, d.fps, d.width, d.height, idx, d.count_note)
    return frames, crops, info


def measure_video(path, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE) -> VideoMeasures:
    """THE weight-free measurement of a file, shared by `judge --backend metrics` and `dqa score`: one decode
    (`decode`), then what `measure_frames` does, on the frames it uses. Raises VideoError for a missing,
    corrupt or too-short video (fewer than MIN_FRAMES frames)."""
    t0 = time.perf_counter()
    frames, crops, info = decode(path, max_side=max_side, max_frames=max_frames)
    n = len(info.indices)
    if n < MIN_FRAMES:
        raise VideoError(path, f"only {n} frames; at least {MIN_FRAMES} are needed to judge motion")
    if not crops:
        crops = [_luma(nr.native_crop(frames[i])[None])[0] for i in _spread(n, DETAIL_FRAMES)]
    m = _measure(frames, n, str(path), info.indices or None, max_frames, max_side, crops)
    notes = m.notes + ((info.count_note,) if info.count_note else ())
    return dataclasses.replace(m, seconds=time.perf_counter() - t0, notes=notes,
                               info={"total_frames": info.total_frames, "fps": info.fps, "width": info.width,
                                     "height": info.height})
