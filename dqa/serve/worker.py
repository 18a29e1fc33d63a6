"""The job worker of `dqa serve`: one thread runs one step at a time, a supervisor starts it again if it dies.

One thread means one model computes at a time. Two lanes share it: compares (from /v1/compare and A/B
questions) and scores. A score job runs in chunks of videos (each chunk's scores are stored, the last step
reads them all back), and before each step the lane that has used less of its share of the worker's time
goes next (compares 3/4, scores 1/4 while both wait), so a compare waits behind at most one chunk of a long
score job and a score job is never starved. `exclusive()` lends the device to something else (a training run)
between steps. A worker thread that dies fails the job it held, with the reason, and is started again; after
too many deaths in a minute /health says `dead` (503).
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

LANES = ("compare", "score")


class JobQueue(Protocol):
    """What the worker needs of the queue (`dqa.serve.jobs.Jobs`); jobs have `id`, `kind` and `request`."""

    score_chunk: int

    def waiting_lanes(self) -> list[str]: ...
    def claim(self, kind: str) -> Any: ...
    def holds(self, job: Any) -> bool: ...
    def run(self, job: Any) -> tuple[Any, dict | None]: ...
    def score_part(self, job: Any, videos: Sequence[str]) -> dict | None: ...
    def finish(self, job: Any, result: Any, error: Mapping[str, str] | None) -> bool: ...


WEIGHTS = {"compare": 3.0, "score": 1.0}  # while both lanes have work, compares get 3/4 of the worker's time


class FairShare:
    """Which lane steps next: of the lanes with work, the one that has used the least worker time for its
    weight (ties go to compares). A lane without work catches up with the others, so idle time is never
    saved up as credit."""

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = dict(weights or WEIGHTS)
        self.used = dict.fromkeys(LANES, 0.0)  # seconds / weight

    def pick(self, waiting: set[str]) -> str | None:
        busy = [lane for lane in LANES if lane in waiting]
        if not busy:
            return None
        floor = min(self.used[lane] for lane in busy)
        for lane in LANES:
            if lane not in waiting:
                self.used[lane] = max(self.used[lane], floor)
        return min(busy, key=lambda lane: (self.used[lane], LANES.index(lane)))

    def charge(self, lane: str, seconds: float) -> None:
        self.used[lane] += seconds / self.weights[lane]


@dataclass(frozen=True)
class WorkerHealth:
    """`state`: idle, busy, paused (the device lent out), restarting, dead or stopped. `job`: the job of the
    step under way."""

    state: str
    restarts: int
    job: str | None
    last_error: str | None

    @property
    def alive(self) -> bool:
        return self.state in ("idle", "busy", "paused", "restarting")

    def to_dict(self) -> dict:
        return {"state": self.state, "restarts": self.restarts, "job": self.job, "last_error": self.last_error}


class Worker:
    """The thread that runs the jobs of `jobs`, and its supervisor."""

    def __init__(self, jobs: JobQueue, log: Callable[[str], None], *, max_restarts: int = 5, window_s: float = 60.0):
        self.jobs = jobs
        self.log = log
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.share = FairShare()
        self.step_seconds: deque[float] = deque(maxlen=32)  # recent steps, for Retry-After
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._state = "stopped"
        self._restarts = 0
        self._deaths: deque[float] = deque()
        self._current: Any = None  # a Job
        self._score: tuple[Any, int] | None = None  # the score job under way and its next video
        self._last_error: str | None = None
        self._supervisor: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._gate = threading.Lock()  # held by each step, and by whoever has the device alone
        self._paused = False

    # ------------------------------------------------------------------------------------------------------
    # life

    def start(self) -> None:
        self._stop.clear()
        self._state = "idle"
        self._supervisor = threading.Thread(target=self._supervise, name="dqa-serve-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in (self._thread, self._supervisor):
            if t is not None:
                t.join(timeout)
        self._state = "stopped"

    def wake(self) -> None:
        self._wake.set()

    @contextmanager
    def exclusive(self):
        """The device alone for the block: waits for the step under way to end; no step starts until the
        block ends (a training run beside the loaded judge would hold two models at once)."""
        with self._gate:
            self._paused = True
            try:
                yield
            finally:
                self._paused = False
        self.wake()

    def running(self) -> bool:
        """Whether the worker thread is still running (a step outlasted stop's timeout)."""
        return self._thread is not None and self._thread.is_alive()

    def forget(self) -> None:
        """Drop the score job under way (after a stop: the queue gets it back)."""
        self._score = None
        self._current = None

    def health(self) -> WorkerHealth:
        state = self._state
        sup = self._supervisor
        if state != "stopped" and (sup is None or not sup.is_alive()) and not self._stop.is_set():
            state = "dead"
        if state in ("idle", "busy"):
            state = "busy" if self._current is not None else "paused" if self._paused else "idle"
        cur = self._current
        return WorkerHealth(state, self._restarts, cur.id if cur else None, self._last_error)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            t = threading.Thread(target=self._thread_main, name="dqa-serve-worker", daemon=True)
            self._thread = t
            t.start()
            t.join()
            if self._stop.is_set():
                return
            try:
                self._after_death()
            except Exception as e:  # noqa: BLE001 - the supervisor itself must not die
                self.log(f"worker supervisor: {type(e).__name__}: {e}")
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > self.window_s:
                self._deaths.popleft()
            if len(self._deaths) > self.max_restarts:
                self._state = "dead"
                self.log(f"the job worker died {len(self._deaths)} times in {self.window_s:.0f} s; not restarting "
                         "it (/health answers 503); restart the service")
                return
            self._state = "restarting"
            self._restarts += 1
            self._stop.wait(min(0.1 * 2 ** (len(self._deaths) - 1), 5.0))
            self._state = "idle"

    def _thread_main(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - recorded for /health; the supervisor restarts the thread
            self._last_error = f"{type(e).__name__}: {e}"
            self.log(f"the job worker died: {self._last_error}\n{traceback.format_exc()}")

    def _after_death(self) -> None:
        """Fail the job the dead thread held (it may be what killed it), with the reason."""
        job, self._current = self._current, None
        if job is None:
            return
        if self._score is not None and self._score[0].id == job.id:
            self._score = None
        self.jobs.finish(job, None, {"code": "worker_died",
                                     "message": f"the job worker stopped while running this job "
                                                f"({self._last_error}); the service restarted the worker"})

    # ------------------------------------------------------------------------------------------------------
    # steps

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.step()
            except Exception as e:  # noqa: BLE001 - a locked or broken database: log, wait, try again
                self.log(f"job queue: {type(e).__name__}: {e}")
                ran = False
            if not ran:
                self._wake.wait(0.5)
                self._wake.clear()

    def step(self) -> bool:
        """Run one compare or one chunk of a score job; False when there was nothing to do."""
        waiting = set(self.jobs.waiting_lanes())
        if self._score is not None:
            waiting.add("score")
        lane = self.share.pick(waiting)
        if lane is None:
            return False
        with self._gate:
            t0 = time.perf_counter()
            ran = self._compare_step() if lane == "compare" else self._score_step()
        if ran:
            spent = time.perf_counter() - t0
            self.share.charge(lane, spent)
            self.step_seconds.append(spent)
        return ran

    def _compare_step(self) -> bool:
        job = self.jobs.claim("compare")
        if job is None:
            return False
        self._current = job
        result, error = self.jobs.run(job)
        self.jobs.finish(job, result, error)
        self._current = None
        return True

    def _score_step(self) -> bool:
        if self._score is None:
            job = self.jobs.claim("score")
            if job is None:
                return False
            self._score = (job, 0)
        job, start = self._score
        if start and not self.jobs.holds(job):  # its lease ran out between steps and another process took it
            self._score = None
            return True
        self._current = job
        videos = job.request.get("videos") or []
        end = start + max(1, self.jobs.score_chunk)
        if end < len(videos):
            error = self.jobs.score_part(job, videos[start:end])
            if error is None:
                self._score = (job, end)
            else:
                self._score = None
                self.jobs.finish(job, None, error)
        else:  # the last step: the whole job, every chunk before it read back from the store
            self._score = None
            result, error = self.jobs.run(job)
            self.jobs.finish(job, result, error)
        self._current = None
        return True
