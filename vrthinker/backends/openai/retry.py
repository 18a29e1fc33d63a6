"""When to try a request again, and how long to wait first: the statuses worth a retry, Retry-After, backoff."""
from __future__ import annotations

import email.utils
import random
import time

# 429 Too Many Requests and 503 Service Unavailable: the server is well but busy; it may say when to come back
BUSY = frozenset({429, 503})


class Retry(Exception):
    """A failure worth another try (connection, timeout, 5xx, 429, a malformed reply), with the server's
    Retry-After in seconds where it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if seconds == seconds else None  # NaN: unreadable


def backoff_s(attempt: int, base: float) -> float:
    """Exponential backoff with jitter before attempt `attempt + 1` (0-based), at most about 15 s."""
    return min(15.0, base * 2 ** attempt) * (0.75 + 0.5 * random.random())
