"""The servers sharing the work: which one takes the next request, and how long a failing one rests."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from vrthinker.errors import UsageError, arg


@dataclass
class Server:
    url: str  # ends in /v1
    in_flight: int = 0
    failures: int = 0  # consecutive
    resting_until: float = 0.0
    not_before: float = 0.0  # the server asked for no request before then (Retry-After), time.monotonic()

    @property
    def root(self) -> str:
        return self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://", url):
        raise UsageError(f"{arg('server', url)}: give an http(s) URL such as http://127.0.0.1:8000/v1")
    return url if url.endswith("/v1") else url + "/v1"


class ServerPool:
    """The servers sharing the work: fewest in flight first; a failing one rests, longer each time."""

    def __init__(self, urls: Sequence[str], rest_s: float = 2.0):
        if not urls:
            raise UsageError(f"{arg('backend', 'openai')} needs {arg('server')} URL (e.g. http://127.0.0.1:8000/v1)")
        self.servers = [Server(normalize_url(u)) for u in dict.fromkeys(urls)]
        self.rest_s = rest_s
        self.lock = threading.Lock()

    def acquire(self, prefer: Server | None = None, avoid: Server | None = None) -> Server:
        """A server for one request: `prefer` while it is well, else the well one with the fewest in flight
        (all resting: the one that wakes first)."""
        with self.lock:
            now = time.monotonic()
            well = [s for s in self.servers if s.resting_until <= now]
            if prefer is not None and prefer in well and (prefer is not avoid or len(well) == 1):
                chosen = prefer
            else:
                pool = [s for s in well if s is not avoid] or well
                chosen = (min(pool, key=lambda s: (s.in_flight, self.servers.index(s))) if pool
                          else min(self.servers, key=lambda s: s.resting_until))
            chosen.in_flight += 1
            return chosen

    def hold(self, server: Server, seconds: float) -> None:
        """The server asked not to be sent anything for `seconds` (429 / 503 with Retry-After): it rests at
        least that long, so every conversation moves on to another server meanwhile."""
        with self.lock:
            server.not_before = max(server.not_before, time.monotonic() + max(0.0, seconds))
            server.resting_until = max(server.resting_until, server.not_before)

    def wait_s(self) -> float:
        """Seconds until some server may be sent a request again (0 unless every one asked for a pause)."""
        with self.lock:
            return max(0.0, min(s.not_before for s in self.servers) - time.monotonic())

    def release(self, server: Server, ok: bool) -> None:
        with self.lock:
            server.in_flight -= 1
            if ok:
                server.failures, server.resting_until = 0, 0.0
            else:
                server.failures += 1
                server.resting_until = max(server.not_before,
                                           time.monotonic() + min(30.0, self.rest_s * 2 ** (server.failures - 1)))
