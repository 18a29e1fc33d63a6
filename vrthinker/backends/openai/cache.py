"""The client's one memory budget: every cache of the OpenAI-compatible client in one LRU bounded by bytes.

Encoded frames (data URLs), clips as video data URLs, which image object is which frame, and the tokenizer's
pieces all count against the same budget (`--client-cache-mb`, `OpenAIBackend(cache_mb=...)`), least recently
used dropped first. Nothing here holds an image: objects are known by weak reference, so a frame the judge no
longer shows is freed by its owner, not kept alive by the client.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Hashable

DEFAULT_CACHE_MB = 256.0
ENTRY_OVERHEAD = 160  # bytes an entry costs beyond its value: the key, the dict slot, the size, a weak reference
_MISSING = object()
_ALL: "weakref.WeakSet[Budget]" = weakref.WeakSet()


class Budget:
    """Values by key, each with its size in bytes given when it is stored; least recently used dropped first
    once the sizes add up to more than `max_bytes` (0: nothing is kept). Thread-safe."""

    def __init__(self, max_bytes: float):
        if not max_bytes >= 0:
            raise ValueError(f"the client's cache budget must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = float(max_bytes)
        self.nbytes = 0  # the sizes of the values held now, added up
        self.peak_bytes = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.add(self)

    @classmethod
    def of_mb(cls, mb: float | None) -> "Budget":
        return cls((DEFAULT_CACHE_MB if mb is None else float(mb)) * 2**20)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            hit = self._items.get(key, _MISSING)
            if hit is _MISSING:
                self.misses += 1
                return default
            self.hits += 1
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> Any:
        """Store `value` (costing `nbytes` + ENTRY_OVERHEAD) as the most recently used; returns `value`, stored
        or not (a value larger than the whole budget is not)."""
        size = int(nbytes) + ENTRY_OVERHEAD
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            if size > self.max_bytes:
                return value
            self._items[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.nbytes -= dropped
            self.peak_bytes = max(self.peak_bytes, self.nbytes)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def clear_all() -> None:
    """Empty every budget in this process (benchmarks start each run cold)."""
    for b in list(_ALL):
        b.clear()


DEFAULT = Budget.of_mb(None)  # for callers without a backend (dqa's checklist over a server, benchmarks)
