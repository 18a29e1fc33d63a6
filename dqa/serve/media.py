"""Media files for the service: paths checked against the --media-roots (symlinks resolved), a decodability
probe, and byte-range responses so a browser can seek."""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from typing import Iterator, Sequence

from starlette.responses import Response, StreamingResponse

from vrthinker.errors import VideoError

from dqa.serve.errors import ApiError

CHUNK = 1 << 16
TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
         ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".gif": "image/gif"}


def inside(path: str, roots: Sequence[str]) -> bool:
    return any(os.path.commonpath([path, r]) == r for r in roots)


def resolve(path: object, roots: Sequence[str], field: str = "path") -> str:
    """The real path of `path` (relative paths are relative to the first root) if it lies in a root.

    Outside the roots (after resolving symlinks and '..'): 403, whether or not it exists, so nothing is
    learnt about the rest of the disk. Inside but not a file: 422.
    """
    if not isinstance(path, str) or not path.strip():
        raise ApiError(422, "missing_field", f"{field}: give a video path")
    if "\x00" in path:
        raise ApiError(422, "bad_path", f"{field}: not a valid path")
    p = os.path.expanduser(path)
    if not os.path.isabs(p):
        p = os.path.join(roots[0], p)
    real = os.path.realpath(p)
    if not inside(real, roots):
        raise ApiError(403, "outside_roots", f"{field}: {path} is outside the media roots")
    if not os.path.isfile(real):
        raise ApiError(422, "file_not_found", f"{field}: {path}: file not found")
    return real


class Prober:
    """Whether a file decodes as a video, remembered per (path, size, mtime)."""

    def __init__(self, size: int = 512):
        self.size = size
        self._seen: OrderedDict[tuple, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, real: str, field: str = "path") -> None:
        """Raise 422 naming the file when no frame of it decodes."""
        st = os.stat(real)
        key = (real, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = key in self._seen
            problem = self._seen.get(key)
        if not known:
            from vrthinker.media.decode import read_frames

            try:
                read_frames(real, max_frames=1, max_side=16)
                problem = None
            except VideoError as e:
                problem = str(e)
            with self._lock:
                self._seen[key] = problem
                while len(self._seen) > self.size:
                    self._seen.popitem(last=False)
        if problem:
            raise ApiError(422, "undecodable", f"{field}: {problem}")


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def file_response(real: str, range_header: str | None, head: bool = False) -> Response:
    """The file, or the one byte range asked for (206), or 416 for a range past its end; `head`: the same
    status and headers with no body."""
    size = os.path.getsize(real)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    media_type = TYPES.get(os.path.splitext(real)[1].lower(), "application/octet-stream")
    start, end, status = 0, size - 1, 200
    if range_header:
        m = _RANGE.match(range_header.strip())
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # a suffix: the last N bytes
                start = max(size - int(m.group(2)), 0)
            if start >= size or start > end:
                return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        # anything else (several ranges, other units) gets the whole file, as RFC 9110 allows
    headers["Content-Length"] = str(end - start + 1)
    if head:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(_read(real, start, end - start + 1), status_code=status, headers=headers,
                             media_type=media_type)


def _read(real: str, start: int, length: int) -> Iterator[bytes]:
    with open(real, "rb") as f:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
