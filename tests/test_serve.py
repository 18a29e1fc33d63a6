"""`dqa serve` end to end: a real server process (--backend metrics, offline) driven over HTTP with httpx."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="dqa serve's tests need the serve extra (pip install '.[serve]')")
pytest.importorskip("fastapi", reason="dqa serve needs the serve extra (pip install '.[serve]')")
pytest.importorskip("uvicorn", reason="dqa serve needs the serve extra (pip install '.[serve]')")

from serve_helpers import ROOT, Server, media_with_escapes, wait_job  # noqa: E402

PROMPT = "a red square glides over a textured field"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A media root with two clips, a corrupt file, and escapes: a symlink out, a file just outside, and a
    symlink to the folder above the root."""
    base = tmp_path_factory.mktemp("serve")
    media = media_with_escapes(base)
    (media["root"] / "dir_escape").symlink_to(base)
    return media


@pytest.fixture(scope="module")
def server(media):
    s = Server(media["base"] / "store.sqlite", [media["root"]]).start()
    yield s
    s.stop()
    assert "Traceback" not in s.stderr()


@pytest.fixture()
def client(server):
    with server.client() as c:
        yield c


def is_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def test_health_and_openapi(client):
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["worker"]["state"] in ("idle", "busy")
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/compare", "/v1/score", "/v1/jobs/{job_id}", "/v1/ab", "/v1/ab/{qid}", "/v1/ab/{qid}/answer"):
        assert p in paths


