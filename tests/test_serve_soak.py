"""Restart safety under load: 200 mixed requests from 20 concurrent clients against a real `dqa serve --backend
metrics` process (its queue bounded at 40, so clients also meet 429 and Retry-After), killed with SIGKILL twice
in the middle and started again. Afterwards every accepted job is
done or failed with a reason, nothing is duplicated, no answer is lost, and the server's resident memory after
the run is within RSS_BOUND of what it was before. Bounded: well under 3 minutes on 2 cores."""
from __future__ import annotations

import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="dqa serve's tests need the serve extra (pip install '.[serve]')")
pytest.importorskip("fastapi", reason="dqa serve needs the serve extra (pip install '.[serve]')")

from serve_helpers import Server  # noqa: E402

CLIENTS = 20
CLIPS = 10
RSS_BOUND = 1.5  # the server's RSS after the run is at most this times its RSS before it (both warmed up)
DEADLINE_S = 150.0  # the whole run, kills and restarts included
RETRYABLE = (httpx.TransportError,)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def plan(seed: int = 25) -> list[tuple]:
    """The 200 requests: 70 compares, 30 scores and 50 A/B tasks (a question, then its answer: 2 requests)."""
    rnd = random.Random(seed)
    tasks: list[tuple] = []
    for _ in range(70):
        i, j = rnd.sample(range(CLIPS), 2)
        tasks.append(("compare", f"c{i}.mp4", f"c{j}.mp4", f"soak prompt {rnd.randrange(8)}"))
    for _ in range(30):
        vids = rnd.sample(range(CLIPS), rnd.randint(1, 4))
        tasks.append(("score", [f"c{i}.mp4" for i in vids], rnd.choice([["vq"], ["mq"], ["vq", "mq"]])))
    for k in range(50):
        i, j = rnd.sample(range(CLIPS), 2)
        tasks.append(("ab", f"c{i}.mp4", f"c{j}.mp4", f"soak question {k}", rnd.choice("ab") if k % 7 else "tie",
                      f"user{k % 5}"))
    rnd.shuffle(tasks)
    return tasks


