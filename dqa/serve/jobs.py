"""Comparisons and scores asked over HTTP: persisted in SQLite, run one step at a time by one worker thread.

The judge is loaded on the first comparison and kept; scores go through `dqa.score.scoring.score` (its scheduler
keeps one worker's models in memory at a time, under the budget). Each running job records its owner (this
process) and a heartbeat; a job whose owner is gone (a dead pid on this host, or no heartbeat for longer than
its lease) goes back in the queue, looked for at start and every few seconds, so several processes can share
one store (`dqa.serve.lease`). A request whose content and configuration match a finished job gets that job. The queue
is bounded (`QueueFull`); `dqa.serve.worker` says how compares and scores share the worker.

The Python face, for any front end: `submit(kind, request, hashes)`, `get(id)`, `wait(id, timeout)`,
`health()`; `start()` and `stop()` the worker.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import sys
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from vrthinker.errors import JudgeError

from dqa.serve.lease import LEASE_S, Owner, abandoned, heartbeat_every
from dqa.serve.tables import Connections
from dqa.serve.worker import Worker

STATES = ("queued", "running", "done", "failed")


class QueueFull(Exception):
    """The queue holds its limit of queued jobs; try again after `retry_after` seconds."""

    def __init__(self, limit: int, retry_after: int):
        super().__init__(f"the job queue is full ({limit} jobs waiting); try again in {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


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


def hub_commit(model: str, revision: str | None = None) -> str | None:
    """The commit of the hub model's snapshot in the local cache (what loading it offline reads), if any."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - no hub library, a local path, a malformed id: no commit to name
        return None
    parts = Path(path).parts if isinstance(path, str) else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def code_versions() -> dict[str, str]:
    """The installed version of the code that answers (a new release may answer differently)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"vrthinker": version("vrthinker")}
    except PackageNotFoundError:
        return {"vrthinker": "unknown"}


def _job(row) -> Job:
    return Job(row["id"], row["kind"], row["state"], json.loads(row["request"]),
               json.loads(row["result"]) if row["result"] is not None else None,
               json.loads(row["error"]) if row["error"] is not None else None,
               row["created"], row["started"], row["finished"])


class Jobs:
    """The job queue and its one worker thread."""

    def __init__(self, conns: Connections, judge: Mapping[str, Any], *, budget_gb: float = 24.0,
                 device: str | None = None, log: Callable[[str], None] | None = None, max_queue: int = 256,
                 score_chunk: int = 8, lease_s: float = LEASE_S):
        self.conns = conns
        self.judge_kwargs = dict(judge)
        self.budget_gb = budget_gb
        self.device = device
        self.max_queue = max_queue  # queued jobs at most (0: no bound)
        self.score_chunk = score_chunk  # videos per step of a score job
        self.log = log or (lambda s: print(f"dqa serve: {s}", file=sys.stderr, flush=True))
        self._judge = None
        self._workers: dict[tuple[str, ...], dict] = {}  # components -> their workers' configurations
        self._judge_config: dict | None = None
        self._config_lock = threading.Lock()
        self._finished = threading.Condition()
        self.worker = Worker(self, self.log)
        self.owner = Owner.this_process()
        self.lease_s = float(lease_s)
        self._held: set[str] = set()  # ids of the running jobs this process holds (and beats for)
        self._held_lock = threading.Lock()
        self._lease_stop = threading.Event()
        self._lease_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------------
    # configuration identities (part of every job key): a finished job is reused only under the same one

    def judge_config(self) -> dict:
        """What answers a comparison, as the judgment store's keys see it: the model flags, the model and the
        adapter by content (local fingerprint of whole files, revision, the hub snapshot's commit) and the
        code's version. Read once per process without loading the judge (a request is keyed the same before
        and after the load), as the judge, once loaded, keeps the weights it read."""
        with self._config_lock:
            if self._judge_config is None:
                self._judge_config = self._read_judge_config()
            return self._judge_config

    def _read_judge_config(self) -> dict:
        from vrthinker.identity import adapter_identity, content_view, hashing_with, model_identity

        cfg = {k: v for k, v in self.judge_kwargs.items() if v is not None}
        if cfg.get("backend") == "metrics":
            from dqa.measures.pairwise import MetricsJudge

            cfg.update(MetricsJudge().config())
        with hashing_with(self.conns.get().file_hash):  # each checkpoint file hashed once, then by size+mtime
            if cfg.get("model"):
                model, revision = str(cfg["model"]), cfg.get("revision")
                cfg["model"] = content_view(model_identity(model, revision, hub_commit(model, revision)))
            if cfg.get("adapter"):
                cfg["adapter"] = content_view({"adapter": adapter_identity(str(cfg["adapter"]))})["adapter"]
        cfg["code"] = code_versions()
        return cfg

    def score_config(self, request: Mapping[str, Any] | None = None) -> dict:
        """What answers a score request: the grade weights, the device, and every worker the request's
        components need with its configuration as the score store keys it (worker and measures versions,
        models, options), plus the code's version."""
        from dqa.score.grade import load_config

        w = load_config()
        return {"weights": {"weights": dict(w.weights), **{g: dict(m) for g, m in w.groups.items()}},
                "device": self.device or "auto", "workers": self._worker_configs((request or {}).get("components")),
                "code": code_versions()}

    def _worker_configs(self, components: Any) -> dict:
        from vrthinker.loading import pick_device

        from dqa.score.scoring import build_workers, resolve_components

        comps = resolve_components(components)
        if comps not in self._workers:  # built, never loaded: a worker's config() needs no weights
            self._workers[comps] = {w.name: {"version": str(getattr(w, "version", "")), **w.config()}
                                    for w in build_workers(comps, device=pick_device(self.device))}
        return self._workers[comps]

    # ------------------------------------------------------------------------------------------------------
    # queue

    def submit(self, kind: str, request: Mapping[str, Any], hashes: Sequence[str]) -> Job:
        """A new queued job, or the finished / pending one that already answers this request."""
        config = self.judge_config() if kind == "compare" else self.score_config(request)
        key = request_key(kind, request, hashes, config)
        store = self.conns.get()
        with store.transaction() as db:
            row = db.execute("SELECT * FROM serve_jobs WHERE key=? AND state!='failed' ORDER BY seq DESC LIMIT 1",
                             (key,)).fetchone()
            if row is None:
                self._check_room(db)
                job_id = uuid.uuid4().hex
                db.execute("INSERT INTO serve_jobs (id, kind, request, key, state, created) VALUES (?,?,?,?,?,?)",
                           (job_id, kind, json.dumps(dict(request), ensure_ascii=False), key, "queued", time.time()))
                row = db.execute("SELECT * FROM serve_jobs WHERE id=?", (job_id,)).fetchone()
        self.worker.wake()
        return _job(row)

    def _check_room(self, db) -> None:
        if self.max_queue and db.execute("SELECT count(*) FROM serve_jobs WHERE state='queued'").fetchone()[0] \
                >= self.max_queue:
            raise QueueFull(self.max_queue, self.retry_after())

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean of the worker's recent steps (1 to 60)."""
        steps = list(self.worker.step_seconds)
        return max(1, min(60, math.ceil(sum(steps) / len(steps)))) if steps else 1

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """The job once done or failed (None: no such job); TimeoutError if it is not within `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job.state in ("done", "failed"):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout} s")
            with self._finished:
                self._finished.wait(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))

    def get(self, job_id: str) -> Job | None:
        row = self.conns.get().db.execute("SELECT * FROM serve_jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def counts(self) -> dict[str, int]:
        rows = self.conns.get().db.execute("SELECT state, count(*) FROM serve_jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {r[0]: r[1] for r in rows}

    def waiting_lanes(self) -> list[str]:
        """The kinds of job with something queued."""
        return [r[0] for r in self.conns.get().db.execute(
            "SELECT DISTINCT kind FROM serve_jobs WHERE state='queued'")]

    def health(self) -> dict:
        """The worker's state, the queue's depth per lane and the age of its oldest job; `ok` False when the
        worker is dead (the HTTP face answers 503 then)."""
        worker = self.worker.health()
        rows = self.conns.get().db.execute(
            "SELECT kind, count(*), min(created) FROM serve_jobs WHERE state='queued' GROUP BY kind").fetchall()
        per = {r[0]: r[1] for r in rows}
        oldest = min((r[2] for r in rows), default=None)
        running = self.conns.get().db.execute("SELECT count(*) FROM serve_jobs WHERE state='running'").fetchone()[0]
        return {"ok": worker.alive, "worker": worker.to_dict(),
                "queue": {"depth": sum(per.values()), "limit": self.max_queue,
                          "compare": per.get("compare", 0), "score": per.get("score", 0), "running": running,
                          "oldest_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3)},
                "lanes": {k: round(v, 3) for k, v in self.worker.share.used.items()},
                "owner": {"id": self.owner.id, "lease_s": self.lease_s, "held": sorted(self.held())}}

    # ------------------------------------------------------------------------------------------------------
    # the worker

    def start(self) -> None:
        """Queue again the jobs left running by processes that are gone, then start the worker and the
        heartbeat (which also looks for abandoned jobs every few seconds)."""
        self.reap()
        self.worker.start()
        self._lease_stop.clear()
        self._lease_thread = threading.Thread(target=self._keep_lease, name="dqa-serve-lease", daemon=True)
        self._lease_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker and the heartbeat. A job this process still held between steps (a score job part
        done) goes back in the queue at once; one whose step is still running keeps its owner, and is queued
        again by whoever sees this process gone."""
        self._lease_stop.set()
        self.worker.stop(timeout)
        if self._lease_thread is not None:
            self._lease_thread.join(timeout)
        if not self.worker.running():
            self.worker.forget()
            try:
                self.release()
            except Exception as e:  # noqa: BLE001 - a locked store at exit: the lease queues them later
                self.log(f"giving back this process's jobs: {type(e).__name__}: {e}")

    def held(self) -> set[str]:
        with self._held_lock:
            return set(self._held)

    def _hold(self, job_id: str, holding: bool) -> None:
        with self._held_lock:
            (self._held.add if holding else self._held.discard)(job_id)

    def claim(self, kind: str) -> Job | None:
        """The oldest queued job of this kind, now `running` and owned by this process; None when there is none.
        The claim is one UPDATE ... WHERE state='queued' checked by its row count: of two processes, one wins."""
        store = self.conns.get()
        o = self.owner
        while True:
            with store.transaction() as db:
                row = db.execute("SELECT * FROM serve_jobs WHERE state='queued' AND kind=? ORDER BY seq LIMIT 1",
                                 (kind,)).fetchone()
                if row is None:
                    return None
                now = time.time()
                won = db.execute("UPDATE serve_jobs SET state='running', started=?, owner=?, owner_host=?, "
                                 "owner_pid=?, heartbeat=?, lease=? WHERE id=? AND state='queued'",
                                 (now, o.id, o.host, o.pid, now, self.lease_s, row["id"])).rowcount == 1
            if won:
                self._hold(row["id"], True)
                return _job(row)

    def holds(self, job: Job) -> bool:
        """Whether this process still owns the running job (False: its lease ran out and another took it)."""
        row = self.conns.get().db.execute("SELECT 1 FROM serve_jobs WHERE id=? AND state='running' AND owner=?",
                                          (job.id, self.owner.id)).fetchone()
        if row is None:
            self._hold(job.id, False)
        return row is not None

    def beat(self) -> int:
        """Refresh the heartbeat of the jobs this process holds; the number refreshed. A held job no longer
        ours (another process took it after our lease ran out) is dropped, with a line in the log."""
        held = self.held()
        if not held:
            return 0
        marks = ",".join("?" * len(held))
        with self.conns.get().transaction() as db:
            ours = {r[0] for r in db.execute(f"SELECT id FROM serve_jobs WHERE state='running' AND owner=? "
                                             f"AND id IN ({marks})", (self.owner.id, *held))}
            if ours:
                db.execute(f"UPDATE serve_jobs SET heartbeat=? WHERE id IN ({','.join('?' * len(ours))})",
                           (time.time(), *ours))
        for lost in held - ours:
            if lost in self.held():  # not finished meanwhile
                self._hold(lost, False)
                self.log(f"job {lost}: no longer this process's (its lease ran out and it was queued again)")
        return len(ours)

    def reap(self) -> int:
        """Queue again every running job whose owner is gone (`dqa.serve.lease.abandoned`); how many."""
        mine = self.held()
        why: dict[str, list[str]] = {}
        with self.conns.get().transaction() as db:
            now = time.time()
            for row in db.execute("SELECT id, owner, owner_host, owner_pid, heartbeat, lease, started "
                                  "FROM serve_jobs WHERE state='running'").fetchall():
                if row["id"] in mine:
                    continue
                reason = abandoned(row, self.owner, now, self.lease_s)
                if reason is None:
                    continue
                n = db.execute("UPDATE serve_jobs SET state='queued', started=NULL, owner=NULL, owner_host=NULL, "
                               "owner_pid=NULL, heartbeat=NULL, lease=NULL WHERE id=? AND state='running' AND "
                               "owner IS ?", (row["id"], row["owner"])).rowcount
                if n:
                    why.setdefault(f"{row['owner'] or 'no owner'}: {reason}", []).append(row["id"])
        for who, ids in why.items():
            self.log(f"resuming {len(ids)} job(s) left running by a process that is gone ({who})")
        n = sum(len(ids) for ids in why.values())
        if n:
            self.worker.wake()
        return n

    def release(self) -> int:
        """Queue again at once the running jobs this process holds (at a clean stop, between steps)."""
        held = self.held()
        if not held:
            return 0
        with self.conns.get().transaction() as db:
            n = db.execute(f"UPDATE serve_jobs SET state='queued', started=NULL, owner=NULL, owner_host=NULL, "
                           f"owner_pid=NULL, heartbeat=NULL, lease=NULL WHERE state='running' AND owner=? "
                           f"AND id IN ({','.join('?' * len(held))})", (self.owner.id, *held)).rowcount
        with self._held_lock:
            self._held -= held
        if n:
            self.log(f"gave back {n} unfinished job(s) to the queue")
        return n

    def _keep_lease(self) -> None:
        every = heartbeat_every(self.lease_s)
        while not self._lease_stop.wait(every):
            for step in (self.beat, self.reap):
                try:
                    step()
                except Exception as e:  # noqa: BLE001 - a locked store: try again at the next beat
                    self.log(f"job lease: {step.__name__}: {type(e).__name__}: {e}")

    def finish(self, job: Job, result: Any, error: Mapping[str, str] | None) -> bool:
        """Store a job's end. When the result cannot be written the job is `failed` with that reason instead
        (tried a few times, the store may be locked); False when not even that could be written (a restart
        queues the job again)."""
        try:
            if self._write_end(job.id, result, error):
                return True
            self.log(f"job {job.id}: not stored: the job is no longer this process's (its lease ran out and "
                     "it was queued again)")
            self._hold(job.id, False)
            return False
        except Exception as e:  # noqa: BLE001 - a locked or full store must not kill the worker
            self.log(f"job {job.id}: its result could not be stored: {type(e).__name__}: {e}")
            reason = {"code": "store_error", "message": f"its result could not be stored: {type(e).__name__}: {e}"}
        for attempt in range(5):
            try:
                written = self._write_end(job.id, None, reason)
                self._hold(job.id, False)
                return written
            except Exception as e:  # noqa: BLE001
                self.log(f"job {job.id}: marking it failed: {type(e).__name__}: {e}")
                time.sleep(0.1 * 2 ** attempt)
        self._hold(job.id, False)  # no heartbeat from here: the lease queues it again
        return False

    def _write_end(self, job_id: str, result: Any, error: Mapping[str, str] | None) -> bool:
        """Store the end of a job this process owns; False when it is not ours (any more)."""
        with self.conns.get().transaction() as db:
            n = db.execute("UPDATE serve_jobs SET state=?, result=?, error=?, finished=? "
                           "WHERE id=? AND state='running' AND owner=?",
                           ("failed" if error else "done",
                            None if result is None else json.dumps(result, ensure_ascii=False, default=str),
                            None if error is None else json.dumps(dict(error)), time.time(), job_id,
                            self.owner.id)).rowcount
        self._hold(job_id, False)
        with self._finished:
            self._finished.notify_all()
        return n == 1

    def score_part(self, job: Job, videos: Sequence[str]) -> dict | None:
        """Score some of a score job's videos into the store (the job's last step reads them back); the
        error that fails the job, or None."""
        _result, error = self.run(job, videos=videos)
        return error

    def run(self, job: Job, videos: Sequence[str] | None = None) -> tuple[Any, dict | None]:
        """(the CLI's --json document, None) or (document or None, {"code", "message"})."""
        try:
            if job.kind == "compare":
                return self._compare(job.request)
            return self._score(job.request if videos is None else {**job.request, "videos": list(videos)})
        except JudgeError as e:
            return None, {"code": type(e).__name__, "message": str(e)}
        except Exception as e:  # noqa: BLE001 - the job fails, the service goes on; the log has the traceback
            self.log(f"job {job.id} crashed:\n{traceback.format_exc()}")
            return None, {"code": "internal", "message": f"{type(e).__name__}: {e}"}

    @contextmanager
    def exclusive(self):
        """The device alone (for a training run): the worker finishes its step and waits, and the loaded
        judge is let go, so one model is in memory at a time. Jobs keep queueing meanwhile."""
        with self.worker.exclusive():
            self.unload()
            yield

    def unload(self) -> None:
        """Let the loaded judge go and give its memory back (it loads again at the next comparison)."""
        if self._judge is None:
            return
        self.log("unloading the judge: the device is needed alone")
        self._judge = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

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