def test_compare_job_is_the_cli_document_and_a_repeat_returns_at_once(client, media, capsys):
    r = client.post("/v1/compare", json={"video1": str(media["a"]), "video2": "sub/b.mp4", "prompt": PROMPT})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    d = wait_job(client, job)
    assert d["state"] == "done" and d["error"] is None
    from vrthinker.cli import main as judge_main

    capsys.readouterr()
    # TA missing by design is no failure: exit 0
    assert judge_main([str(media["a"]), str(media["b"]), "--prompt", PROMPT, "--backend", "metrics", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    got = d["result"]
    assert set(got) == set(printed)
    for k in printed:
        if k not in ("timings", "extra"):
            assert got[k] == printed[k], k
    assert got["extra"]["scores"]["video1"]["vq"] == printed["extra"]["scores"]["video1"]["vq"]
    # same content and configuration: the finished job, at once (even through another name for the file)
    t = time.perf_counter()
    again = client.post("/v1/compare", json={"video1": "a.mp4", "video2": str(media["b"]), "prompt": PROMPT})
    assert again.status_code == 202 and again.json() == {"job": job, "state": "done"}
    assert time.perf_counter() - t < 2
    other = client.post("/v1/compare", json={"video1": "a.mp4", "video2": "sub/b.mp4", "prompt": PROMPT,
                                             "orders": "both"})
    assert other.json()["job"] != job


def test_score_job_is_the_cli_document(client, media, capsys):
    r = client.post("/v1/score", json={"videos": ["a.mp4", "sub/b.mp4"], "prompt": PROMPT,
                                       "components": ["vq", "mq"]})
    assert r.status_code == 202, r.text
    d = wait_job(client, r.json()["job"])
    assert d["state"] == "done", d
    from dqa.cli import main as dqa_main

    capsys.readouterr()
    assert dqa_main(["score", str(media["a"]), str(media["b"]), "--prompt", PROMPT, "--components", "vq,mq",
                     "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    got = d["result"]
    assert set(got) == set(printed) and got["components"] == ["vq", "mq"]
    for g, p in zip(got["videos"], printed["videos"]):
        assert g["video"] == p["video"] and g["grade"] == p["grade"]
        assert {k: v["value"] for k, v in g["components"].items()} == {k: v["value"] for k, v in
                                                                      p["components"].items()}


def test_bad_requests_get_clear_json_errors(client, media):
    ok = {"video1": "a.mp4", "video2": "sub/b.mp4", "prompt": PROMPT}
    post = lambda path, **over: client.post(path, json={**ok, **over})
    is_error(post("/v1/compare", video1=str(media["outside"])), 403, "outside_roots")
    is_error(post("/v1/compare", video1="escape.mp4"), 403, "outside_roots")  # symlink out of the root
    is_error(post("/v1/compare", video1="dir_escape/secret.mp4"), 403, "outside_roots")
    is_error(post("/v1/compare", video1="../secret.mp4"), 403, "outside_roots")
    is_error(post("/v1/compare", video1="/nonexistent/x.mp4"), 403, "outside_roots")  # existence not revealed
    is_error(post("/v1/compare", video1="missing.mp4"), 422, "file_not_found")
    is_error(post("/v1/compare", video1="sub"), 422, "file_not_found")
    is_error(post("/v1/compare", video2="corrupt.mp4"), 422, "undecodable")
    is_error(post("/v1/compare", prompt="x" * 2001), 422, "prompt_too_long")
    assert post("/v1/compare", prompt="y" * 2000).status_code == 202
    is_error(post("/v1/compare", prompt=" "), 422, "missing_field")
    is_error(post("/v1/compare", orders="three"), 422, "bad_orders")
    is_error(client.post("/v1/compare", json={"video2": "a.mp4", "prompt": PROMPT}), 422, "missing_field")
    is_error(client.post("/v1/compare", json={**ok, "prompt": 5}), 422)
    is_error(client.post("/v1/compare", json=[1, 2]), 422)
    for broken in ('{"video1": "a.mp4",', "not json", '{"a": 1} trailing'):
        is_error(client.post("/v1/compare", content=broken, headers={"Content-Type": "application/json"}), 400,
                 "malformed_json")
    is_error(client.post("/v1/compare", content=json.dumps(ok), headers={"Content-Type": "text/plain"}), 415)
    is_error(client.post("/v1/score", json={"videos": [], "prompt": PROMPT}), 422, "missing_field")
    is_error(client.post("/v1/score", json={"videos": ["a.mp4"], "components": ["nope"]}), 422, "bad_components")
    is_error(client.post("/v1/score", json={"videos": ["a.mp4", "escape.mp4"]}), 403, "outside_roots")
    is_error(client.post("/v1/score", json={"videos": ["corrupt.mp4"]}), 422, "undecodable")
    is_error(client.post("/v1/score", json={"videos": ["a.mp4"], "prompt": "z" * 2001}), 422, "prompt_too_long")
    is_error(client.get("/v1/jobs/nope"), 404, "not_found")
    is_error(client.get("/v1/nothing-here"), 404, "not_found")
    is_error(client.delete("/v1/compare"), 405)
    is_error(client.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "a.mp4"}), 422, "same_video")
    is_error(client.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "escape.mp4"}), 403)
    is_error(client.post("/v1/ab", json={"prompt": "p" * 2001, "a": "a.mp4", "b": "sub/b.mp4"}), 422)
    is_error(client.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4", "dimension": "XX"}), 422,
             "bad_dimension")
    is_error(client.get("/v1/ab/999999"), 404)
    is_error(client.get("/v1/ab/abc"), 422)
    is_error(client.post("/v1/ab/999999/answer", json={"chosen": "a"}), 404)


