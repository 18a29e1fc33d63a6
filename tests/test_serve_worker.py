"""`dqa serve`'s job worker under faults and load: a real server process (tests/faulty_serve.py injects the
faults), driven over HTTP."""
from __future__ import annotations

import sqlite3
import time

import pytest

httpx = pytest.importorskip("httpx", reason="dqa serve's tests need the serve extra (pip install '.[serve]')")
pytest.importorskip("fastapi", reason="dqa serve needs the serve extra (pip install '.[serve]')")

from serve_helpers import Server, wait_job  # noqa: E402


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A media root with 16 short distinct clips."""
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path_factory.mktemp("worker") / "media"
    root.mkdir()
    for i in range(16):
        write_video(root / f"c{i:02d}.mp4", render_scene(("shapes", "pan")[i % 2], 128, 80, 16, seed=40 + i), fps=8)
    return root


def compare(c: httpx.Client, i: int, j: int, prompt: str) -> httpx.Response:
    return c.post("/v1/compare", json={"video1": f"c{i:02d}.mp4", "video2": f"c{j:02d}.mp4", "prompt": prompt})


def test_a_failed_result_write_fails_that_job_with_the_reason_and_the_worker_goes_on(clips, tmp_path):
    s = Server(tmp_path / "w.sqlite", [clips], launcher="faulty_serve.py",
               env={"DQA_FAULT_RESULT_WRITES": "1"}).start()
    try:
        with s.client() as c:
            first = compare(c, 0, 1, "fault one").json()["job"]
            second = compare(c, 2, 3, "fault two").json()["job"]
            d1, d2 = wait_job(c, first, 30), wait_job(c, second, 30)
            assert d1["state"] == "failed" and d1["error"]["code"] == "store_error", d1
            assert "disk I/O error" in d1["error"]["message"] and d1["finished"]
            assert d2["state"] == "done" and d2["error"] is None
            h = c.get("/health")
            assert h.status_code == 200, h.text
            body = h.json()
            assert body["status"] == "ok" and body["worker"]["state"] in ("idle", "busy")
            assert body["queue"]["depth"] == 0 and body["queue"]["oldest_age_s"] is None
            # the same request again is a new job (a failed one is never handed back), and it succeeds
            again = compare(c, 0, 1, "fault one").json()["job"]
            assert again != first and wait_job(c, again, 30)["state"] == "done"
    finally:
        s.stop()
    assert "its result could not be stored" in s.stderr()


def test_a_worker_that_keeps_dying_is_restarted_then_health_turns_503(clips, tmp_path):
    s = Server(tmp_path / "d.sqlite", [clips], launcher="faulty_serve.py", env={"DQA_FAULT_WORKER_EXIT": "1"}).start()
    try:
        with s.client() as c:
            job = compare(c, 4, 5, "dying").json()["job"]
            deadline = time.monotonic() + 30
            while (h := c.get("/health")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert h.status_code == 503, h.text
            body = h.json()
            assert body["status"] == "dead" and body["worker"]["state"] == "dead"
            assert body["worker"]["restarts"] == 5 and "SystemExit" in body["worker"]["last_error"]
            assert body["queue"]["depth"] == 1 and body["queue"]["compare"] == 1
            time.sleep(0.3)
            assert c.get("/health").json()["queue"]["oldest_age_s"] > 0.3
            assert c.get(f"/v1/jobs/{job}").json()["state"] == "queued"  # kept for the next start, not lost
    finally:
        s.stop()
    assert s.stderr().count("the job worker died:") == 6 and "not restarting it" in s.stderr()


def test_compares_keep_moving_beside_a_long_score_job(clips, tmp_path):
    s = Server(tmp_path / "l.sqlite", [clips], "--score-chunk", "2").start()
    try:
        with s.client() as c:
            # warm: the judge loaded, the score workers' modules imported
            assert wait_job(c, compare(c, 14, 15, "warm up").json()["job"])["state"] == "done"
            warm = c.post("/v1/score", json={"videos": ["c15.mp4"], "components": ["vq", "mq"]}).json()["job"]
            assert wait_job(c, warm, 60)["state"] == "done"
            r = c.post("/v1/score", json={"videos": [f"c{i:02d}.mp4" for i in range(12)], "components": ["vq", "mq"]})
            long_job = r.json()["job"]
            deadline = time.monotonic() + 30
            while c.get(f"/v1/jobs/{long_job}").json()["state"] != "running" and time.monotonic() < deadline:
                time.sleep(0.02)
            quick = [compare(c, 12 + k, 13 + k, f"beside {k}").json()["job"] for k in range(3)]
            done = [wait_job(c, j, 60) for j in quick]
            assert all(d["state"] == "done" for d in done)
            assert c.get(f"/v1/jobs/{long_job}").json()["state"] == "running"  # the compares did not wait for it
            score = wait_job(c, long_job, 120)
            assert score["state"] == "done" and len(score["result"]["videos"]) == 12
            assert all(v["components"]["vq"]["value"] is not None for v in score["result"]["videos"])
            waits = [d["finished"] - d["created"] for d in done]
            length = score["finished"] - score["started"]
            print(f"\nscore job of 12 videos: {length:.2f} s; compares beside it waited {max(waits):.2f} s at most "
                  f"(ratio {max(waits) / length:.2f})")
            assert max(waits) < 0.5 * length
    finally:
        s.stop()


def test_the_chunked_score_document_equals_the_one_step_document(clips, tmp_path):
    """A score job run in chunks gives what the same job gives in one step (values and grades)."""
    docs = []
    for chunk in ("2", "64"):
        s = Server(tmp_path / f"c{chunk}.sqlite", [clips], "--score-chunk", chunk).start()
        try:
            with s.client() as c:
                r = c.post("/v1/score", json={"videos": [f"c{i:02d}.mp4" for i in range(5)], "components": ["vq"]})
                docs.append(wait_job(c, r.json()["job"], 60)["result"])
        finally:
            s.stop()
    strip = [[(v["video"], v["components"]["vq"]["value"], v["grade"]) for v in d["videos"]] for d in docs]
    assert strip[0] == strip[1]


def test_a_full_queue_answers_429_with_retry_after_and_big_bodies_413(clips, tmp_path):
    s = Server(tmp_path / "q.sqlite", [clips], "--max-queue", "2", "--max-body", "4096", "--max-videos", "12",
               "--score-chunk", "12").start()
    try:
        with s.client() as c:
            vids = [f"c{i:02d}.mp4" for i in range(12)]
            busy = c.post("/v1/score", json={"videos": vids, "components": ["vq", "mq"]}).json()["job"]
            deadline = time.monotonic() + 30
            while c.get(f"/v1/jobs/{busy}").json()["state"] != "running" and time.monotonic() < deadline:
                time.sleep(0.02)
            waiting = [c.post("/v1/score", json={"videos": vids[k:k + 2], "components": ["vq"]}) for k in (0, 2)]
            assert [r.status_code for r in waiting] == [202, 202]
            full = c.post("/v1/score", json={"videos": vids[4:6], "components": ["vq"]})
            assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full", full.text
            assert int(full.headers["retry-after"]) >= 1
            assert compare(c, 0, 1, "no room").status_code == 429
            ab = c.post("/v1/ab", json={"prompt": "no room", "a": "c00.mp4", "b": "c01.mp4"})
            assert ab.status_code == 429 and "retry-after" in ab.headers
            # the same request as a queued job is that job, full queue or not
            same = c.post("/v1/score", json={"videos": vids[0:2], "components": ["vq"]})
            assert same.status_code == 202 and same.json()["job"] == waiting[0].json()["job"]
            h = c.get("/health").json()
            assert h["queue"]["depth"] == 2 and h["queue"]["limit"] == 2 and h["queue"]["score"] == 2
            big = c.post("/v1/compare", json={"video1": "c00.mp4", "video2": "c01.mp4", "prompt": "p" * 5000})
            assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

            def chunks():  # no Content-Length: read up to the limit, then refused
                for _ in range(10):
                    yield b" " * 1000

            streamed = c.post("/v1/compare", content=chunks(), headers={"Content-Type": "application/json"})
            assert streamed.status_code == 413
            many = c.post("/v1/score", json={"videos": vids + ["c12.mp4"]})
            assert many.status_code == 422 and many.json()["error"]["code"] == "too_many_videos"
            assert wait_job(c, busy, 120)["state"] == "done"
    finally:
        s.stop()
    db = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    assert db.execute("SELECT count(*) FROM ab_questions").fetchone() == (0,)  # a refused A/B question left nothing
    db.close()


def test_the_python_face_submits_and_waits_without_http(clips, tmp_path):
    """What a second front end uses: Jobs.submit / wait / health on the same store and worker, no HTTP."""
    from dqa.serve.jobs import Jobs, QueueFull
    from dqa.serve.tables import Connections

    conns = Connections(str(tmp_path / "py.sqlite"))
    jobs = Jobs(conns, {"backend": "metrics"}, max_queue=1, log=lambda _s: None)
    store = conns.get()
    paths = [str(clips / f"c{i:02d}.mp4") for i in (0, 1, 2, 3)]
    hashes = [store.file_hash(p) for p in paths]
    first = jobs.submit("compare", {"video1": paths[0], "video2": paths[1], "prompt": "py", "orders": "one"},
                        hashes[:2])
    with pytest.raises(QueueFull) as full:  # the worker is not started: the one queued job fills the queue
        jobs.submit("compare", {"video1": paths[2], "video2": paths[3], "prompt": "py", "orders": "one"}, hashes[2:])
    assert full.value.retry_after >= 1
    with pytest.raises(TimeoutError):
        jobs.wait(first.id, timeout=0.3)
    jobs.start()
    try:
        done = jobs.wait(first.id, timeout=60)
        assert done.state == "done" and done.result["videos"] == paths[:2]
        assert jobs.wait("no-such-job") is None
        h = jobs.health()
        assert h["ok"] and h["queue"]["depth"] == 0 and h["worker"]["state"] in ("idle", "busy")
        jobs.stop()
        assert jobs.health()["worker"]["state"] == "stopped"
    finally:
        jobs.stop()
        conns.close()
