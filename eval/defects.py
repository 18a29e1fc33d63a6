"""Synthetic defects for quality-metric tests: damage a clean clip in one known way, at a known strength.

Each defect is a function `(frames, strength, rng) -> frames` on uint8 RGB [T, H, W, 3]; `strength` is in
(0, 1] (see LEVELS) and sizes scale with the frame size, so the same level means the same visual damage at
any resolution. DEFECT_DIMENSION says which judged dimension ("VQ" or "MQ") each defect is meant to hurt.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

# Named strengths used by the tests and the benchmark.
LEVELS = {"mild": 1 / 3, "medium": 2 / 3, "strong": 1.0}


def _luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB frames, float32 [T, H, W, 1]."""
    f = frames.astype(np.float32)
    return (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])[..., None]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def blur(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian defocus; sigma up to 1% of the long side (3.2 px at 320 px: clearly soft)."""
    sigma = 0.01 * strength * max(frames.shape[1:3])
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def noise(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Fresh Gaussian sensor noise each frame, std up to 15 grey levels (heavy low-light grain)."""
    sd = 15.0 * strength
    return _u8(frames.astype(np.float32) + rng.normal(0.0, sd, frames.shape).astype(np.float32))


def flicker(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random per-frame brightness gain, up to +-12% (unstable exposure / lighting)."""
    gain = 1.0 + 0.12 * strength * rng.uniform(-1.0, 1.0, len(frames))
    return _u8(frames.astype(np.float32) * gain[:, None, None, None].astype(np.float32))


def washed_out(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Desaturate (lose up to 70% of chroma) and flatten contrast toward a light grey (up to 50%)."""
    f = frames.astype(np.float32)
    y = _luma(frames)
    f = y + (f - y) * (1.0 - 0.7 * strength)
    # pull toward a light grey so blacks lift: the "washed" look of a hazy or over-processed picture
    target = 0.5 * f.mean(axis=(1, 2, 3), keepdims=True) + 0.5 * 170.0
    return _u8(target + (f - target) * (1.0 - 0.5 * strength))


def _nonadjacent(rng: np.random.Generator, candidates: np.ndarray, k: int) -> list[int]:
    """Up to k positions drawn from candidates, no two adjacent, in increasing order."""
    chosen: list[int] = []
    for p in rng.permutation(candidates):
        if len(chosen) >= k:
            break
        if all(abs(int(p) - c) > 1 for c in chosen):
            chosen.append(int(p))
    return sorted(chosen)


def stutter(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Drop frames and hold the previous one instead (up to 30% of frames), keeping the timeline."""
    t = len(frames)
    k = max(1, int(round(0.3 * strength * t)))
    idx = np.arange(t)
    for p in _nonadjacent(rng, np.arange(1, t), k):
        idx[p] = idx[p - 1]
    return frames[idx]


def shake(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random camera translation per frame, up to 2% of the long side; zoomed in so no border shows."""
    t, h, w = frames.shape[:3]
    amp = 0.02 * strength * max(h, w)
    scale = 1.0 + 2.0 * amp / min(h, w)
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        dx, dy = rng.uniform(-amp, amp, 2)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
        m[:, 2] += (dx, dy)
        out[i] = cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return out


def freeze(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Hold one frame for a stretch (up to 30% of the clip), then jump back onto the timeline (a stall)."""
    t = len(frames)
    n = max(2, int(round(0.3 * strength * t)))
    start = int(rng.integers(max(1, t // 6), max(2, t - n - t // 6)))
    idx = np.arange(t)
    idx[start:start + n] = start
    return frames[idx]


def shuffle(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Swap neighbouring frames at random places (one swap per 8 frames at full strength)."""
    t = len(frames)
    k = max(1, int(round(strength * t / 8)))
    idx = np.arange(t)
    # swaps at positions p, p+1 must not touch each other: keep starts at least 3 apart
    starts: list[int] = []
    for p in rng.permutation(np.arange(1, t - 2)):
        if len(starts) >= k:
            break
        if all(abs(int(p) - s) > 2 for s in starts):
            starts.append(int(p))
    for p in starts:
        idx[p], idx[p + 1] = idx[p + 1], idx[p]
    return frames[idx]


Defect = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

DEFECTS: dict[str, Defect] = {
    "blur": blur, "noise": noise, "flicker": flicker, "washed_out": washed_out,
    "stutter": stutter, "shake": shake, "freeze": freeze, "shuffle": shuffle,
}

# The judged dimension each defect damages: spatial look (VQ) or temporal behaviour (MQ).
DEFECT_DIMENSION = {
    "blur": "VQ", "noise": "VQ", "flicker": "VQ", "washed_out": "VQ",
    "stutter": "MQ", "shake": "MQ", "freeze": "MQ", "shuffle": "MQ",
}


def apply_defect(frames: np.ndarray, name: str, strength: float, seed: int = 0) -> np.ndarray:
    """Return a damaged copy of uint8 RGB frames [T, H, W, 3]; deterministic per (name, strength, seed).

    `strength` is a float in (0, 1] or a LEVELS name ("mild", "medium", "strong").
    """
    if name not in DEFECTS:
        raise ValueError(f"unknown defect {name!r}; choose one of {', '.join(DEFECTS)}")
    s = LEVELS[strength] if isinstance(strength, str) else float(strength)
    if not 0.0 < s <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) < 4:
        raise ValueError(f"need at least 4 frames to damage, got {len(frames)}")
    rng = np.random.default_rng([seed, list(DEFECTS).index(name)])
    return np.ascontiguousarray(DEFECTS[name](frames, s, rng))
