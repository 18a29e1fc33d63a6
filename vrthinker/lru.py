"""A thread-safe least-recently-used cache bounded by the bytes its values hold.

Sizes are measured when the cache trims, not only when a value goes in, so a value that shrinks while
cached (a frame grid converting its raw frames) frees room. `size=lambda v: 1` bounds by count instead.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


def nbytes_of(value) -> int:
    """`value.nbytes` (numpy arrays, frame grids, decoded videos)."""
    return int(value.nbytes)


class ByteLRU(Generic[K, V]):
    """Values by key, least recently used dropped first once their sizes add up to more than `max_bytes`.

    The `keep` most recently used values stay even over the bound (by default one: a single value larger
    than the bound is still kept until the next one arrives). `get_or_load` runs the loader once per key
    even when several threads ask at the same time; a loader's exception propagates and nothing is stored.
    """

    def __init__(self, max_bytes: float, size: Callable[[V], int] = nbytes_of, keep: int = 1):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.max_bytes = max_bytes
        self.size = size
        self.keep = int(keep)
        self.hits = 0
        self.misses = 0
        self.loads = 0  # loader calls that returned a value
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.RLock()
        self._loading: dict[K, threading.Lock] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._items))

    @property
    def nbytes(self) -> int:
        """The sizes of the values held now, added up."""
        with self._lock:
            return sum(self.size(v) for v in self._items.values())

    def get(self, key: K, default=None):
        """The value for `key` (now the most recently used), or `default`."""
        with self._lock:
            value = self._items.get(key, _MISSING)
            if value is _MISSING:
                self.misses += 1
                return default
            self.hits += 1
            self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        """Store `value` as the most recently used, then drop the least recently used past the bound."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self.trim()
        return value

    def pop(self, key: K, default=None):
        """Remove `key` and return its value, or `default`."""
        with self._lock:
            return self._items.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def trim(self, keep: int | None = None) -> None:
        """Drop least recently used values until within `max_bytes`, always keeping the `keep` newest."""
        keep = self.keep if keep is None else keep
        with self._lock:
            total = sum(self.size(v) for v in self._items.values())
            while len(self._items) > keep and total > self.max_bytes:
                _, old = self._items.popitem(last=False)
                total -= self.size(old)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The value for `key`, calling `load()` to make it (once, whatever the threads) when absent."""
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                value = self._items.get(key, _MISSING)
                if value is not _MISSING:  # another thread loaded it while this one waited
                    self._items.move_to_end(key)
                    return value
            try:
                value = load()
                with self._lock:
                    self.loads += 1
                    self.put(key, value)
                return value
            finally:
                with self._lock:
                    if self._loading.get(key) is gate:
                        del self._loading[key]
