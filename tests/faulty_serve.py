"""Test-only: the real `dqa serve` with faults injected, so the worker's recovery can be seen from outside.

Run as `python tests/faulty_serve.py serve ...` (the `dqa` command line). Environment:
  DQA_FAULT_RESULT_WRITES=N  the first N writes of a job's result raise sqlite3.OperationalError
  DQA_FAULT_WORKER_EXIT=1    the worker thread dies (SystemExit) at every step it takes
  DQA_FAULT_RUN_LOG=FILE     each job this process claims (starts running) is logged: 'TIME PID JOB' a line
  DQA_FAULT_JOB_SECONDS=S    each job step sleeps S seconds first (so a test can kill the process mid-job)
  DQA_FAULT_HOST=NAME        this process says it runs on host NAME (a peer cannot look its pid up, so only
                             the heartbeat's lease tells it this process is gone)
"""
from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time

_left = {"writes": int(os.environ.get("DQA_FAULT_RESULT_WRITES", "0") or 0)}
_lock = threading.Lock()


class FlakyConnection:
    """An sqlite3 connection whose job-result UPDATE raises while faults are left; all else passes through."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __getattr__(self, name):
        return getattr(self._db, name)

    def execute(self, sql: str, *args):
        if sql.lstrip().startswith("UPDATE serve_jobs SET state=?, result=?"):
            with _lock:
                fire = _left["writes"] > 0
                _left["writes"] -= fire
            if fire:
                raise sqlite3.OperationalError("disk I/O error (injected by tests/faulty_serve.py)")
        return self._db.execute(sql, *args)


def install() -> None:
    from dqa.serve import tables

    real_open = tables.open_store

    def open_store(path: str):
        store = real_open(path)
        store.db = FlakyConnection(store.db)
        return store

    tables.open_store = open_store
    if os.environ.get("DQA_FAULT_HOST"):
        from dqa.serve import lease

        lease.this_host = lambda: os.environ["DQA_FAULT_HOST"]
    if os.environ.get("DQA_FAULT_RUN_LOG") or os.environ.get("DQA_FAULT_JOB_SECONDS"):
        from dqa.serve import jobs as jobs_module

        real_claim, real_run = jobs_module.Jobs.claim, jobs_module.Jobs.run
        log, pause = os.environ.get("DQA_FAULT_RUN_LOG"), float(os.environ.get("DQA_FAULT_JOB_SECONDS") or 0)

        def claim(self, kind):
            job = real_claim(self, kind)
            if job is not None and log:
                with open(log, "a") as f:  # one short append per line: lines from two processes never mix
                    f.write(f"{time.time():.3f} {os.getpid()} {job.id}\n")
            return job

        def run(self, job, videos=None):
            time.sleep(pause)
            return real_run(self, job, videos)

        jobs_module.Jobs.claim, jobs_module.Jobs.run = claim, run
    if os.environ.get("DQA_FAULT_WORKER_EXIT"):
        from dqa.serve import jobs

        def die(*_a, **_k):
            raise SystemExit("injected by tests/faulty_serve.py")

        for name in ("claim", "_next"):  # whichever the worker asks for its next job
            if hasattr(jobs.Jobs, name):
                setattr(jobs.Jobs, name, die)


if __name__ == "__main__":
    install()
    from dqa.cli import main

    sys.exit(main())
