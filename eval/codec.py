"""A codec round trip for the fault suites: encode frames at a constant quality through PyAV and decode them back.

The one place outside the decoder (vrthinker.media.decode) that decodes video, and only an in-memory buffer it
has just encoded: no file is read here.
"""
from __future__ import annotations

import numpy as np


def codec_roundtrip(frames: np.ndarray, codec: str, crf: int, fps: float = 24.0) -> np.ndarray:
    """Encode with `codec` at constant quality `crf` through PyAV (no ffmpeg binary needed) and decode back."""
    import io

    import av

    buf = io.BytesIO()
    fmt = {"libx264": "mp4", "libvpx-vp9": "webm", "libsvtav1": "mp4", "libaom-av1": "mp4"}[codec]
    t, h, w = frames.shape[:3]
    with av.open(buf, mode="w", format=fmt) as out:
        s = out.add_stream(codec, rate=int(fps))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec == "libvpx-vp9":
            s.options = {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:
            s.options = {"crf": str(crf), "preset": "10"}
        for f in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        out.mux(s.encode(None))
    buf.seek(0)
    with av.open(buf) as inp:
        dec = [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]
    dec = np.stack(dec[:t])
    if len(dec) < t:  # an encoder that dropped trailing frames: hold the last (never seen here)
        dec = np.concatenate([dec, dec[-1:].repeat(t - len(dec), 0)])
    return dec
