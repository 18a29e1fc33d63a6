"""Synthetic test clips: textured scenes with smooth motion, written as real H.264 MP4 files.

Used by the tests and benchmarks (no video data sets here) and later as inputs to quality metrics, so the
content has texture at several scales and sub-pixel motion rather than flat colours jumping by pixels.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

SCENES = ("shapes", "pan", "orbit", "text")

# ----------------------------------------------------------------------------------------------------------
# textures


def _noise(rng: np.random.Generator, h: int, w: int, base: int = 3, octaves: int = 5,
           persistence: float = 0.55) -> np.ndarray:
    """Multi-octave value noise in [0, 1], float32 [h, w]: cheap cubic upsampling of random grids."""
    out = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    aspect = w / max(h, 1)
    for o in range(octaves):
        gh = base * 2 ** o + 2
        gw = max(2, int(round(gh * aspect)))
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        norm += amp
        amp *= persistence
    out /= norm
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _grain(rng: np.random.Generator, h: int, w: int, sigma: float = 0.8) -> np.ndarray:
    """Fine zero-mean grain (lightly blurred so it is texture, not pure noise), float32 about [-1, 1]."""
    g = rng.standard_normal((h, w), dtype=np.float32)
    return cv2.GaussianBlur(g, (0, 0), sigma)


def _colorize(t: np.ndarray, c0, c1) -> np.ndarray:
    """Map a [0, 1] field onto the segment between two RGB colours, float32 [h, w, 3]."""
    c0 = np.asarray(c0, np.float32)
    c1 = np.asarray(c1, np.float32)
    return c0 + t[..., None] * (c1 - c0)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def _textured(rng: np.random.Generator, h: int, w: int, c0, c1, grain: float = 10.0) -> np.ndarray:
    """A coloured noise texture with grain, float32 [h, w, 3]."""
    img = _colorize(_noise(rng, h, w), c0, c1)
    img += grain * _grain(rng, h, w)[..., None]
    return img


def _random_color(rng: np.random.Generator, lo: int = 40) -> tuple[int, int, int]:
    hue = rng.random()
    c = np.array([math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)])
    c = lo + (255 - lo) * (0.5 + 0.5 * c)
    return tuple(int(v) for v in c)


def _fix(pts: np.ndarray) -> np.ndarray:
    """Float points -> int32 with 4 fractional bits (cv2 `shift=4`) for sub-pixel drawing."""
    return np.round(pts * 16).astype(np.int32)


# ----------------------------------------------------------------------------------------------------------
# scenes


def _shape_points(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if kind == "rect":
        base = np.array([[-1, -0.6], [1, -0.6], [1, 0.6], [-1, 0.6]], np.float64)
    elif kind == "tri":
        base = np.array([[math.cos(a), math.sin(a)] for a in np.linspace(0, 2 * math.pi, 4)[:3]])
    elif kind == "star":
        a = np.linspace(0, 2 * math.pi, 11)[:10]
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        base = np.stack([rad * np.cos(a), rad * np.sin(a)], 1)
    else:  # "circle" as a 24-gon so it rotates visibly with its inner detail
        a = np.linspace(0, 2 * math.pi, 25)[:24]
        base = np.stack([np.cos(a), np.sin(a)], 1)
    c, s = math.cos(angle), math.sin(angle)
    rot = base @ np.array([[c, s], [-s, c]])
    return rot * r + np.array([cx, cy])


def _scene_shapes(rng, w, h, n):
    bg = _to_u8(_textured(rng, h, w, _random_color(rng, 30), _random_color(rng, 90), grain=12))
    # a faint grid makes background structure that a metric can track
    step = max(8, min(w, h) // 8)
    bg[::step, :, :] = (bg[::step, :, :] * 0.7).astype(np.uint8)
    bg[:, ::step, :] = (bg[:, ::step, :] * 0.7).astype(np.uint8)
    m = min(w, h)
    shapes = []
    for _ in range(int(rng.integers(5, 8))):
        shapes.append(dict(
            kind=str(rng.choice(["rect", "tri", "star", "circle"])),
            r=m * rng.uniform(0.06, 0.13),
            color=_random_color(rng),
            ax=w * rng.uniform(0.15, 0.38), ay=h * rng.uniform(0.15, 0.38),
            fx=rng.uniform(0.004, 0.02) * rng.choice([-1, 1]),
            fy=rng.uniform(0.004, 0.02) * rng.choice([-1, 1]),
            px=rng.uniform(0, 2 * math.pi), py=rng.uniform(0, 2 * math.pi),
            spin=rng.uniform(-0.05, 0.05), a0=rng.uniform(0, 2 * math.pi),
        ))
    out = np.empty((n, h, w, 3), np.uint8)
    shadow_off = np.array([m * 0.015, m * 0.02])
    for i in range(n):
        f = out[i]
        f[:] = bg
        for s in shapes:
            cx = w / 2 + s["ax"] * math.sin(2 * math.pi * s["fx"] * i + s["px"])
            cy = h / 2 + s["ay"] * math.sin(2 * math.pi * s["fy"] * i + s["py"])
            ang = s["a0"] + s["spin"] * i
            pts = _shape_points(s["kind"], cx, cy, s["r"], ang)
            cv2.fillPoly(f, [_fix(pts + shadow_off)], (20, 20, 20), cv2.LINE_AA, 4)
            cv2.fillPoly(f, [_fix(pts)], s["color"], cv2.LINE_AA, 4)
            light = tuple(min(255, int(c * 0.6 + 110)) for c in s["color"])
            inner = _shape_points(s["kind"], cx - s["r"] * 0.15, cy - s["r"] * 0.15, s["r"] * 0.5, ang)
            cv2.fillPoly(f, [_fix(inner)], light, cv2.LINE_AA, 4)
            cv2.polylines(f, [_fix(pts)], True, (10, 10, 10), max(1, int(m / 200)), cv2.LINE_AA, 4)
    return out


def _ridge(rng, length: int, base: float, amp: float, octaves: int = 6) -> np.ndarray:
    """A 1-D height profile (rows from the top) made of summed random-phase sines."""
    x = np.arange(length, dtype=np.float64)
    y = np.full(length, base)
    wl = length / 2.0
    for _ in range(octaves):
        y += amp * np.sin(2 * math.pi * x / wl + rng.uniform(0, 2 * math.pi))
        amp *= 0.5
        wl /= 2.2
    return y


def _scene_pan(rng, w, h, n):
    speed_near = w * rng.uniform(0.004, 0.008) * rng.choice([-1, 1])  # pixels per frame
    speed_far = speed_near * 0.35
    n_q = 256 * math.ceil(n / 256)  # landscape size in steps of 256 frames: a longer clip starts the same
    far_w = w + int(math.ceil(abs(speed_far) * n_q)) + 4
    near_w = w + int(math.ceil(abs(speed_near) * n_q)) + 4
    yy = np.arange(h, dtype=np.float32)[:, None]
    # far layer: sky gradient with clouds, and distant mountains
    sky_t = np.broadcast_to(yy / h, (h, far_w))
    far = _colorize(sky_t, (70, 120, 200), (200, 220, 240))
    clouds = _noise(rng, h, far_w, base=2, octaves=5)
    far += (np.clip(clouds - 0.5, 0, 1) * 2 * 120)[..., None]
    ridge = _ridge(rng, far_w, h * 0.45, h * 0.12)
    mount = yy > ridge[None, :]
    mtex = _textured(rng, h, far_w, (70, 80, 110), (140, 140, 170), grain=8)
    far[mount] = mtex[mount]
    far = _to_u8(far)
    # near layer: hills and ground with grass texture, with an alpha mask (anti-aliased edge)
    ridge2 = _ridge(rng, near_w, h * 0.62, h * 0.1)
    alpha = np.clip(yy - ridge2[None, :] + 0.5, 0, 1).astype(np.float32)
    depth = np.clip((yy - ridge2[None, :]) / (h * 0.4), 0, 1)
    near = _textured(rng, h, near_w, (50, 110, 40), (130, 170, 60), grain=18)
    near *= (0.75 + 0.45 * depth)[..., None]
    near = _to_u8(near)
    # scattered "trees": dark blobs on the hills
    for _ in range(int(near_w / max(w, 1) * 14)):
        x = rng.uniform(0, near_w)
        y = float(np.interp(x, np.arange(near_w), ridge2)) + rng.uniform(2, h * 0.2)
        r = h * rng.uniform(0.015, 0.04)
        cv2.ellipse(near, (int(x * 16), int(y * 16)), (int(r * 16), int(r * 1.6 * 16)), 0, 0, 360,
                    (25, 60 + int(rng.integers(0, 40)), 25), -1, cv2.LINE_AA, 4)
    out = np.empty((n, h, w, 3), np.uint8)
    x_far0 = 0.0 if speed_far > 0 else far_w - w - 2.0
    x_near0 = 0.0 if speed_near > 0 else near_w - w - 2.0
    for i in range(n):
        mf = np.float32([[1, 0, -(x_far0 + speed_far * i)], [0, 1, 0]])
        mn = np.float32([[1, 0, -(x_near0 + speed_near * i)], [0, 1, 0]])
        a = cv2.warpAffine(alpha, mn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        f = cv2.warpAffine(far, mf, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        nr = cv2.warpAffine(near, mn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[i] = cv2.blendLinear(nr, f, a, 1.0 - a)
    return out


def _scene_orbit(rng, w, h, n):
    yy = np.arange(h, dtype=np.float32)[:, None]
    sky = _colorize(np.broadcast_to(yy / h, (h, w)), (15, 20, 70), (230, 130, 70))
    sky += (np.clip(_noise(rng, h, w, base=2) - 0.55, 0, 1) * 160)[..., None]
    stars = rng.random((h, w)) > 0.9985
    sky[stars & (yy < h * 0.6)] = 255
    sky = _to_u8(sky)
    m = min(w, h)
    pr = m * 0.2
    cx, cy = w / 2, h * 0.52
    # planet: textured disc with limb darkening, pasted through a mask so moons can pass behind it
    side = int(math.ceil(pr * 2)) + 4
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    d = np.hypot(xs - side / 2, ys - side / 2) / pr
    pmask = np.clip((1.0 - d) * pr + 0.5, 0, 1)
    ptex = _textured(rng, side, side, _random_color(rng, 20), _random_color(rng, 120), grain=10)
    ptex *= np.sqrt(np.clip(1 - d ** 2, 0, 1))[..., None] * 0.8 + 0.2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1, sy1 = min(side, w - x0), min(side, h - y0)
    pm = pmask[sy0:sy1, sx0:sx1, None]
    pt = ptex[sy0:sy1, sx0:sx1]
    moons = []
    for _ in range(int(rng.integers(3, 6))):
        moons.append(dict(
            a=m * rng.uniform(0.3, 0.75), b=m * rng.uniform(0.05, 0.2), tilt=rng.uniform(-0.4, 0.4),
            speed=rng.uniform(0.01, 0.035) * rng.choice([-1, 1]), ph=rng.uniform(0, 2 * math.pi),
            r=m * rng.uniform(0.03, 0.06), color=_random_color(rng, 60),
        ))

    def draw_moon(f, mo, ang):
        ex, ey = mo["a"] * math.cos(ang), mo["b"] * math.sin(ang)
        c, s = math.cos(mo["tilt"]), math.sin(mo["tilt"])
        x, y = cx + ex * c - ey * s, cy + ex * s + ey * c
        r = mo["r"] * (1 + 0.35 * math.sin(ang))  # nearer is bigger
        for k, shade in ((1.0, 0.45), (0.8, 0.75), (0.5, 1.0), (0.25, 1.25)):
            col = tuple(min(255, int(v * shade)) for v in mo["color"])
            off = (1 - k) * r * 0.4
            cv2.circle(f, (int((x - off) * 16), int((y - off) * 16)), int(r * k * 16), col, -1,
                       cv2.LINE_AA, 4)

    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f = out[i]
        f[:] = sky
        angs = [mo["ph"] + 2 * math.pi * mo["speed"] * i for mo in moons]
        for mo, ang in zip(moons, angs):
            if math.sin(ang) < 0:
                draw_moon(f, mo, ang)
        roi = f[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1]
        roi[:] = _to_u8(roi * (1 - pm) + pt * pm)
        order = sorted((math.sin(a), k) for k, a in enumerate(angs) if math.sin(a) >= 0)
        for _, k in order:
            draw_moon(f, moons[k], angs[k])
    return out


_WORDS = ("VIDEO", "JUDGE", "FRAME", "MOTION", "QUALITY", "SYNTH", "PIXEL", "TEXTURE", "ORBIT", "SCENE",
          "GRID", "SAMPLE", "KEYFRAME", "DECODE", "STRIPE", "CAMERA")


def _scene_text(rng, w, h, n):
    # background: diagonal sinusoidal stripes moving along x (a periodic image shifted sub-pixel)
    period = max(16, w // int(rng.integers(8, 16)))
    ext_w = w + period * 2
    ys, xs = np.mgrid[0:h, 0:ext_w].astype(np.float32)
    tilt = rng.uniform(0.3, 1.0)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xs + tilt * ys) / period)
    bg = _colorize(stripes, _random_color(rng, 20), _random_color(rng, 100))
    bg += 10 * _grain(rng, h, ext_w)[..., None]
    bg = _to_u8(bg)
    # text bands: each rendered once into a long strip, then scrolled sub-pixel with its own speed
    bands = []
    n_bands = 3
    for b in range(n_bands):
        scale = h / 240 * rng.uniform(0.9, 1.6)
        thick = max(1, int(round(scale * 2)))
        text = " ".join(rng.choice(_WORDS, size=12))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
        strip_h = th + base + 8
        speed = w * rng.uniform(0.003, 0.01) * rng.choice([-1, 1])
        sw = max(tw + 8, w + int(abs(speed) * 256 * math.ceil(n / 256)) + 8)
        mask = np.zeros((strip_h, sw), np.uint8)
        x = 4
        while x < sw:  # repeat the text along the strip
            cv2.putText(mask, text, (x, th + 4), cv2.FONT_HERSHEY_DUPLEX, scale, 255, thick, cv2.LINE_AA)
            x += tw + int(scale * 40)
        y = int(h * (b + 0.5) / n_bands - strip_h / 2)
        bands.append(dict(mask=mask.astype(np.float32) / 255, y=max(0, min(h - strip_h, y)), speed=speed,
                          x0=0.0 if speed > 0 else sw - w - 2.0, color=np.float32(_random_color(rng, 120)),
                          box=float(rng.uniform(0.3, 0.6))))
    stripe_speed = rng.uniform(0.5, 2.0) * rng.choice([-1, 1])
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        sx = (stripe_speed * i) % period
        ms = np.float32([[1, 0, -sx], [0, 1, 0]])
        f = cv2.warpAffine(bg, ms, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for bd in bands:
            sh = bd["mask"].shape[0]
            mt = np.float32([[1, 0, -(bd["x0"] + bd["speed"] * i)], [0, 1, 0]])
            a = cv2.warpAffine(bd["mask"], mt, (w, sh), flags=cv2.INTER_LINEAR)[..., None]
            roi = f[bd["y"]:bd["y"] + sh].astype(np.float32)
            roi *= 1 - bd["box"]  # darkened band behind the text
            f[bd["y"]:bd["y"] + sh] = _to_u8(roi * (1 - a) + bd["color"] * a)
        out[i] = f
    return out


_SCENES = {"shapes": _scene_shapes, "pan": _scene_pan, "orbit": _scene_orbit, "text": _scene_text}


def render_scene(kind: str, width: int, height: int, n_frames: int, seed: int = 0) -> np.ndarray:
    """Render `n_frames` of a synthetic scene as uint8 RGB [T, H, W, 3]; deterministic per (kind, seed).

    Kinds: "shapes" (shaded shapes on Lissajous paths over a textured background), "pan" (two-layer
    parallax pan over a procedural landscape), "orbit" (moons orbiting a textured planet, gradient sky),
    "text" (scrolling text bands over moving diagonal stripes).
    """
    if kind not in _SCENES:
        raise ValueError(f"unknown scene kind {kind!r}; choose one of {', '.join(SCENES)}")
    if width < 16 or height < 16 or n_frames < 1:
        raise ValueError(f"need width, height >= 16 and n_frames >= 1, got {width}x{height}x{n_frames}")
    rng = np.random.default_rng([seed, SCENES.index(kind)])
    return _SCENES[kind](rng, int(width), int(height), int(n_frames))


# ----------------------------------------------------------------------------------------------------------
# writing


def h264_available() -> bool:
    """Whether PyAV's bundled FFmpeg has the libx264 encoder."""
    import av

    return "libx264" in av.codecs_available


