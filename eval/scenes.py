"""A content-diverse suite of clean scenes and the defects done to them, with a FIXED calibration/held-out split.

Every family renders clean, moving content of one common kind (smooth gradients, flat colours, cartoon cel
shading, text and UI, night, fog, fast motion, a slow camera, film grain, natural-like texture, small hard
objects over soft gradients, a static camera with one moving subject) plus the four older `synth` scenes.
Defect kinds (`KINDS`) damage one clip in one way: picture faults, codec faults (x264, VP9, AV1 at low
quality), and motion faults (stutter, shake, freezes, a wholly frozen or mostly still video).

SPLIT (below) was written down before any result of this suite was looked at, and never changed after:
thresholds, noise floors and fault curves may be set on CAL_FAMILIES x CAL_KINDS only; everything else is
held out and reported first.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------------------------------------
# THE FIXED SPLIT (written first; do not move a family or kind after looking at results)

FAMILIES = ("shapes", "pan", "orbit", "text", "gradient", "cartoon", "night", "texture", "slow",
            "flat", "ui", "fog", "fast", "grain", "objects_gradient", "still_camera")
# 9 of 16 families calibrate; 7 (44%) are held out whole: none of their clips is used to set anything.
CAL_FAMILIES = ("shapes", "pan", "orbit", "text", "gradient", "cartoon", "night", "texture", "slow")
HELD_FAMILIES = ("flat", "ui", "fog", "fast", "grain", "objects_gradient", "still_camera")

KINDS = ("blur", "noise", "flicker", "washed_out", "x264_crf45", "downup", "overexpose", "banding",
         "stutter", "shake", "freeze", "frozen",
         "vp9_low", "av1_low", "ghosting", "interlace", "underexpose", "shuffle", "dropped", "mostly_still")
# 12 of 20 kinds calibrate; 8 (40%) are held out whole.
CAL_KINDS = ("blur", "noise", "flicker", "washed_out", "x264_crf45", "downup", "overexpose", "banding",
             "stutter", "shake", "freeze", "frozen")
HELD_KINDS = ("vp9_low", "av1_low", "ghosting", "interlace", "underexpose", "shuffle", "dropped", "mostly_still")


def split_of(family: str, kind: str | None = None) -> str:
    """'calibration' when both the family and the kind (if any) calibrate, else 'held-out'."""
    seen = family in CAL_FAMILIES and (kind is None or kind in CAL_KINDS)
    return "calibration" if seen else "held-out"

# ----------------------------------------------------------------------------------------------------------
# clean scenes

import math  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vrthinker_eval import synth  # noqa: E402


def _u8(x) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _colour(rng, lo: float = 0.2, hi: float = 0.9) -> np.ndarray:
    """A random saturated-ish RGB colour, float32 0..255."""
    hue = rng.random()
    c = np.array([math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)])
    return (255 * (lo + (hi - lo) * (0.5 + 0.5 * c))).astype(np.float32)


def _linear_gradient(h, w, angle, c0, c1, shift=0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(h, w) + shift
    t = 0.5 + 0.5 * np.sin(math.pi * (t - 0.5))  # smooth, no clipped ends
    return c0 + t[..., None] * (c1 - c0)


def _blobs(rng, h, w, n, sigma_frac):
    """Soft blobs (clouds, glows): a sum of wide Gaussians on random paths; returns a draw(i) function."""
    items = [dict(x=rng.uniform(0, w), y=rng.uniform(0, h), vx=rng.uniform(-1.5, 1.5) * w / 480,
                  vy=rng.uniform(-0.5, 0.5) * h / 270, s=max(h, w) * rng.uniform(*sigma_frac),
                  a=rng.uniform(0.3, 0.7)) for _ in range(n)]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def draw(i):
        out = np.zeros((h, w), np.float32)
        for b in items:
            cx, cy = b["x"] + b["vx"] * i, b["y"] + b["vy"] * i
            out += b["a"] * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * b["s"] ** 2))
        return np.clip(out, 0, 1)
    return draw


def _poly(kind, cx, cy, r, ang):
    return synth._shape_points(kind, cx, cy, r, ang)


def _scene_gradient(rng, w, h, n):
    """Smooth sky-like gradients that shift, with soft drifting glows: no hard edge anywhere."""
    c0, c1, c2 = _colour(rng, 0.1, 0.6), _colour(rng, 0.4, 0.95), _colour(rng, 0.5, 1.0)
    ang = rng.uniform(0, math.pi)
    glows = _blobs(rng, h, w, 4, (0.08, 0.2))
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        g = _linear_gradient(h, w, ang + 0.004 * i, c0, c1, shift=0.003 * i)
        a = glows(i)[..., None]
        out[i] = _u8(g * (1 - 0.6 * a) + c2 * 0.6 * a)
    return out


def _scene_flat(rng, w, h, n):
    """Flat colour fields: large flat shapes (anti-aliased edges, no texture) sliding over a flat ground."""
    bg = _colour(rng, 0.3, 0.9)
    shapes = [dict(kind=str(rng.choice(["rect", "tri", "circle", "star"])), r=min(h, w) * rng.uniform(0.12, 0.3),
                   col=tuple(float(c) for c in _colour(rng, 0.1, 1.0)), x=rng.uniform(0, w), y=rng.uniform(0, h),
                   vx=rng.uniform(-2.5, 2.5) * w / 480, vy=rng.uniform(-1.2, 1.2) * h / 270,
                   spin=rng.uniform(-0.02, 0.02), a0=rng.uniform(0, 6.3)) for _ in range(int(rng.integers(3, 6)))]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[:] = _u8(bg)
        for s in shapes:
            pts = _poly(s["kind"], s["x"] + s["vx"] * i, s["y"] + s["vy"] * i, s["r"], s["a0"] + s["spin"] * i)
            cv2.fillPoly(f, [synth._fix(pts)], s["col"], cv2.LINE_AA, 4)
        out[i] = f
    return out


def _scene_cartoon(rng, w, h, n):
    """Anime-style cel shading: flat two-tone shapes with hard black outlines over a flat sky and ground,
    the background panning."""
    sky, ground = _colour(rng, 0.5, 1.0), _colour(rng, 0.2, 0.6)
    horizon = h * rng.uniform(0.55, 0.7)
    hills = synth._ridge(rng, w * 3, horizon, h * 0.06, octaves=3)
    chars = [dict(kind=str(rng.choice(["circle", "rect", "star"])), r=min(h, w) * rng.uniform(0.08, 0.16),
                  col=_colour(rng, 0.3, 1.0), x=rng.uniform(0.2, 0.8) * w, y=rng.uniform(0.3, 0.7) * h,
                  ax=rng.uniform(10, 40) * w / 480, f=rng.uniform(0.02, 0.06), ph=rng.uniform(0, 6.3))
             for _ in range(int(rng.integers(2, 4)))]
    speed = rng.uniform(1.0, 2.5) * w / 480
    line = max(2, round(min(h, w) / 120))
    xs = np.arange(w)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[:] = _u8(sky)
        ridge = np.interp(xs + speed * i, np.arange(len(hills)), hills)
        pts = np.concatenate([np.stack([xs, ridge], 1), [[w - 1, h], [0, h]]])
        cv2.fillPoly(f, [synth._fix(pts)], tuple(float(c) for c in ground), cv2.LINE_AA, 4)
        cv2.polylines(f, [synth._fix(np.stack([xs, ridge], 1))], False, (20, 20, 20), line, cv2.LINE_AA, 4)
        for c in chars:
            cx = c["x"] + c["ax"] * math.sin(c["f"] * 2 * math.pi * i + c["ph"])
            cy = c["y"] + 0.3 * c["ax"] * math.cos(c["f"] * 4 * math.pi * i + c["ph"])
            body = _poly(c["kind"], cx, cy, c["r"], 0.1 * math.sin(0.05 * i))
            shade = _poly(c["kind"], cx + 0.25 * c["r"], cy + 0.25 * c["r"], 0.7 * c["r"], 0.1 * math.sin(0.05 * i))
            cv2.fillPoly(f, [synth._fix(body)], tuple(float(v) for v in c["col"]), cv2.LINE_AA, 4)
            cv2.fillPoly(f, [synth._fix(shade)], tuple(float(v) * 0.7 for v in c["col"]), cv2.LINE_AA, 4)
            cv2.polylines(f, [synth._fix(body)], True, (15, 15, 15), line, cv2.LINE_AA, 4)
        out[i] = f
    return out


_UI_WORDS = ("Settings", "Profile", "Inbox", "Search", "Upload", "Delete", "Archive", "Reply", "Share",
             "Export", "Account", "Billing", "Help", "Logout", "Draft", "Report", "Filter", "Sort")


def _scene_ui(rng, w, h, n):
    """A screen recording: flat panels, small text in a scrolling list, a moving cursor and a progress bar."""
    dark = rng.random() < 0.5
    bg, panel, ink = ((32, 34, 40), (48, 52, 60), (225, 228, 235)) if dark else \
        ((245, 246, 248), (228, 231, 236), (30, 32, 38))
    accent = tuple(float(c) for c in _colour(rng, 0.2, 0.85))
    row = max(14, h // 14)
    scale = row / 34
    rows_h = row * 80
    lst = np.empty((rows_h, w, 3), np.uint8)
    lst[:] = bg
    for r in range(80):
        y = r * row
        if r % 2:
            lst[y:y + row] = panel
        text = " ".join(rng.choice(_UI_WORDS, size=3))
        cv2.putText(lst, f"{r + 1:02d}  {text}", (int(w * 0.25), y + int(row * 0.7)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, ink, 1, cv2.LINE_AA)
    speed = rng.uniform(0.8, 2.0) * h / 270
    out = np.empty((n, h, w, 3), np.uint8)
    top = row + 4
    for i in range(n):
        y0 = speed * i
        m = np.float32([[1, 0, 0], [0, 1, -y0]])
        f = cv2.warpAffine(lst, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        f[:top] = panel
        cv2.putText(f, "Dashboard", (8, int(row * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale * 1.1, ink, 1, cv2.LINE_AA)
        f[:, : int(w * 0.2)] = panel  # sidebar
        for k in range(6):
            cv2.putText(f, _UI_WORDS[k], (6, top + (k + 1) * row), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1,
                        cv2.LINE_AA)
        bw = int(w * 0.5 * ((i / max(n - 1, 1)) * 0.8 + 0.1))
        cv2.rectangle(f, (int(w * 0.45), 4), (int(w * 0.45) + bw, top - 6), accent, -1)
        cx, cy = w * (0.3 + 0.5 * i / max(n, 1)), h * (0.5 + 0.3 * math.sin(i / 9))
        cur = np.array([[cx, cy], [cx, cy + row * 0.9], [cx + row * 0.25, cy + row * 0.7],
                        [cx + row * 0.6, cy + row * 0.6]])
        cv2.fillPoly(f, [synth._fix(cur)], (255, 255, 255) if dark else (0, 0, 0), cv2.LINE_AA, 4)
        out[i] = f
    return out


def _scene_night(rng, w, h, n):
    """A night street: a dark gradient sky, dark textured buildings with lit windows, street lamps, a car
    with headlights crossing."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    sky = synth._colorize(np.broadcast_to(yy / h, (h, w)), (4, 6, 18), (18, 22, 40))
    img = sky.copy()
    bld = synth._textured(rng, h, w, (10, 10, 14), (28, 26, 30), grain=2.0)
    x = 0
    while x < w:
        bw, bh = int(rng.uniform(0.1, 0.25) * w), int(rng.uniform(0.3, 0.7) * h)
        img[h - bh:, x:x + bw] = bld[h - bh:, x:x + bw]
        for wy in range(h - bh + 8, h - 20, max(8, h // 20)):
            for wx in range(x + 5, x + bw - 6, max(8, w // 40)):
                if rng.random() < 0.3:
                    img[wy:wy + 4, wx:wx + 3] = (200, 170, 90)
        x += bw + int(rng.uniform(0, 0.04) * w)
    lamps = [(rng.uniform(0.1, 0.9) * w, h * 0.55) for _ in range(3)]
    yy2, xx2 = np.mgrid[0:h, 0:w].astype(np.float32)
    for lx, ly in lamps:
        img += (np.exp(-((xx2 - lx) ** 2 + (yy2 - ly) ** 2) / (2 * (0.05 * w) ** 2)) * 90)[..., None] * \
            np.float32([1.0, 0.8, 0.45])
    speed = rng.uniform(3, 6) * w / 480 * rng.choice([-1, 1])
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = img.copy()
        cx = (w * 0.5 + speed * (i - n / 2)) % (w * 1.2) - 0.1 * w
        cy = h * 0.85
        glow = np.exp(-((xx2 - cx) ** 2 + ((yy2 - cy) * 2) ** 2) / (2 * (0.04 * w) ** 2))
        f += (glow * 160)[..., None] * np.float32([1.0, 1.0, 0.9])
        fu = _u8(f)
        cv2.rectangle(fu, (int(cx - 0.08 * w), int(cy - 0.03 * h)), (int(cx + 0.08 * w), int(cy + 0.04 * h)),
                      (25, 25, 30), -1, cv2.LINE_AA)
        cv2.circle(fu, (int(cx + 0.07 * w * np.sign(speed)), int(cy)), max(2, w // 120), (255, 250, 230), -1,
                   cv2.LINE_AA)
        out[i] = fu
    return out


def _landscape(rng, w, h):
    far = synth._textured(rng, h, w, (90, 110, 140), (170, 180, 200), grain=6)
    ridge = synth._ridge(rng, w, h * 0.5, h * 0.1)
    yy = np.arange(h, dtype=np.float32)[:, None]
    near = synth._textured(rng, h, w, (50, 90, 40), (140, 160, 80), grain=14)
    m = yy > ridge[None, :]
    far[m] = near[m]
    return far


def _scene_fog(rng, w, h, n):
    """Fog and haze: a textured landscape under a thick, slowly drifting veil (low contrast by nature)."""
    big = _landscape(rng, int(w * 1.4), h)
    haze = np.float32(_colour(rng, 0.75, 0.9))
    veil = _blobs(rng, h, w, 5, (0.15, 0.3))
    speed = rng.uniform(0.5, 1.2) * w / 480
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        m = np.float32([[1, 0, -speed * i], [0, 1, 0]])
        f = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        a = (0.6 + 0.25 * veil(i))[..., None]
        out[i] = _u8(f * (1 - a) + haze * a)
    return out


def _scene_fast(rng, w, h, n):
    """Fast motion: a quick pan (8-14 px per frame at 480 px) over a textured scene with objects racing
    across, each frame averaged over its exposure (motion blur, as a camera records it)."""
    big = _landscape(rng, w * 4, h)
    speed = rng.uniform(8, 14) * w / 480
    objs = [dict(r=min(h, w) * rng.uniform(0.05, 0.1), col=tuple(float(c) for c in _colour(rng, 0.3, 1.0)),
                 y=rng.uniform(0.2, 0.8) * h, v=rng.uniform(10, 20) * w / 480 * rng.choice([-1, 1]),
                 x=rng.uniform(0, w)) for _ in range(3)]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        acc = np.zeros((h, w, 3), np.float32)
        for s in (0.0, 0.25, 0.5):
            t = i + s
            m = np.float32([[1, 0, -speed * t], [0, 1, 0]])
            f = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            fu = _u8(f)
            for o in objs:
                cx = (o["x"] + o["v"] * t) % (w + 4 * o["r"]) - 2 * o["r"]
                cv2.circle(fu, (int(cx * 16), int(o["y"] * 16)), int(o["r"] * 16), o["col"], -1, cv2.LINE_AA, 4)
            acc += fu
        out[i] = _u8(acc / 3)
    return out


def _scene_slow(rng, w, h, n):
    """A slow camera: a gentle pan and zoom (about 0.4 px per frame) over a detailed landscape."""
    big = _landscape(rng, int(w * 1.3), int(h * 1.3))
    v = rng.uniform(0.3, 0.5) * w / 480 * rng.choice([-1, 1])
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        s = 1.0 + 0.0008 * i
        m = np.float32([[s, 0, -0.15 * w - v * i], [0, s, -0.15 * h]])
        out[i] = _u8(cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def _scene_grain(rng, w, h, n):
    """Film grain as style: a panning textured scene with fresh, fine grain every frame (sigma ~3 levels)."""
    base = _scene_slow(rng, w, h, n).astype(np.float32)
    g = rng.standard_normal(base.shape[:3], dtype=np.float32)
    g = np.stack([cv2.GaussianBlur(x, (0, 0), 0.6) for x in g])
    return _u8(base + 4.0 * g[..., None])


def _scene_texture(rng, w, h, n):
    """Natural-like texture (foliage, rock) filling the frame, the camera drifting and slowly rotating."""
    tex = synth._textured(rng, int(h * 1.6), int(w * 1.6), _colour(rng, 0.1, 0.4), _colour(rng, 0.5, 0.9),
                          grain=20)
    tex += 25 * np.sin(np.linspace(0, 20, tex.shape[1]))[None, :, None] * \
        synth._noise(rng, tex.shape[0], tex.shape[1])[..., None]
    out = np.empty((n, h, w, 3), np.uint8)
    cx, cy = tex.shape[1] / 2, tex.shape[0] / 2
    for i in range(n):
        m = cv2.getRotationMatrix2D((cx, cy), 0.15 * i, 1.0)
        m[:, 2] += (-(cx - w / 2) + 1.2 * i * w / 480, -(cy - h / 2))
        out[i] = _u8(cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def _scene_objects_gradient(rng, w, h, n):
    """Small hard-edged objects moving over soft gradients (a render, a motion-graphics clip)."""
    c0, c1 = _colour(rng, 0.15, 0.6), _colour(rng, 0.5, 1.0)
    ang = rng.uniform(0, math.pi)
    objs = [dict(kind=str(rng.choice(["rect", "tri", "star", "circle"])), r=min(h, w) * rng.uniform(0.025, 0.06),
                 col=tuple(float(c) for c in _colour(rng, 0.0, 1.0)), x=rng.uniform(0.1, 0.9) * w,
                 y=rng.uniform(0.1, 0.9) * h, vx=rng.uniform(-3, 3) * w / 480, vy=rng.uniform(-2, 2) * h / 270,
                 spin=rng.uniform(-0.08, 0.08)) for _ in range(int(rng.integers(5, 10)))]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = _u8(_linear_gradient(h, w, ang, c0, c1, shift=0.002 * i))
        for o in objs:
            x = (o["x"] + o["vx"] * i) % w
            y = (o["y"] + o["vy"] * i) % h
            cv2.fillPoly(f, [synth._fix(_poly(o["kind"], x, y, o["r"], o["spin"] * i))], o["col"], cv2.LINE_AA, 4)
        out[i] = f
    return out


def _scene_still_camera(rng, w, h, n):
    """A locked-off camera: a still, detailed room-like background; one subject walks across (a small part
    of the picture moves)."""
    bg = synth._textured(rng, h, w, _colour(rng, 0.2, 0.5), _colour(rng, 0.5, 0.8), grain=8)
    cv2.rectangle(bg, (int(0.1 * w), int(0.15 * h)), (int(0.35 * w), int(0.5 * h)), (200, 210, 220), -1)
    cv2.rectangle(bg, (int(0.6 * w), int(0.2 * h)), (int(0.85 * w), int(0.9 * h)), (90, 60, 40), -1)
    bg = _u8(bg)
    col = tuple(float(c) for c in _colour(rng, 0.2, 0.8))
    v = rng.uniform(1.5, 3.0) * w / 480 * rng.choice([-1, 1])
    x0 = 0.2 * w if v > 0 else 0.8 * w
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = bg.copy()
        x = x0 + v * i
        bob = 3 * math.sin(i * 0.5) * h / 270
        cv2.ellipse(f, (int(x * 16), int((0.62 * h + bob) * 16)), (int(0.04 * w * 16), int(0.14 * h * 16)), 0, 0,
                    360, col, -1, cv2.LINE_AA, 4)
        cv2.circle(f, (int(x * 16), int((0.42 * h + bob) * 16)), int(0.035 * w * 16), (220, 180, 150), -1,
                   cv2.LINE_AA, 4)
        out[i] = f
    return out


_RENDER = {"gradient": _scene_gradient, "flat": _scene_flat, "cartoon": _scene_cartoon, "ui": _scene_ui,
           "night": _scene_night, "fog": _scene_fog, "fast": _scene_fast, "slow": _scene_slow,
           "grain": _scene_grain, "texture": _scene_texture, "objects_gradient": _scene_objects_gradient,
           "still_camera": _scene_still_camera}


def render(family: str, width: int = 480, height: int = 272, frames: int = 48, seed: int = 0) -> np.ndarray:
    """Clean RGB uint8 frames [T, H, W, 3] of one family (FAMILIES); deterministic per (family, seed)."""
    if family in synth.SCENES:
        return synth.render_scene(family, width, height, frames, seed)
    if family not in _RENDER:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng([seed, FAMILIES.index(family), 24])
    return _RENDER[family](rng, int(width), int(height), int(frames))


# ----------------------------------------------------------------------------------------------------------
# defects (KINDS): picture and motion faults from vrthinker_eval.defects and .real_footage, codecs, freezes


def frozen(f, s, rng):
    """A still image posing as a video: one frame (of the first quarter) repeated for the whole length."""
    return f[np.full(len(f), int(rng.integers(0, max(1, len(f) // 4))))]


def mostly_still(f, s, rng):
    """Held still for most of its length: the first frame for 60% (s=0) to 90% (s=1) of it, then moving."""
    t = len(f)
    k = int(round(t * (0.6 + 0.3 * s)))
    idx = np.concatenate([np.zeros(k, int), np.arange(1, t - k + 1)])
    return f[idx]


def _kinds():
    from vrthinker_eval import defects as d
    from vrthinker_eval.codec import codec_roundtrip
    from vrthinker_eval import real_footage as r

    def x264(f, s, rng):
        return codec_roundtrip(f, "libx264", round(40 + 8 * s))  # CRF 40 (s=0) to 48 (s=1); 45 at s=0.6

    def vp9(f, s, rng):
        return codec_roundtrip(f, "libvpx-vp9", round(52 + 11 * s))

    def av1(f, s, rng):
        return codec_roundtrip(f, "libsvtav1", round(52 + 11 * s))

    return {"blur": d.blur, "noise": d.noise, "flicker": d.flicker, "washed_out": d.washed_out,
            "x264_crf45": x264, "downup": r.downup, "overexpose": r.overexpose, "banding": r.banding,
            "stutter": d.stutter, "shake": d.shake, "freeze": d.freeze, "frozen": frozen,
            "vp9_low": vp9, "av1_low": av1, "ghosting": r.ghosting, "interlace": r.interlace,
            "underexpose": r.underexpose, "shuffle": d.shuffle, "dropped": r.dropped, "mostly_still": mostly_still}


DIMENSION = {k: ("MQ" if k in ("stutter", "shake", "freeze", "frozen", "shuffle", "dropped", "mostly_still")
                 else "VQ") for k in KINDS}


def damage(frames: np.ndarray, kind: str, strength: float = 0.75, seed: int = 0) -> np.ndarray:
    """A copy of clean frames with one defect `kind` (KINDS) at `strength` in (0, 1]."""
    fns = _kinds()
    if kind not in fns:
        raise ValueError(f"unknown defect kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    rng = np.random.default_rng([seed, KINDS.index(kind), 24])
    return np.ascontiguousarray(fns[kind](np.asarray(frames), float(strength), rng))


def write(frames: np.ndarray, path, crf: int = 20) -> Path:
    """The common delivery encode every suite clip goes through: x264 CRF 20, 24 fps (as a generator ships)."""
    return synth.write_video(path, frames, fps=24, crf=crf)


def strength_of(family: str, kind: str, seed: int) -> float:
    """The strength a suite pair uses: drawn per (family, kind, seed) from [0.5, 1] (clearly visible)."""
    rng = np.random.default_rng([seed, FAMILIES.index(family), KINDS.index(kind), 7])
    return float(rng.uniform(0.5, 1.0))


def build_suite(root, families=FAMILIES, kinds=KINDS, seeds=(0,), width: int = 480, height: int = 272,
                frames: int = 48, reencodes=(17, 23)):
    """Write every clean clip, its damaged copies and its re-encodes (same content at other CRFs: the noise
    floor) under `root`, reusing files already there. Returns (pairs, reencodes): pairs are (family, seed,
    kind, clean path, damaged path); reencodes are (family, seed, [paths at each CRF, the clean one first])."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pairs, again = [], []
    for fam in families:
        for seed in seeds:
            stem = f"{fam}_{seed}_{width}x{height}x{frames}"
            clean_path = root / f"{stem}_clean.mp4"
            memo: dict = {}

            def get(fam=fam, seed=seed, memo=memo):
                if "clean" not in memo:
                    memo["clean"] = render(fam, width, height, frames, seed)
                return memo["clean"]
            if not clean_path.exists():
                write(get(), clean_path)
            others = []
            for crf in reencodes:
                p = root / f"{stem}_crf{crf}.mp4"
                if not p.exists():
                    write(get(), p, crf=crf)
                others.append(p)
            again.append((fam, seed, [clean_path, *others]))
            for kind in kinds:
                p = root / f"{stem}_{kind}.mp4"
                if not p.exists():
                    write(damage(get(), kind, strength_of(fam, kind, seed), seed), p)
                pairs.append((fam, seed, kind, clean_path, p))
    return pairs, again
