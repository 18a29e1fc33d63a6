"""Several processes on one store: each running job has an owner (host, pid, token), a heartbeat and a lease;
a process queues again only the jobs whose owner is gone, so two `dqa serve` on one db never run a job twice,
and a job whose process was killed runs again exactly once. Real server processes (tests/faulty_serve.py logs
each job a process starts, and slows the jobs down so a kill lands mid-job)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

httpx = pytest.importorskip("httpx", reason="dqa serve's tests need the serve extra (pip install '.[serve]')")
pytest.importorskip("fastapi", reason="dqa serve needs the serve extra (pip install '.[serve]')")

from serve_helpers import Server, wait_job  # noqa: E402


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path_factory.mktemp("lease") / "media"
    root.mkdir()
    for i in range(8):
        write_video(root / f"c{i}.mp4", render_scene(("shapes", "pan")[i % 2], 96, 64, 12, seed=90 + i), fps=8)
    return root


def compare(c: httpx.Client, i: int, j: int, prompt: str) -> str:
    r = c.post("/v1/compare", json={"video1": f"c{i}.mp4", "video2": f"c{j}.mp4", "prompt": prompt})
    assert r.status_code == 202, r.text
    return r.json()["job"]


def runs(log) -> list[tuple[float, int, str]]:
    """(time, pid, job) for each job a process started, in order."""
    if not log.exists():
        return []
    return [(float(t), int(p), j) for t, p, j in (line.split() for line in log.read_text().splitlines())]


def wait_running(c: httpx.Client, job: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while c.get(f"/v1/jobs/{job}").json()["state"] != "running":
        assert time.monotonic() < deadline, f"job {job} never started"
        time.sleep(0.05)


def server(db, clips, log, *args, **env) -> Server:
    return Server(db, [clips], *args, launcher="faulty_serve.py",
                  env={"DQA_FAULT_RUN_LOG": str(log), **{k: str(v) for k, v in env.items()}})


def test_two_servers_on_one_store_run_each_job_exactly_once(clips, tmp_path):
    """The second server starts while the first runs a job: it must not take that job (the old start()
    queued every running job again, so the second ran it too)."""
    db, log = tmp_path / "two.sqlite", tmp_path / "runs.log"
    a = server(db, clips, log, DQA_FAULT_JOB_SECONDS=4).start()
    b = None
    try:
        with a.client() as ca:
            jobs = [compare(ca, i, i + 1, f"two servers {i}") for i in range(4)]
            wait_running(ca, jobs[0])
            b = server(db, clips, log, DQA_FAULT_JOB_SECONDS=0.5).start()
            running_at_b = [j for j in jobs if ca.get(f"/v1/jobs/{j}").json()["state"] == "running"]
            with b.client() as cb:
                jobs += [compare(cb, i, i + 2, f"two servers, second {i}") for i in range(3)]
                done = [wait_job(cb if k % 2 else ca, j, 90) for k, j in enumerate(jobs)]
                owners = [ca.get("/health").json()["owner"]["id"], cb.get("/health").json()["owner"]["id"]]
            assert [d["state"] for d in done] == ["done"] * len(jobs), done
            assert running_at_b, "the first server ran nothing while the second started"
            assert owners[0] != owners[1]
    finally:
        for s in (a, b):
            if s is not None:
                s.stop()
    started = runs(log)
    counts = Counter(j for _t, _p, j in started)
    assert counts == Counter(dict.fromkeys(jobs, 1)), counts
    assert {p for _t, p, _j in started} <= {a.proc.pid, b.proc.pid}
    assert "resuming" not in b.stderr()


@pytest.mark.parametrize("where", ["another host", "this host"])
def test_a_job_of_a_killed_server_runs_again_once_on_the_other(clips, tmp_path, where):
    """kill -9 the server mid-job. On this host its pid is seen dead: the other server takes the job within a
    heartbeat or two, long before the lease. From another host (its pid cannot be looked up) the other waits
    for the lease to run out after the last heartbeat. Either way the job runs again exactly once, and the
    other server's own job once."""
    db, log = tmp_path / "kill.sqlite", tmp_path / "runs.log"
    lease = 6.0 if where == "another host" else 60.0
    host = {"DQA_FAULT_HOST": "elsewhere.example"} if where == "another host" else {}
    a = server(db, clips, log, "--job-lease", str(lease), DQA_FAULT_JOB_SECONDS=60, **host).start()
    b = None
    try:
        with a.client() as ca:
            victim = compare(ca, 0, 1, f"killed mid-job ({where})")
            wait_running(ca, victim)
        b = server(db, clips, log, "--job-lease", str(lease)).start()
        with b.client() as cb:
            assert cb.get(f"/v1/jobs/{victim}").json()["state"] == "running"  # a live owner's job stays its own
            a.kill9()
            killed = time.time()
            other = compare(cb, 2, 3, f"the survivor's own ({where})")
            d_victim, d_other = wait_job(cb, victim, 90), wait_job(cb, other, 90)
        assert d_victim["state"] == "done" and d_other["state"] == "done", (d_victim, d_other)
        assert d_victim["result"]["prompt"] == f"killed mid-job ({where})"
    finally:
        for s in (a, b):
            if s is not None:
                s.stop()
    started = runs(log)
    assert [p for _t, p, j in started if j == victim] == [a.proc.pid, b.proc.pid], started
    assert [p for _t, p, j in started if j == other] == [b.proc.pid], started
    again = next(t for t, p, j in started if j == victim and p == b.proc.pid)
    print(f"lease: killed on {where}: its job ran again {again - killed:.1f} s after the kill -9 "
          f"(--job-lease {lease:g})")
    if where == "another host":
        assert again - killed >= lease - 1.0, (again - killed, lease)  # its last heartbeat was at most 0.7 s old
    else:
        assert again - killed < 20, again - killed  # the dead pid, seen at the next look (every 5 s)
    assert "left running by a process that is gone" in b.stderr()