def test_soak_200_requests_20_clients_two_kill_9s(tmp_path):
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path / "media"
    root.mkdir()
    for i in range(CLIPS):
        write_video(root / f"c{i}.mp4", render_scene(("shapes", "pan")[i % 2], 96, 64, 12, seed=70 + i), fps=8)
    s = Server(tmp_path / "soak.sqlite", [root], "--score-chunk", "2", "--max-queue", "40").start()
    t_start = time.monotonic()
    stats = {"retries": 0, "busy_429": 0, "requests": 0}
    lock = threading.Lock()
    accepted: dict[str, list] = {"compare": [], "score": [], "question": [], "answer": []}
    done_count = [0]
    local = threading.local()
    clients: list[httpx.Client] = []

    def call(method: str, path: str, body: dict) -> httpx.Response:
        """One request, sent again while the server is down or busy (429) until the soak's deadline."""
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=s.url, timeout=30)
            with lock:
                clients.append(local.client)
        while True:
            try:
                r = local.client.request(method, path, json=body)
                if r.status_code != 429:
                    return r
                with lock:
                    stats["busy_429"] += 1
                time.sleep(float(r.headers.get("retry-after", "1")))
            except RETRYABLE:
                with lock:
                    stats["retries"] += 1
                time.sleep(0.5)
            if time.monotonic() - t_start > DEADLINE_S:
                raise AssertionError(f"{path}: no answer within the soak's {DEADLINE_S} s")

    def run(task: tuple) -> None:
        kind = task[0]
        if kind == "compare":
            body = {"video1": task[1], "video2": task[2], "prompt": task[3]}
            r = call("POST", "/v1/compare", body)
            assert r.status_code == 202, r.text
            with lock:
                accepted["compare"].append((r.json()["job"], body))
        elif kind == "score":
            body = {"videos": task[1], "components": task[2]}
            r = call("POST", "/v1/score", body)
            assert r.status_code == 202, r.text
            with lock:
                accepted["score"].append((r.json()["job"], body))
        else:
            _, a, b, prompt, chosen, user = task
            r = call("POST", "/v1/ab", {"prompt": prompt, "a": a, "b": b})
            assert r.status_code == 201, r.text
            qid = r.json()["question"]
            a_r = call("POST", f"/v1/ab/{qid}/answer", {"chosen": chosen, "user": user})
            # 409: the answer was stored, its reply lost to a kill, and this was the request sent again
            assert a_r.status_code in (201, 409), a_r.text
            with lock:
                accepted["question"].append((qid, prompt, a, b))
                accepted["answer"].append((qid, chosen, user, a_r.status_code))
        with lock:
            stats["requests"] += 1 if kind != "ab" else 2
            done_count[0] += 1

    tasks = plan()
    assert sum(1 if t[0] != "ab" else 2 for t in tasks) == 200
    rss: dict[str, float] = {}
    kills: list[float] = []
    try:
        # warm up (judge loaded, score workers imported), then the RSS "before"
        with s.client() as c:
            for body, path in (({"video1": "c0.mp4", "video2": "c1.mp4", "prompt": "warm"}, "/v1/compare"),
                               ({"videos": ["c0.mp4"], "components": ["vq", "mq"]}, "/v1/score")):
                job = c.post(path, json=body).json()["job"]
                while c.get(f"/v1/jobs/{job}").json()["state"] not in ("done", "failed"):
                    time.sleep(0.05)
        rss["before"] = rss_mib(s.proc.pid)

        def killer():
            for frac in (0.3, 0.6):
                while done_count[0] < frac * len(tasks):
                    time.sleep(0.02)
                rss[f"at kill {len(kills) + 1}"] = rss_mib(s.proc.pid)
                s.kill9()
                kills.append(time.monotonic() - t_start)
                s.start(timeout=90)

        k = threading.Thread(target=killer, daemon=True)
        k.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for f in [pool.submit(run, t) for t in tasks]:
                f.result()
        k.join(60)
        assert len(kills) == 2
        with s.client() as c:  # drain: every job finished
            while True:
                h = c.get("/health").json()
                if h["queue"]["depth"] == 0 and h["queue"]["running"] == 0:
                    break
                assert time.monotonic() - t_start < DEADLINE_S + 60, h
                time.sleep(0.2)
            assert h["status"] == "ok" and h["worker"]["restarts"] == 0
            rss["after"] = rss_mib(s.proc.pid)
            jobs = {j: c.get(f"/v1/jobs/{j}").json() for j, _ in accepted["compare"] + accepted["score"]}
    finally:
        s.stop()
        for c in clients:
            c.close()
    wall = time.monotonic() - t_start

    # every accepted job finished, failed ones with a reason; results answer their requests
    states = [d["state"] for d in jobs.values()]
    assert set(states) <= {"done", "failed"}, states
    for d in jobs.values():
        if d["state"] == "failed":
            assert d["error"]["code"] and d["error"]["message"], d
    for job, body in accepted["compare"]:
        if jobs[job]["state"] == "done":
            assert jobs[job]["result"]["prompt"] == body["prompt"]
    for job, body in accepted["score"]:
        if jobs[job]["state"] == "done":
            assert [v["video"].rsplit("/", 1)[1] for v in jobs[job]["result"]["videos"]] == body["videos"]
    db = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        unfinished = db.execute("SELECT count(*) FROM serve_jobs WHERE state IN ('queued','running')").fetchone()[0]
        dup_jobs = db.execute("SELECT count(*) FROM (SELECT key FROM serve_jobs WHERE state!='failed' GROUP BY key "
                              "HAVING count(*) > 1)").fetchone()[0]
        dup_questions = db.execute("SELECT count(*) FROM (SELECT 1 FROM ab_questions GROUP BY prompt, video_a, "
                                   "video_b, dimension HAVING count(*) > 1)").fetchone()[0]
        n_questions = db.execute("SELECT count(*) FROM ab_questions").fetchone()[0]
        answers = {(r["question"], r["chosen"], r["user"]): r for r in db.execute("SELECT * FROM ab_answers")}
        selections = {r["id"]: r for r in db.execute("SELECT id, user, chosen FROM selections")}
        jobs_total = db.execute("SELECT count(*) FROM serve_jobs").fetchone()[0]
    finally:
        db.close()
    lost = [a for a in accepted["answer"] if a[:3] not in answers]
    for qid, chosen, user, _status in accepted["answer"]:
        row = answers.get((qid, chosen, user))
        if row is not None and chosen != "tie":
            assert selections[row["selection"]]["user"] == user and selections[row["selection"]]["chosen"] == chosen
    accepted_jobs = {j for j, _ in accepted["compare"] + accepted["score"]}
    failed = sum(s_ == "failed" for s_ in states)
    print(f"\nsoak: {stats['requests']} requests from {CLIENTS} clients in {wall:.1f} s, SIGKILL at "
          f"{', '.join(f'{t:.1f}' for t in kills)} s and restarted; {stats['retries']} sends repeated while down, "
          f"{stats['busy_429']} 429s\n"
          f"soak: jobs accepted {len(accepted_jobs)} distinct ({len(accepted['compare']) + len(accepted['score'])} "
          f"replies; {jobs_total} rows): done {len(states) - failed}, failed with a reason {failed}, unfinished "
          f"{unfinished}; duplicate jobs {dup_jobs}, duplicate questions {dup_questions} ({n_questions} questions)\n"
          f"soak: answers accepted {len(accepted['answer'])} ({sum(a[3] == 409 for a in accepted['answer'])} "
          f"confirmed after a lost reply), in the store {len(accepted['answer']) - len(lost)}, lost {len(lost)}\n"
          f"soak: server RSS before {rss['before']:.0f} MiB, "
          + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items() if k.startswith("at kill"))
          + f", after {rss['after']:.0f} MiB (after/before {rss['after'] / rss['before']:.2f}, bound {RSS_BOUND})")
    assert unfinished == 0 and dup_jobs == 0 and dup_questions == 0 and lost == []
    assert n_questions == len({q[0] for q in accepted["question"]}) == 50
    assert rss["after"] <= RSS_BOUND * rss["before"]
    assert wall < 180
