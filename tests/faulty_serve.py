"""Test-only: the real `dqa serve` with faults injected, so the worker's recovery can be seen from outside.

Run as `python tests/faulty_serve.py serve ...` (the `dqa` command line). Environment:
  DQA_FAULT_RESULT_WRITES=N  the first N writes of a job's result raise sqlite3.OperationalError
  DQA_FAULT_WORKER_EXIT=1    the worker thread dies (SystemExit) at every step it takes
"""
from __future__ import annotations

import os
import sqlite3
import sys
import threading

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
