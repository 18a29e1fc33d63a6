"""The frames the judge looked at, as JPEG data URIs for the A/B page (chosen and drawn by vrthinker.report).

A VLM's verdict names its turns and the tool indices each call asked for; the profile it ran under says
which frames those are (and which it saw first). A weight-free judge measures whole videos: the frames it
recorded, else a few evenly spaced ones. Both videos side by side: video 1 is the question's left video.
Videos are read only when they still resolve inside the media roots.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from vrthinker.errors import JudgeError
from vrthinker.report import MEASURED_FRAMES, Thumbs, grid_size, recorded_indices

from dqa.serve.errors import ApiError

SIDE = 112  # thumbnail side in pixels
SIDES = ("left", "right")


def _image(video: int, frame: int, uri: str) -> dict:
    return {"side": SIDES[video - 1], "video": video, "frame": frame, "src": uri}


def _profile(protocol: str):
    from vrthinker.protocol import Profile

    try:
        return Profile.load(protocol.split("/")[0])
    except (JudgeError, OSError, ValueError, KeyError):
        return None


def _turn_groups(verdict: Mapping[str, Any], paths: list[str | None], thumbs: Thumbs, notes: list[str]) -> list:
    """Per turn, the grid frames it brought in: the profile's initial frames, then each tool call's."""
    profile = _profile(str(verdict.get("protocol") or ""))
    if profile is None:
        notes.append(f"unknown protocol {verdict.get('protocol')!r}: its frames cannot be named")
        return []
    size = grid_size(str(verdict.get("protocol") or ""))
    grids = [thumbs.grid(p, size) if p else None for p in paths]
    turns = list(verdict.get("turns") or [])
    seen: list[tuple[str, list[tuple[int, int]]]] = [
        ("turn 1: the initial frames", [(v, i) for v in (1, 2) for i in profile.initial_indices])]
    for t in turns:
        asked = [int(i) for i in (t.get("requested") or [])]
        k = int(t.get("index", 0))
        if t.get("action") == "tool_call" and asked and k + 1 < len(turns):  # seen by the next turn
            seen.append((f"turn {k + 2}: the frames turn {k + 1} asked for {asked}", profile.frames_for(asked)))
    groups = []
    for title, wanted in seen:
        by_index: dict[int, dict[int, dict]] = {}
        for v, i in wanted:
            g = grids[v - 1]
            if g is None or not 0 <= i < len(g):
                continue
            by_index.setdefault(i, {})[v] = _image(v, g.real_index(i), thumbs.uri(g, i))
        cells = [{"caption": f"index {i} (frames {' / '.join(str(x['frame']) for x in per.values())})",
                  "images": [per[v] for v in sorted(per)]} for i, per in by_index.items()]
        groups.append({"title": title, "cells": cells})
    return groups


def _measured_groups(verdict: Mapping[str, Any], paths: list[str | None], thumbs: Thumbs) -> list:
    per_video = [sorted(thumbs.measured(p, recorded_indices(verdict, k), MEASURED_FRAMES).items()) if p else []
                 for k, p in enumerate(paths)]
    recorded = any(recorded_indices(verdict, k) for k in range(2))
    cells = []
    for pos in range(max(map(len, per_video))):
        images = [_image(k + 1, *per_video[k][pos]) for k in range(2) if pos < len(per_video[k])]
        cells.append({"caption": "frames " + " / ".join(str(x["frame"]) for x in images), "images": images})
    what = "the frames it measured" if recorded else "evenly spaced frames of what it measured (whole videos)"
    return [{"title": what, "cells": cells}]


def judge_frames(verdict: Mapping[str, Any], videos: tuple[str, str], check: Callable[[str], str]) -> dict:
    """{"groups": [{"title", "cells": [{"caption", "images": [{"side", "video", "frame", "src"}]}]}],
    "notes": [...]} for one verdict whose video 1 / video 2 are `videos`; `check` returns a path's real path
    inside the roots or raises ApiError."""
    notes: list[str] = []
    paths: list[str | None] = []
    for side, p in zip(SIDES, videos):
        try:
            paths.append(check(p))
        except ApiError as e:
            notes.append(f"{side}: no thumbnails: {e.message}")
            paths.append(None)
    thumbs = Thumbs(SIDE, max_mb=64)
    if verdict.get("turns"):
        groups = _turn_groups(verdict, paths, thumbs, notes)
    else:
        groups = _measured_groups(verdict, paths, thumbs)
    for side, p in zip(SIDES, paths):
        if p and p in thumbs.errors:
            notes.append(f"{side}: no thumbnails: {thumbs.errors[p]}")
    return {"side": SIDE, "groups": groups, "notes": notes}


class FrameCache:
    """judge_frames per job, kept for the last few jobs (a page polls its verdict)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._done: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job: str, verdict: Mapping[str, Any], videos: tuple[str, str],
            check: Callable[[str], str]) -> dict:
        with self._lock:
            if job in self._done:
                self._done.move_to_end(job)
                return self._done[job]
        doc = judge_frames(verdict, videos, check)
        with self._lock:
            self._done[job] = doc
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        return doc
