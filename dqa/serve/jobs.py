"""Comparisons and scores asked over HTTP: persisted in SQLite, run one at a time by one worker thread.

The judge is loaded on the first comparison and kept; scores go through `dqa.score.scoring.score` (its scheduler
keeps one worker's models in memory at a time, under the budget). A restart puts jobs that were running
back in the queue. A request whose content and configuration match a finished job gets that job.
"""
from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from vrthinker.errors import JudgeError

from dqa.serve.tables import Connections

STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    request: Mapping[str, Any]
    result: Any = None
    error: Mapping[str, str] | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict:
        return {"job": self.id, "kind": self.kind, "state": self.state, "result": self.result,
                "error": self.error, "request": dict(self.request), "created": self.created,
                "started": self.started, "finished": self.finished}


def request_key(kind: str, request: Mapping[str, Any], hashes: Sequence[str], config: Mapping[str, Any]) -> str:
    """sha256 over what decides the answer: the videos' contents (not their names), the request's other
    fields and the configuration of whatever answers it."""
    fields = {k: v for k, v in request.items() if k not in ("video1", "video2", "videos")}
    blob = json.dumps([kind, list(hashes), fields, dict(config)], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _job(row) -> Job:
    return Job(row["id"], row["kind"], row["state"], json.loads(row["request"]),
               json.loads(row["result"]) if row["result"] is not None else None,
               json.loads(row["error"]) if row["error"] is not None else None,
               row["created"], row["started"], row["finished"])


class Jobs:
    """The job queue and its one worker thread."""

    def __init__(self, conns: Connections, judge: Mapping[str, Any], *, budget_gb: float = 24.0,
                 device: str | None = None, log: Callable[[str], None] | None = None):
        self.conns = conns
        self.judge_kwargs = dict(judge)
        self.budget_gb = budget_gb
        self.device = device
        self.log = log or (lambda s: print(f"dqa serve: {s}", file=sys.stderr, flush=True))
        self._judge = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------------
    # configuration identities (part of every job key)

    def judge_config(self) -> dict:
        cfg = {k: v for k, v in self.judge_kwargs.items() if v is not None}
        if cfg.get("backend") == "metrics":
            from dqa.measures.pairwise import MetricsJudge

            cfg.update(MetricsJudge().config())
        return cfg

    def score_config(self) -> dict:
        from dqa.score.grade import load_config

        w = load_config()
        return {"weights": {"weights": dict(w.weights), **{g: dict(m) for g, m in w.groups.items()}},
                "device": self.device or "auto"}

    # ------------------------------------------------------------------------------------------------------
    # queue

    def submit(self, kind: str, request: Mapping[str, Any], hashes: Sequence[str]) -> Job:
        """A new queued job, or the finished / pending one that already answers this request."""
        config = self.judge_config() if kind == "compare" else self.score_config()
        key = request_key(kind, request, hashes, config)
        store = self.conns.get()
        with store.transaction() as db:
            row = db.execute("SELECT * FROM serve_jobs WHERE key=? AND state!='failed' ORDER BY seq DESC LIMIT 1",
                             (key,)).fetchone()
            if row is None:
                job_id = uuid.uuid4().hex
                db.execute("INSERT INTO serve_jobs (id, kind, request, key, state, created) VALUES (?,?,?,?,?,?)",
                           (job_id, kind, json.dumps(dict(request), ensure_ascii=False), key, "queued", time.time()))
                row = db.execute("SELECT * FROM serve_jobs WHERE id=?", (job_id,)).fetchone()
        self._wake.set()
        return _job(row)

    def get(self, job_id: str) -> Job | None:
        row = self.conns.get().db.execute("SELECT * FROM serve_jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def counts(self) -> dict[str, int]:
        rows = self.conns.get().db.execute("SELECT state, count(*) FROM serve_jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------------------------------------------------
    # the worker

    def start(self) -> None:
        store = self.conns.get()
        with store.transaction() as db:
            n = db.execute("UPDATE serve_jobs SET state='queued', started=NULL WHERE state='running'").rowcount
        if n:
            self.log(f"resuming {n} job(s) interrupted by the last shutdown")
        self._thread = threading.Thread(target=self._loop, name="dqa-serve-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _next(self) -> Job | None:
        store = self.conns.get()
        with store.transaction() as db:
            row = db.execute("SELECT * FROM serve_jobs WHERE state='queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE serve_jobs SET state='running', started=? WHERE id=?", (time.time(), row["id"]))
        return _job(row)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._next()
            except Exception as e:  # noqa: BLE001 - a locked or broken database: retry, never die
                self.log(f"job queue: {type(e).__name__}: {e}")
                job = None
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            result, error = self._run(job)
            with self.conns.get().transaction() as db:
                db.execute("UPDATE serve_jobs SET state=?, result=?, error=?, finished=? WHERE id=?",
                           ("failed" if error else "done",
                            None if result is None else json.dumps(result, ensure_ascii=False, default=str),
                            None if error is None else json.dumps(error), time.time(), job.id))

    def _run(self, job: Job) -> tuple[Any, dict | None]:
        """(the CLI's --json document, None) or (document or None, {"code", "message"})."""
        try:
            if job.kind == "compare":
                return self._compare(job.request)
            return self._score(job.request)
        except JudgeError as e:
            return None, {"code": type(e).__name__, "message": str(e)}
        except Exception as e:  # noqa: BLE001 - the job fails, the service goes on; the log has the traceback
            self.log(f"job {job.id} crashed:\n{traceback.format_exc()}")
            return None, {"code": "internal", "message": f"{type(e).__name__}: {e}"}

    def judge(self):
        if self._judge is None:
            from vrthinker.judge import Judge

            kw = dict(self.judge_kwargs)
            what = f"backend {kw.get('backend')}" + (f", model {kw['model']}" if kw.get("model") else "")
            self.log(f"loading the judge ({what})")
            self._judge = Judge.from_pretrained(kw.pop("model", None), **kw)
        return self._judge

    def _compare(self, r: Mapping[str, Any]) -> tuple[Any, dict | None]:
        v = self.judge().compare(r["video1"], r["video2"], r["prompt"], orders=r.get("orders", "one"))
        doc = json.loads(json.dumps(v.to_dict(), ensure_ascii=False, default=str))
        if v.reason == "bad_video":
            return doc, {"code": "bad_video", "message": v.detail}
        return doc, None

    def _score(self, r: Mapping[str, Any]) -> tuple[Any, dict | None]:
        from dqa.score.scoring import score

        run = score(r["videos"], prompt=r.get("prompt", ""), components=r.get("components"),
                    budget_gb=self.budget_gb, device=self.device, db=self.conns.path)
        return json.loads(json.dumps(run.to_dict(), default=str)), None