# ----------------------------------------------------------------------------------------------------------
# the rule itself, on a real store: which running jobs a starting process takes back


def _insert(db: sqlite3.Connection, job: str, **owner) -> None:
    cols = {"owner": None, "owner_host": None, "owner_pid": None, "heartbeat": None, "lease": None, **owner}
    db.execute("INSERT INTO serve_jobs (id, kind, request, key, state, created, started, owner, owner_host, "
               "owner_pid, heartbeat, lease) VALUES (?, 'compare', ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
               (job, json.dumps({"video1": "/nowhere/a.mp4", "video2": "/nowhere/b.mp4", "prompt": job}), job,
                time.time() - 100, time.time() - 100, cols["owner"], cols["owner_host"], cols["owner_pid"],
                cols["heartbeat"], cols["lease"]))


def test_start_takes_back_only_the_jobs_whose_owner_is_gone(tmp_path):
    from dqa.serve.jobs import Jobs
    from dqa.serve.lease import this_host
    from dqa.serve.tables import Connections

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host, now = this_host(), time.time()
    conns = Connections(str(tmp_path / "rule.sqlite"))
    with conns.get().transaction() as db:
        _insert(db, "live_here", owner=f"{host}:{live.pid}:aa", owner_host=host, owner_pid=live.pid,
                heartbeat=now, lease=30.0)
        _insert(db, "live_here_silent", owner=f"{host}:{live.pid}:bb", owner_host=host, owner_pid=live.pid,
                heartbeat=now - 31, lease=30.0)  # alive, but no heartbeat past its lease (a reused pid, stuck)
        _insert(db, "dead_here", owner=f"{host}:{dead.pid}:cc", owner_host=host, owner_pid=dead.pid,
                heartbeat=now, lease=30.0)
        _insert(db, "far_fresh", owner="far:1:dd", owner_host="far", owner_pid=os.getpid(), heartbeat=now - 5,
                lease=30.0)
        _insert(db, "far_stale", owner="far:1:ee", owner_host="far", owner_pid=os.getpid(), heartbeat=now - 40,
                lease=30.0)
        _insert(db, "far_long_lease", owner="far:1:ff", owner_host="far", owner_pid=1, heartbeat=now - 40,
                lease=600.0)  # the owner's own lease counts, not the reader's 30 s
        _insert(db, "before_owners")  # a row from schema 6: nobody heartbeats for it
        _insert(db, "pid_reused", owner=f"{host}:{os.getpid()}:00", owner_host=host, owner_pid=os.getpid(),
                heartbeat=now, lease=30.0)  # a killed process whose pid this one has now
    jobs = Jobs(conns, {"backend": "metrics"}, lease_s=30.0, log=lambda s: None)
    try:
        assert jobs.reap() == 5
        states = dict(conns.get().db.execute("SELECT id, state FROM serve_jobs").fetchall())
        assert states == {"live_here": "running", "far_fresh": "running", "far_long_lease": "running",
                          "live_here_silent": "queued", "dead_here": "queued", "far_stale": "queued",
                          "before_owners": "queued", "pid_reused": "queued"}, states
        owners = dict(conns.get().db.execute("SELECT id, owner FROM serve_jobs WHERE state='queued'").fetchall())
        assert set(owners.values()) == {None}
    finally:
        live.kill()
        live.wait()
        conns.close()


