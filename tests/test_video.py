"""The byte-bounded LRU (vrthinker/lru.py) and the one decoder (vrthinker/video.py)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vrthinker.lru import ByteLRU


class Blob:
    def __init__(self, n):
        self.nbytes = n


def test_lru_evicts_by_bytes_least_recent_first():
    c = ByteLRU(100)
    c.put("a", Blob(40))
    c.put("b", Blob(40))
    assert c.get("a").nbytes == 40  # a is now the most recent
    c.put("c", Blob(40))  # 120 > 100: b (least recent) goes
    assert "b" not in c and "a" in c and "c" in c
    assert c.nbytes == 80
    c.put("d", Blob(500))  # alone over the bound: kept (keep=1), everything older goes
    assert list(c) == ["d"]
    assert len(c) == 1


def test_lru_sizes_measured_at_trim_time():
    c = ByteLRU(100)
    a = c.put("a", Blob(90))
    a.nbytes = 10  # shrank while cached (a grid converting its raw frames)
    c.put("b", Blob(80))
    assert "a" in c and "b" in c


def test_lru_count_bound_and_keep():
    c = ByteLRU(2, size=lambda v: 1)
    for k in "abc":
        c.put(k, k)
    assert list(c) == ["b", "c"]
    c.trim(keep=0)
    assert list(c) == ["b", "c"]
    c.max_bytes = 0
    c.trim(keep=1)
    assert list(c) == ["c"]
    with pytest.raises(ValueError):
        ByteLRU(-1)


def test_lru_get_or_load_loads_once_across_threads_and_forgets_errors():
    c = ByteLRU(10**6)
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return np.zeros(10, np.uint8)

    out = []
    threads = [threading.Thread(target=lambda: out.append(c.get_or_load("k", load))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and c.loads == 1
    assert all(o is out[0] for o in out)

    def boom():
        raise OSError("no")

    with pytest.raises(OSError):
        c.get_or_load("x", boom)
    assert "x" not in c
    assert c.get_or_load("x", lambda: np.ones(3)).sum() == 3