def test_media_is_served_with_ranges_and_only_from_the_roots(client, media):
    data = media["a"].read_bytes()
    full = client.get("/media", params={"path": str(media["a"])})
    assert full.status_code == 200 and full.content == data and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "video/mp4"
    part = client.get("/media", params={"path": "a.mp4"}, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get("/media", params={"path": "a.mp4"}, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    rest = client.get("/media", params={"path": "a.mp4"}, headers={"Range": f"bytes={len(data) - 5}-"})
    assert rest.content == data[-5:]
    assert client.get("/media", params={"path": "a.mp4"}, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    for rng in (None, "bytes=100-199", f"bytes={len(data)}-"):  # HEAD: GET's status and headers, no body
        extra = {"Range": rng} if rng else {}
        got = client.get("/media", params={"path": "a.mp4"}, headers=extra)
        head = client.head("/media", params={"path": "a.mp4"}, headers=extra)
        assert head.status_code == got.status_code and head.content == b""
        for h in ("content-length", "content-type", "accept-ranges", "content-range"):
            assert head.headers.get(h) == got.headers.get(h), h
    assert client.head("/media", params={"path": "a.mp4"}).headers["content-length"] == str(len(data))
    assert client.head("/media", params={"path": "escape.mp4"}).status_code == 403
    assert client.head("/media", params={"path": "nope.mp4"}).status_code == 422
    is_error(client.get("/media", params={"path": str(media["outside"])}), 403)
    is_error(client.get("/media", params={"path": "escape.mp4"}), 403)
    is_error(client.get("/media", params={"path": "../secret.mp4"}), 403)
    is_error(client.get("/media", params={"path": "/etc/passwd"}), 403)
    is_error(client.get("/media", params={"path": "nope.mp4"}), 422)
    is_error(client.get("/media", headers={"Host": "evil.example"}, params={"path": "a.mp4"}), 403, "bad_host")


def test_ab_question_answers_become_selections_and_the_verdict_comes_after(client, server, media):
    from dqa.tune.selections import open_store, usable

    r = client.post("/v1/ab", json={"prompt": PROMPT + " (ab)", "a": "a.mp4", "b": "sub/b.mp4"})
    assert r.status_code == 201, r.text
    qid = r.json()["question"]
    q = client.get(f"/v1/ab/{qid}").json()
    assert q["answered"] is False and q["verdict"] is None and "job" not in q
    assert q["dimensions"] == ["TA", "VQ", "MQ", "OA"] and q["a"] == str(media["a"])
    is_error(client.post(f"/v1/ab/{qid}/answer", json={"chosen": "c"}), 422, "bad_choice")
    is_error(client.post(f"/v1/ab/{qid}/answer", json={"chosen": "a", "dimension": "ZZ"}), 422, "bad_dimension")
    a = client.post(f"/v1/ab/{qid}/answer", json={"chosen": "b", "user": "ann"})
    assert a.status_code == 201, a.text
    assert a.json()["dimension"] == "OA" and a.json()["status"] == "recorded" and a.json()["selection"]
    is_error(client.post(f"/v1/ab/{qid}/answer", json={"chosen": "a", "user": "ann"}), 409, "already_answered")
    tie = client.post(f"/v1/ab/{qid}/answer", json={"chosen": "tie", "dimension": "VQ", "user": "ann"}).json()
    assert tie["status"] == "tie" and tie["selection"] is None
    with open_store(server.db) as store:
        sels, _bad = usable(store)
        mine = [s for s in sels if s.prompt == PROMPT + " (ab)"]
    assert [(s.dimension, s.chosen, s.user, s.video_a) for s in mine] == [("OA", "b", "ann", str(media["a"]))]
    assert mine[0].id == a.json()["selection"] and mine[0].source == f"serve:ab/{qid}"
    deadline = time.monotonic() + 30
    while (q := client.get(f"/v1/ab/{qid}").json())["verdict"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert q["answered"] and q["state"] == "done" and q["verdict"]["labels"]["TA"] is None
    assert [x["dimension"] for x in q["answers"]] == ["OA", "VQ"]
    one = client.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4", "dimension": "mq"}).json()
    assert client.get(f"/v1/ab/{one['question']}").json()["dimensions"] == ["MQ"]
    is_error(client.post(f"/v1/ab/{one['question']}/answer", json={"chosen": "a", "dimension": "TA"}), 422)


def test_twenty_clients_at_once_nothing_lost_or_duplicated(client, server, media):
    def post(k: int):
        with server.client() as c:
            if k % 2:
                r = c.post("/v1/ab", json={"prompt": f"concurrent question {k}", "a": "a.mp4", "b": "sub/b.mp4"})
                return "ab", k, r.status_code, r.json()
            r = c.post("/v1/compare", json={"video1": "a.mp4", "video2": "sub/b.mp4", "prompt": f"concurrent {k}"})
            return "compare", k, r.status_code, r.json()

    with ThreadPoolExecutor(20) as pool:
        out = list(pool.map(post, range(20)))
        same = list(pool.map(lambda _: server.client().post("/v1/compare", json={
            "video1": "a.mp4", "video2": "sub/b.mp4", "prompt": "one request twenty times"}).json()["job"],
            range(20)))
    assert all(status in (201, 202) for _, _, status, _ in out), out
    jobs = {k: body["job"] for kind, k, _, body in out if kind == "compare"}
    questions = {k: body["question"] for kind, k, _, body in out if kind == "ab"}
    assert len(set(jobs.values())) == 10 and len(set(questions.values())) == 10
    assert len(set(same)) == 1
    for k, job in jobs.items():
        d = wait_job(client, job)
        assert d["state"] == "done" and d["result"]["prompt"] == f"concurrent {k}"
    for k, qid in questions.items():
        assert client.get(f"/v1/ab/{qid}").json()["prompt"] == f"concurrent question {k}"
    db = sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)
    keys = db.execute("SELECT key, count(*) FROM serve_jobs GROUP BY key HAVING count(*) > 1").fetchall()
    rows = db.execute("SELECT count(*) FROM serve_jobs WHERE request LIKE '%one request twenty times%'").fetchone()
    db.close()
    assert keys == [] and rows == (1,)


def test_page_is_escaped_and_posts_need_the_csrf_token(client, media):
    evil = '<script>alert("x")</script> & </script><img src=x onerror=alert(1)>'
    qid = client.post("/v1/ab", json={"prompt": evil, "a": "a.mp4", "b": "sub/b.mp4", "dimension": "OA"}).json()[
        "question"]
    page = client.get(f"/ab/{qid}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page.text
    assert "nonce-" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    csrf = re.search(r'"csrf": "([0-9a-f]+)"', page.text).group(1)
    body = {"answers": {"OA": "a"}}
    is_error(client.post(f"/ab/{qid}/answer", json=body), 403, "csrf")
    is_error(client.post(f"/ab/{qid}/answer", json=body, headers={"X-CSRF-Token": "0" * 64}), 403, "csrf")
    r = client.post(f"/ab/{qid}/answer", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["answers"][0]["status"] == "recorded"
    is_error(client.post(f"/ab/{qid}/answer", json=body, headers={"X-CSRF-Token": csrf}), 409)


def test_page_verdict_shows_thumbnails_of_the_frames_the_judge_looked_at_only_after_the_answer(client, media):
    import base64
    import io

    from PIL import Image

    qid = client.post("/v1/ab", json={"prompt": PROMPT + " (thumbs)", "a": "a.mp4", "b": "sub/b.mp4",
                                      "dimension": "VQ"}).json()["question"]
    page = client.get(f"/ab/{qid}")
    markup = re.sub(r"<script\b.*?</script>", "", page.text, flags=re.S)
    assert "<img" not in markup and "base64,/9j/" not in page.text  # no picture of any frame yet
    assert "img-src 'self' data:" in page.headers["content-security-policy"]
    is_error(client.get(f"/ab/{qid}/verdict"), 409, "not_answered")
    csrf = re.search(r'"csrf": "([0-9a-f]+)"', page.text).group(1)
    r = client.post(f"/ab/{qid}/answer", json={"answers": {"VQ": "a"}}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while (d := client.get(f"/ab/{qid}/verdict").json())["verdict"] is None and time.monotonic() < deadline:
        assert d["frames"] is None
        time.sleep(0.1)
    frames = d["frames"]
    images = [im for g in frames["groups"] for c in g["cells"] for im in c["images"]]
    assert frames["notes"] == [] and len(images) >= 2
    assert {im["side"] for im in images} == {"left", "right"}
    for im in images:
        assert im["src"].startswith("data:image/jpeg;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(im["src"].split(",", 1)[1])))
        assert thumb.format == "JPEG" and thumb.size == (frames["side"], frames["side"])
    assert "frames" not in client.get(f"/v1/ab/{qid}").json()  # the API stays lean: no images


@pytest.fixture(scope="module")
def token_server(media):
    s = Server(media["base"] / "token.sqlite", [media["root"]], token="s3cret-token").start()
    yield s
    s.stop()


def test_token_guards_the_api_and_the_pages(token_server, media):
    with httpx.Client(base_url=token_server.url, timeout=30) as c:
        assert c.get("/health").status_code == 200
        is_error(c.get("/v1/jobs/x"), 401, "unauthorized")
        is_error(c.get("/v1/jobs/x", headers={"Authorization": "Bearer wrong"}), 401)
        is_error(c.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4"}), 401)
        is_error(c.get("/media", params={"path": "a.mp4"}), 401)
        auth = {"Authorization": "Bearer s3cret-token"}
        qid = c.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4", "dimension": "VQ"},
                     headers=auth).json()["question"]
        assert c.get("/media", params={"path": "a.mp4"}, headers=auth).status_code == 200
        # a non-loopback Host is fine with a token (the token is the guard)
        assert c.get(f"/v1/ab/{qid}", headers={**auth, "Host": "judge.lan"}).status_code == 200
        login = c.get("/ab")
        assert login.status_code == 303 and login.headers["location"].startswith("/login")
        assert c.get("/login").status_code == 200
        bad = c.post("/login", data={"token": "nope", "next": "/ab"})
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        evil_next = c.post("/login", data={"token": "s3cret-token", "next": "//evil.example/"})
        assert evil_next.headers["location"] == "/ab"
        c.cookies.clear()
        ok = c.post("/login", data={"token": "s3cret-token", "next": f"/ab/{qid}"})
        assert ok.status_code == 303 and ok.headers["location"] == f"/ab/{qid}"
        cookie = ok.headers["set-cookie"]
        assert "dqa_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        page = c.get(f"/ab/{qid}")
        assert page.status_code == 200 and f"A/B question #{qid}" in page.text
        assert c.get("/media", params={"path": "a.mp4"}).status_code == 200  # the <video> gets the cookie
        is_error(c.get("/v1/jobs/x"), 401)  # the API still wants the Bearer token, not the cookie
        csrf = re.search(r'"csrf": "([0-9a-f]+)"', page.text).group(1)
        is_error(c.post(f"/ab/{qid}/answer", json={"answers": {"VQ": "b"}}), 403, "csrf")
        r = c.post(f"/ab/{qid}/answer", json={"answers": {"VQ": "b"}}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["answers"][0]["chosen"] == "b"
        c.cookies.clear()
        is_error(c.post(f"/ab/{qid}/answer", json={"answers": {"VQ": "b"}}, headers={"X-CSRF-Token": csrf}), 401)


def test_non_loopback_host_without_token_is_refused_at_start(media, tmp_path):
    s = Server(tmp_path / "x.sqlite", [media["root"]], "--host", "0.0.0.0")
    r = subprocess.run(s.command(), cwd=ROOT, env=s.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("dqa: error: --host 0.0.0.0") and "token" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    from dqa.serve.config import ServeConfig
    from vrthinker.errors import UsageError

    with pytest.raises(UsageError, match="not a directory"):
        ServeConfig(db=str(tmp_path / "y.sqlite"), roots=(str(tmp_path / "nope"),))
    with pytest.raises(UsageError, match="token"):
        ServeConfig(db=str(tmp_path / "y.sqlite"), roots=(str(tmp_path),), host="192.168.1.5")
    assert ServeConfig(db=str(tmp_path / "y.sqlite"), roots=(str(tmp_path),), host="::1").host == "::1"


def test_serve_and_mcp_share_the_start_checks_and_the_auth_line(tmp_path, capsys):
    """dqa serve and dqa mcp --transport http refuse a bad port (or a non-loopback host without a token) by the
    one rule, each in one error line, and name their callers' check by the one summary."""
    from dqa.cli import main
    from dqa.serve.config import auth_summary, check_listen
    from vrthinker.errors import UsageError

    for port in (0, 65536, -1):
        with pytest.raises(UsageError, match=f"^--port {port}: not a port number$"):
            check_listen("127.0.0.1", port, None)
    with pytest.raises(UsageError, match="^--host 0.0.0.0 is reachable"):
        check_listen("0.0.0.0", 70000, None)  # the host first, then the port
    check_listen("0.0.0.0", 1, "t")
    check_listen("127.0.0.1", 65535, None)
    assert auth_summary(None, {}) == "" and auth_summary("t", {}) == "token"
    assert auth_summary("t", {"a": "h", "b": "h"}) == "token, 2 users" and auth_summary(None, {"a": "h"}) == "1 users"
    for argv in (["serve"], ["mcp", "--transport", "http"]):
        assert main([*argv, "--media-root", str(tmp_path), "--db", str(tmp_path / "s.sqlite"), "--port", "70000"]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == ["dqa: error: --port 70000: not a port number"], (argv, err)


def test_a_blank_token_is_no_token_for_serve_and_mcp(tmp_path, capsys, monkeypatch):
    """An empty or whitespace-only --token or $DQA_TOKEN is no token, for dqa serve and dqa mcp alike (one
    helper): never leave to bind beyond 127.0.0.1, never a token to log in with. The host check comes before
    the server's imports (made to fail here), so the refusal is that check's."""
    import sys

    from dqa.cli import main
    from dqa.serve.auth import Auth, given_token, token_or_none
    from dqa.serve.config import auth_summary, check_listen
    from vrthinker.errors import UsageError

    for blank in ("", " ", "\t \n"):
        assert token_or_none(blank) is None and given_token(blank, {"DQA_TOKEN": "env-token"}) is None
        assert given_token(None, {"DQA_TOKEN": blank}) is None
        with pytest.raises(UsageError, match="^--host 0.0.0.0 is reachable"):
            check_listen("0.0.0.0", 8700, blank)
        auth = Auth(blank)
        assert not auth.required and auth.user_of(blank) is None and auth_summary(given_token(blank), {}) == ""
    assert given_token(None, {"DQA_TOKEN": " t "}) == " t " and given_token("t", {"DQA_TOKEN": "u"}) == "t"
    assert given_token(None, {}) is None
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of either server fails: nothing may get that far
    monkeypatch.setitem(sys.modules, "anyio", None)
    base = ["--media-root", str(tmp_path), "--db", str(tmp_path / "s.sqlite"), "--host", "0.0.0.0",
            "--backend", "metrics"]
    for argv in (["serve"], ["mcp", "--transport", "http"]):
        for flag, env in ((["--token", "   "], None), ([], " \t "), ([], "")):
            if env is None:
                monkeypatch.delenv("DQA_TOKEN", raising=False)
            else:
                monkeypatch.setenv("DQA_TOKEN", env)
            assert main([*argv, *base, *flag]) == 2, (argv, flag, env)
            err = capsys.readouterr().err
            assert err.startswith("dqa: error: --host 0.0.0.0 is reachable from other machines"), (argv, flag, env, err)


def test_kill_9_mid_job_then_a_restart_finishes_it(media, tmp_path):
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path / "clips"
    root.mkdir()
    clips = [str(write_video(root / f"c{i}.mp4", render_scene("shapes", 160, 96, 48, seed=10 + i), fps=24))
             for i in range(4)]
    pairs = [(clips[0], clips[1]), (clips[2], clips[3]), (clips[1], clips[2])]
    db = tmp_path / "kill.sqlite"
    s = Server(db, [root]).start()
    try:
        with s.client() as c:
            jobs = [c.post("/v1/compare", json={"video1": v1, "video2": v2, "prompt": f"kill {k}"}).json()["job"]
                    for k, (v1, v2) in enumerate(pairs)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if c.get(f"/v1/jobs/{jobs[1]}").json()["state"] == "running":
                    break
                time.sleep(0.02)
        s.kill9()
    finally:
        s.stop()
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    states = dict(ro.execute("SELECT id, state FROM serve_jobs").fetchall())
    ro.close()
    assert states[jobs[1]] == "running" and states[jobs[2]] == "queued", states
    s2 = Server(db, [root]).start()
    try:
        with s2.client() as c:
            done = [wait_job(c, j) for j in jobs]
        assert [d["state"] for d in done] == ["done"] * 3
        assert [tuple(d["result"]["videos"]) for d in done] == pairs
        assert [d["result"]["prompt"] for d in done] == ["kill 0", "kill 1", "kill 2"]
        assert "resuming 1 job" in s2.stderr()
    finally:
        s2.stop()


# ----------------------------------------------------------------------------------------------------------
# the first page a person opens: GET /, the tab icon, --help


def test_landing_page_links_the_ab_page_the_docs_and_health(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    links = re.findall(r'<a href="([^"]+)">', r.text)
    assert links == ["/ab", "/docs", "/health"]
    for href in links:  # each link leads somewhere real on this server
        assert client.get(href, follow_redirects=True).status_code == 200
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert '<link rel="icon" href="/favicon.ico"' in r.text


EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//""",
                      re.I)


def test_no_page_loads_anything_from_another_site(client, media, tmp_path):
    """Every GET route of the app (listed from the app itself, so a new page is covered too) that answers HTML
    names no script, style, image or frame from another site, and /docs is not FastAPI's Swagger UI (CDN)."""
    from dqa.serve.app import create_app
    from dqa.serve.config import ServeConfig

    app = create_app(ServeConfig(db=str(tmp_path / "routes.sqlite"), roots=(str(media["root"]),),
                                 judge={"backend": "metrics"}))
    qid = client.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4", "dimension": "OA"}).json()[
        "question"]
    job = client.post("/v1/compare", json={"video1": "a.mp4", "video2": "sub/b.mp4", "prompt": PROMPT}).json()["job"]
    params = {"qid": str(qid), "job_id": str(job)}
    pages = []
    for route in app.routes:
        if "GET" not in (getattr(route, "methods", None) or ()):
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], route.path)
        r = client.get(path, params={"path": "a.mp4"} if path == "/media" else None, follow_redirects=True)
        if "text/html" in r.headers.get("content-type", ""):
            pages.append(path)
            assert not EXTERNAL.search(r.text), (path, EXTERNAL.search(r.text).group(0))
            assert "swagger" not in r.text.lower() and "redoc" not in r.text.lower(), path
            assert "default-src 'none'" in r.headers["content-security-policy"], path
    assert {"/", "/docs", "/ab", f"/ab/{qid}", "/login"} <= set(pages), pages
    docs = client.get("/docs").text
    assert "/v1/compare" in docs and "/v1/ab/{qid}/answer" in docs and 'href="/openapi.json"' in docs
    assert client.get("/redoc").status_code == 404


def test_landing_page_with_a_token_leaks_nothing_and_the_ab_link_asks_to_log_in(token_server, media):
    with httpx.Client(base_url=token_server.url, timeout=30) as c:
        auth = {"Authorization": "Bearer s3cret-token"}
        c.post("/v1/ab", json={"prompt": "a secret prompt", "a": "a.mp4", "b": "sub/b.mp4"}, headers=auth)
        r = c.get("/")
        assert r.status_code == 200 and "set-cookie" not in r.headers
        for secret in ("s3cret-token", "a secret prompt", str(media["root"]), "token.sqlite", "a.mp4"):
            assert secret not in r.text
        assert c.get("/ab").status_code == 303  # the page it links still needs the token
        assert c.get("/favicon.ico").status_code == 200


def test_favicon_is_a_small_svg(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert len(r.content) < 1024
    import xml.etree.ElementTree as ET

    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 32 32"


def test_serve_help_shows_the_ports_default():
    out = subprocess.run([sys.executable, "-m", "dqa.cli", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    help_text = " ".join(out.stdout.split())
    assert re.search(r"--port PORT port to listen on \(default 8700\)", help_text), help_text
