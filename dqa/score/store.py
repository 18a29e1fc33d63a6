"""Persist DQA component results in the project's SQLite store so a batch resumes where it stopped.

A result is keyed by the video's content hash, the prompt (only for workers that read it), the worker and
a hash of its configuration (code version, models, options), so a changed model, setting or worker code
is never mistaken for a stored result. The table is vrthinker.store's; this module reads and writes rows.
Only final outcomes are stored: scores and failures that would recur on the same input (a corrupt video,
too few frames, an empty prompt). Missing models, refusals and crashes are retried on the next run.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import weakref
from typing import Iterable

from vrthinker.errors import VideoError
from vrthinker.store import Store

from dqa.score.scheduler import Failure, Item
from dqa.workers.base import Score, Worker

FINAL_REASONS = {"bad_video", "too_few_frames", "empty_prompt", "no_entities", "not_scored"}


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return _json_safe(x.item())
    return x


class ScoreStore:
    """dqa_scores in a Store's database; `done`/`put`/`get` match the Scheduler's hooks."""

    def __init__(self, path: str):
        self.store = Store(path)  # its schema holds the dqa_scores table
        self._hash: dict[str, str | None] = {}
        # by the worker object itself (weakly): an id() can be reused by the next worker once one is freed
        self._config: weakref.WeakKeyDictionary[Worker, str] = weakref.WeakKeyDictionary()

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def video_hash(self, path: str) -> str | None:
        if path not in self._hash:
            try:
                self._hash[path] = self.store.file_hash(path)
            except VideoError:
                self._hash[path] = None
        return self._hash[path]

    def config_hash(self, w: Worker) -> str:
        if w not in self._config:
            # the code version is in the key even for a worker whose config() leaves it out
            blob = json.dumps({"version": str(getattr(w, "version", "")), **w.config()}, sort_keys=True, default=str)
            self._config[w] = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self._config[w]

    def _key(self, item: Item, w: Worker) -> tuple | None:
        sha = self.video_hash(item.path)
        if sha is None:
            return None
        return sha, item.prompt.strip() if w.needs_prompt else "", w.name, self.config_hash(w)

    def get(self, item: Item, w: Worker) -> dict[str, Score | Failure]:
        key = self._key(item, w)
        if key is None:
            return {}
        rows = self.store.db.execute(
            "SELECT component, value, unit, details, reason, message FROM dqa_scores "
            "WHERE video_sha=? AND prompt=? AND worker=? AND config=?", key).fetchall()
        out: dict[str, Score | Failure] = {}
        for r in rows:
            if r["reason"] is None:
                out[r["component"]] = Score(r["component"], r["value"], r["unit"], json.loads(r["details"] or "{}"))
            else:
                out[r["component"]] = Failure(r["component"], r["reason"], r["message"] or "")
        return out

    def done(self, item: Item, w: Worker, components: Iterable[str]) -> bool:
        got = self.get(item, w)
        return bool(got) and all(c in got for c in components)

    def put(self, item: Item, w: Worker, scores: list[Score], failures: list[Failure]) -> None:
        key = self._key(item, w)
        if key is None:
            return
        now = time.time()
        rows = [(*key, s.name, float(s.value), float(s.unit), json.dumps(_json_safe(dict(s.details))), None, None,
                 now) for s in scores]
        rows += [(*key, f.component, None, None, None, f.reason, f.message, now)
                 for f in failures if f.reason in FINAL_REASONS]
        if rows:
            with self.store.transaction():
                self.store.db.executemany("INSERT OR REPLACE INTO dqa_scores VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
