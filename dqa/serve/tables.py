"""The service's connections to the project's store: one per thread, with the serve tables present."""
from __future__ import annotations

import threading

from vrthinker.store import Store

# Until the store's ordered migrations exist, the serve tables are added beside the others like the
# selection tables are (CREATE ... IF NOT EXISTS).
SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_jobs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,   -- run order
    id       TEXT NOT NULL UNIQUE,                -- what the API hands out
    kind     TEXT NOT NULL CHECK (kind IN ('compare', 'score')),
    request  TEXT NOT NULL,                       -- JSON: the checked request (real paths)
    key      TEXT NOT NULL,                       -- sha256 of content hashes + request + configuration
    state    TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    result   TEXT,                                -- JSON: the document the CLI prints with --json
    error    TEXT,                                -- JSON {"code", "message"} when failed
    created  REAL NOT NULL,
    started  REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS serve_jobs_key ON serve_jobs (key);
CREATE INDEX IF NOT EXISTS serve_jobs_state ON serve_jobs (state, seq);
CREATE TABLE IF NOT EXISTS ab_questions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt    TEXT NOT NULL,
    video_a   TEXT NOT NULL,                      -- real paths inside the media roots
    video_b   TEXT NOT NULL,
    dimension TEXT,                               -- the one dimension asked (NULL: all four)
    job       TEXT REFERENCES serve_jobs(id),     -- the judge's comparison, shown after the answer
    created   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ab_answers (
    question  INTEGER NOT NULL REFERENCES ab_questions(id),
    dimension TEXT NOT NULL,
    user      TEXT NOT NULL DEFAULT '',
    chosen    TEXT NOT NULL CHECK (chosen IN ('a', 'b', 'tie')),
    selection INTEGER,                            -- the selections row it made (NULL for a tie)
    status    TEXT NOT NULL,                      -- recorded, duplicate, contradiction or tie
    created   REAL NOT NULL,
    PRIMARY KEY (question, dimension, user)
);
"""


def open_store(path: str) -> Store:
    """The project's store with the selection tables and the serve tables."""
    from dqa.selections import open_store as open_with_selections

    store = open_with_selections(path)
    with store.transaction():
        for statement in SCHEMA.split(";"):
            if statement.strip():
                store.db.execute(statement)
    return store


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