def write_video(path, frames: np.ndarray, fps: float = 24, gop: int = 250, codec: str = "libx264",
                crf: int = 23, faststart: bool = False) -> Path:
    """Write RGB uint8 frames [T, H, W, 3] as an MP4 (yuv420p) with PyAV; return the path.

    With libx264, `gop` is passed as `keyint` (with `scenecut=0`), so a clip shorter than `gop` frames is a
    single GOP, like `ffmpeg -x264-params keyint=250`. If PyAV's FFmpeg lacks libx264, "mpeg4" is used
    instead (same container, `gop` as the GOP size). Width and height must be even (yuv420p).
    `faststart` puts the index (moov) before the data, so a truncated copy still opens.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("no frames to write")
    if w % 2 or h % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {w}x{h}")
    if codec == "libx264" and not h264_available():
        codec = "mpeg4"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    opts = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=opts) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = int(gop)
        if codec == "libx264":
            stream.options = {"crf": str(int(crf)), "preset": "medium",
                              "x264-params": f"keyint={int(gop)}:min-keyint={min(int(gop), 25)}:scenecut=0"}
        else:
            stream.codec_context.bit_rate = int(max(200_000, w * h * float(rate) * 0.15))
        for k in range(t):
            vf = av.VideoFrame.from_ndarray(frames[k], format="rgb24")
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


def write_clip(path, kind: str = "shapes", width: int = 320, height: int = 240, seconds: float = 2.0,
               fps: float = 24, seed: int = 0, **kw) -> Path:
    """Render a scene and write it: the one-call helper tests use. Extra kwargs go to `write_video`."""
    n = max(1, int(round(seconds * fps)))
    return write_video(path, render_scene(kind, width, height, n, seed), fps=fps, **kw)


# ----------------------------------------------------------------------------------------------------------
# broken files, for error-path tests


def write_truncated(src, dst, fraction: float = 0.5) -> Path:
    """Copy the first `fraction` of `src`'s bytes to `dst` (a cut-off download)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def write_header_only(src, dst, n_bytes: int = 64) -> Path:
    """Copy only the first `n_bytes` of `src` (the `ftyp` box and little else)."""
    dst = Path(dst)
    dst.write_bytes(Path(src).read_bytes()[:n_bytes])
    return dst


def write_random_bytes(path, size: int = 8192, seed: int = 0) -> Path:
    """A file of random bytes (give it a .mp4 name to pose as a video)."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_corrupt(path, kind: str = "random", src=None) -> Path:
    """Write a broken video file: kind "random" (random bytes), "truncated" (half of `src`), "header"
    (first 64 bytes of `src`) or "empty" (0 bytes). `src` must be a real video for the copy kinds."""
    if kind == "random":
        return write_random_bytes(path)
    if kind == "empty":
        Path(path).write_bytes(b"")
        return Path(path)
    if src is None or not os.path.isfile(src):
        raise ValueError(f"kind {kind!r} needs `src`, an existing video file")
    if kind == "truncated":
        return write_truncated(src, path)
    if kind == "header":
        return write_header_only(src, path)
    raise ValueError(f"unknown corrupt kind {kind!r}")