def test_two_queues_on_one_store_never_claim_one_job_twice(tmp_path):
    """Eight threads in two Jobs (two connections each) claim from 40 queued jobs at once: 40 claims, all
    different, each job owned by the queue that claimed it (the claim is one UPDATE ... WHERE state='queued')."""
    import threading

    from dqa.serve.jobs import Jobs
    from dqa.serve.tables import Connections

    path = str(tmp_path / "claims.sqlite")
    queues = [Jobs(Connections(path), {"backend": "metrics"}, log=lambda s: None) for _ in range(2)]
    with queues[0].conns.get().transaction() as db:
        for k in range(40):
            db.execute("INSERT INTO serve_jobs (id, kind, request, key, state, created) "
                       "VALUES (?, 'compare', '{}', ?, 'queued', ?)", (f"j{k}", f"k{k}", time.time()))
    claimed: list[tuple[int, str]] = []
    lock = threading.Lock()

    def take(q: int) -> None:
        while (job := queues[q].claim("compare")) is not None:
            with lock:
                claimed.append((q, job.id))

    threads = [threading.Thread(target=take, args=(k % 2,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sorted(j for _q, j in claimed) == sorted(f"j{k}" for k in range(40))
        rows = dict(queues[0].conns.get().db.execute("SELECT id, owner FROM serve_jobs").fetchall())
        assert all(rows[j] == queues[q].owner.id for q, j in claimed)
    finally:
        for q in queues:
            q.conns.close()


# ----------------------------------------------------------------------------------------------------------
# a training run (MCP's run_tuner) and the job worker: one model at a time


def slow_jobs(monkeypatch) -> None:
    """Every job this process runs takes a second more, so that a test can act while one is under way."""
    from dqa.serve.jobs import Jobs

    real_run = Jobs.run

    def slow(self, job, videos=None):
        time.sleep(1.0)
        return real_run(self, job, videos)

    monkeypatch.setattr(Jobs, "run", slow)


def test_a_training_run_has_the_device_alone(clips, tmp_path, monkeypatch):
    """`Jobs.exclusive()`, the block run_tuner trains in: it waits for the step under way, the loaded judge is
    let go, no job starts inside it (/health says paused), and what queued meanwhile runs after it."""
    from dqa.serve.jobs import Jobs
    from dqa.serve.tables import Connections

    slow_jobs(monkeypatch)
    conns = Connections(str(tmp_path / "device.sqlite"))
    jobs = Jobs(conns, {"backend": "metrics"}, log=lambda s: None)

    def ask(i: int, j: int, prompt: str):
        a, b = str(clips / f"c{i}.mp4"), str(clips / f"c{j}.mp4")
        return jobs.submit("compare", {"video1": a, "video2": b, "prompt": prompt},
                           [conns.get().file_hash(a), conns.get().file_hash(b)])

    jobs.start()
    try:
        first = ask(0, 1, "before training")
        deadline = time.monotonic() + 30
        while jobs.get(first.id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with jobs.exclusive():
            assert jobs.get(first.id).state == "done"  # the step under way ended first
            assert jobs._judge is None  # its judge let go
            second = ask(2, 3, "during training")
            time.sleep(1.5)
            assert jobs.get(second.id).state == "queued"
            assert jobs.health()["worker"]["state"] == "paused" and jobs.health()["ok"]
        assert jobs.wait(second.id, 30).state == "done"
    finally:
        jobs.stop()
        conns.close()


@pytest.mark.parametrize("command", ["serve", "mcp"])
def test_job_lease_must_be_positive(command, tmp_path):
    r = subprocess.run([sys.executable, "-m", "dqa.cli", command, "--media-root", str(tmp_path), "--db",
                        str(tmp_path / "x.sqlite"), "--job-lease", "0"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "dqa: error: job_lease must be positive, not 0.0", r.stderr


def test_a_job_taken_over_after_its_lease_is_not_finished_by_its_old_owner(clips, tmp_path, monkeypatch):
    """A process that lost its job (its heartbeat stopped past the lease and another process took it) neither
    stores a result over the new owner's nor runs the rest of a chunked score job."""
    from dqa.serve.jobs import Jobs
    from dqa.serve.tables import Connections

    slow_jobs(monkeypatch)
    conns = Connections(str(tmp_path / "taken.sqlite"))
    lines: list[str] = []
    jobs = Jobs(conns, {"backend": "metrics"}, log=lines.append, score_chunk=1)
    paths = [str(clips / f"c{i}.mp4") for i in range(4)]
    hashes = [conns.get().file_hash(p) for p in paths]

    def take_over(job_id: str) -> None:
        deadline = time.monotonic() + 30
        while jobs.get(job_id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with conns.get().transaction() as db:  # what another process's claim leaves after a re-queue
            db.execute("UPDATE serve_jobs SET owner='far:7:aa', owner_host='far', owner_pid=7, heartbeat=? "
                       "WHERE id=?", (time.time(), job_id))

    jobs.start()
    try:
        cmp = jobs.submit("compare", {"video1": paths[0], "video2": paths[1], "prompt": "taken"}, hashes[:2])
        take_over(cmp.id)
        score = jobs.submit("score", {"videos": paths[1:], "prompt": "taken", "components": ["vq"]}, hashes[1:])
        take_over(score.id)
        time.sleep(4.0)  # the compare's run ends, the score job's first chunk ends
        for job_id in (cmp.id, score.id):
            row = conns.get().db.execute("SELECT state, owner, result FROM serve_jobs WHERE id=?",
                                         (job_id,)).fetchone()
            assert tuple(row) == ("running", "far:7:aa", None), (job_id, tuple(row))
        assert jobs.held() == set() and jobs.health()["worker"]["state"] == "idle"
        assert any(f"job {cmp.id}: not stored" in line for line in lines), lines
        later = jobs.submit("compare", {"video1": paths[2], "video2": paths[3], "prompt": "after"}, hashes[2:])
        assert jobs.wait(later.id, 30).state == "done"  # the worker goes on
    finally:
        jobs.stop()
        conns.close()


def test_a_schema_6_store_gains_the_owner_columns_and_its_running_job_is_queued_again(tmp_path):
    """Migration 7 is additive: a store written before owners were kept opens, keeps its jobs, and the job
    it left running (nobody heartbeats for it) goes back in the queue."""
    from vrthinker.store import MIGRATIONS, SCHEMA_VERSION

    from dqa.serve.jobs import Jobs
    from dqa.serve.tables import Connections

    path = tmp_path / "v6.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for m in MIGRATIONS:
        if m.version <= 6:
            db.execute("BEGIN")
            m.apply(db)
            db.execute(f"PRAGMA user_version={m.version}")
            db.execute("COMMIT")
    db.execute("INSERT INTO serve_jobs (id, kind, request, key, state, created, started) "
               "VALUES ('old', 'compare', '{}', 'k', 'running', 1.0, 2.0)")
    db.close()
    conns = Connections(str(path))
    try:
        columns = {r[1] for r in conns.get().db.execute("PRAGMA table_info(serve_jobs)")}
        assert SCHEMA_VERSION == conns.get().schema_version() >= 7
        assert {"owner", "owner_host", "owner_pid", "heartbeat", "lease"} <= columns
        assert Jobs(conns, {"backend": "metrics"}, log=lambda s: None).reap() == 1
        assert conns.get().db.execute("SELECT state FROM serve_jobs WHERE id='old'").fetchone()[0] == "queued"
    finally:
        conns.close()
