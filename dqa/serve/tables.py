"""The service's connections to the project's store: one per thread, with the serve tables present."""
from __future__ import annotations

import threading

from vrthinker.store import Store


def open_store(path: str) -> Store:
    """The project's store; its schema (migration 4) holds the serve tables beside the selections."""
    return Store(path)


class Connections:
    """One open store per thread (SQLite connections are not shared between threads)."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()
        self.get()  # create the tables once, now, so a bad database fails at start

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = open_store(self.path)
            self._local.store = store
            with self._lock:
                self._all.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for s in self._all:
                try:
                    s.close()
                except Exception:  # noqa: BLE001 - closing from another thread at exit
                    pass
            self._all.clear()
