"""Images as lossless PNG data URLs: a fast PNG encoder, and each frame encoded once while the budget holds it.

Every turn re-sends every image, and the same frame comes back in other objects (the pair's other order,
another pair of the same video), so an encoding is kept by the frame's pixels, and which object shows which
pixels by weak reference, all in the client's one byte budget (cache.Budget). A data URL made here is a
`DataURL`: plain ASCII that `body.request_json` splices into the request body without escaping it again.
"""
from __future__ import annotations

import base64
import hashlib
import struct
import weakref
import zlib
from typing import Any

import numpy as np

from vrthinker.backends.openai.cache import DEFAULT, Budget, clear_all

PNG_PREFIX = "data:image/png;base64,"
VIDEO_PREFIX = "data:video/jpeg;base64,"


class DataURL(str):
    """A data URL this client made: an ASCII prefix and base64, nothing JSON escapes."""

    __slots__ = ()


def clear_media_caches() -> None:
    """Forget every encoded image and data URL, in every backend's budget (benchmarks start each run cold)."""
    clear_all()


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


def _by_object(cache: Budget, kind: str, obj: Any) -> Any:
    """What `cache` keeps for this very object (by weak reference: the object itself is not held), or None."""
    hit = cache.get((kind, id(obj)))
    return hit[1] if hit is not None and hit[0]() is obj else None


def _remember(cache: Budget, kind: str, obj: Any, value: Any, nbytes: int) -> None:
    try:
        ref = weakref.ref(obj)
    except TypeError:  # an object without weak references is looked up by its pixels each time
        return
    cache.put((kind, id(obj)), (ref, value), nbytes)


def png_data_url(im: Any, cache: Budget | None = None) -> DataURL:
    """`data:image/png;base64,...` of the image (lossless), kept per pixels and per image object in `cache`
    (default: the process's): the same frame in another object (the pair's other order, another pair of the
    same video) is not encoded again."""
    cache = DEFAULT if cache is None else cache
    key = _by_object(cache, "im", im)
    url = cache.get(key) if key is not None else None
    if url is not None:
        return url
    rgb = np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
    key = ("png", rgb.shape, hashlib.sha256(rgb.data).digest())
    url = cache.get(key)
    if url is None:
        url = DataURL(PNG_PREFIX + base64.b64encode(png_bytes(rgb)).decode("ascii"))
        cache.put(key, url, len(url))
    _remember(cache, "im", im, key, 64)
    return url


def png_base64(im: Any, cache: Budget | None = None) -> str:
    """The image as base64 PNG (lossless): `png_data_url` without its prefix."""
    return png_data_url(im, cache)[len(PNG_PREFIX):]


def video_data_url(clip: Any, cache: Budget | None = None) -> DataURL:
    """A clip's frames as vLLM takes them: `data:video/jpeg;base64,` then each frame's base64 PNG, by commas."""
    cache = DEFAULT if cache is None else cache
    url = _by_object(cache, "clip", clip)
    if url is None:
        url = DataURL(VIDEO_PREFIX + ",".join(png_base64(f, cache) for f in clip.frames))
        _remember(cache, "clip", clip, url, len(url))
    return url
