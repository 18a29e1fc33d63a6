"""Images as lossless PNG data URLs: a fast PNG encoder, and the encodings kept so a frame is encoded once.

Every turn re-sends every image, and the same frame comes back in other objects (the pair's other order,
another pair of the same video), so encodings are cached per image object and per pixels. The data URLs made
here are registered with their ASCII bytes, which `body.request_json` splices into the request body.
"""
from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

import numpy as np

from vrthinker.lru import ByteLRU

_PNG_BY_OBJECT: ByteLRU[int, tuple[Any, str]] = ByteLRU(1024, size=lambda v: 1)
# base64 PNG by the frame's pixels: the same frame shown again in another object (the other order of a pair,
# another pair of the same video) is not encoded again
_PNG_BY_PIXELS: ByteLRU[tuple, str] = ByteLRU(512 * 2**20, size=len)


def clear_media_caches() -> None:
    """Forget every encoded image and data URL (benchmarks start each run cold)."""
    for cache in (_PNG_BY_OBJECT, _PNG_BY_PIXELS, _URLS, _CLIP_URLS, _OURS):
        cache.clear()


def png_bytes(rgb: Any) -> bytes:
    """A lossless PNG of an RGB uint8 array [h, w, 3]: each row but the first filtered 'Up' (its difference
    from the row above, PNG filter 2), then deflate level 1. About twice as fast as PIL's PNG at level 1
    (which tries every filter on every row) and no larger; any PNG decoder gives back exactly these pixels."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"png_bytes takes an RGB array [h, w, 3], got shape {a.shape}")
    h, w, _ = a.shape
    rows = a.reshape(h, w * 3)
    data = np.empty((h, w * 3 + 1), np.uint8)
    data[0, 0], data[1:, 0] = 0, 2  # filter: none for the first row, Up for the others
    data[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=data[1:, 1:])  # modulo 256, as the filter is defined

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(data.tobytes(), 1)) + chunk(b"IEND", b""))


def png_base64(im: Any) -> str:
    """The image as base64 PNG (lossless), cached per image object (every turn re-sends every image) and per
    pixels (the same frame in another object: the pair's other order, another pair of the same video)."""
    hit = _PNG_BY_OBJECT.get(id(im))
    if hit is not None and hit[0] is im:
        return hit[1]
    rgb = np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
    key = (rgb.shape, hashlib.sha256(rgb.data).digest())
    b64 = _PNG_BY_PIXELS.get(key)
    if b64 is None:
        b64 = _PNG_BY_PIXELS.put(key, base64.b64encode(png_bytes(rgb)).decode("ascii"))
    _PNG_BY_OBJECT.put(id(im), (im, b64))  # the image is held so its id is not reused while cached
    return b64


def png_data_url(im: Any) -> str:
    """`data:image/png;base64,...` of the image, the same string object each time (see `request_json`)."""
    b64 = png_base64(im)
    return _URLS.get_or_load(b64, lambda: _ours("data:image/png;base64," + b64))


def video_data_url(clip: Any) -> str:
    """A clip's frames as vLLM takes them: `data:video/jpeg;base64,` then each frame's base64 PNG, by commas."""
    hit = _CLIP_URLS.get(id(clip))
    if hit is not None and hit[0] is clip:
        return hit[1]
    url = _ours("data:video/jpeg;base64," + ",".join(png_base64(f) for f in clip.frames))
    _CLIP_URLS.put(id(clip), (clip, url))
    return url


# data URLs we made, and their ASCII bytes for the request body, kept while their base64 is cached
_URLS: ByteLRU[str, str] = ByteLRU(256 * 2**20, size=len)
_CLIP_URLS: ByteLRU[int, tuple[Any, str]] = ByteLRU(64, size=lambda v: 1)
_OURS: ByteLRU[int, tuple[str, bytes]] = ByteLRU(512 * 2**20, size=lambda v: len(v[1]))


def _ours(url: str) -> str:
    """Register a data URL we made (base64 and a `data:` prefix: nothing JSON escapes) with its bytes."""
    _OURS.put(id(url), (url, url.encode("ascii")))
    return url


def _our_bytes(url: Any) -> bytes | None:
    hit = _OURS.get(id(url)) if isinstance(url, str) else None
    return hit[1] if hit is not None and hit[0] is url else None
