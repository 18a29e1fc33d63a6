"""Who answered: with a token, an A/B answer is recorded as the user the token or the session says; per-user
tokens from --users; sessions end on the server; /docs and /openapi.json need the token. Real server processes."""
from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import time

import pytest

httpx = pytest.importorskip("httpx", reason="dqa serve's tests need the serve extra (pip install '.[serve]')")
pytest.importorskip("fastapi", reason="dqa serve needs the serve extra (pip install '.[serve]')")

from serve_helpers import ROOT, Server  # noqa: E402

PROMPT = "two shapes cross a field"
TOKENS = {"ann": "ann-token-7f3a9c", "bob": "bob-token-41d2e8"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from vrthinker_eval.synth import render_scene, write_video

    base = tmp_path_factory.mktemp("users")
    root = base / "media"
    root.mkdir()
    write_video(root / "a.mp4", render_scene("shapes", 128, 80, 16, seed=3), fps=8)
    write_video(root / "b.mp4", render_scene("pan", 128, 80, 16, seed=4), fps=8)
    users = base / "users.txt"
    users.write_text("# name  sha256 of the token\n" + "".join(
        f"{n}  {hashlib.sha256(t.encode()).hexdigest()}  # {n}'s\n" for n, t in TOKENS.items()) + "\n")
    return {"base": base, "root": root, "users": users}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'"csrf": "([0-9a-f]+)"', page.text).group(1)


def test_the_token_or_session_says_who_answered(media):
    s = Server(media["base"] / "u.sqlite", [media["root"]], "--users", str(media["users"]),
               token="shared-token").start()
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            ask = {"prompt": PROMPT, "a": "a.mp4", "b": "b.mp4"}
            assert c.post("/v1/ab", json=ask, headers=bearer("nobody")).status_code == 401
            qid = c.post("/v1/ab", json=ask, headers=bearer(TOKENS["ann"])).json()["question"]
            ann = c.post(f"/v1/ab/{qid}/answer", json={"chosen": "a"}, headers=bearer(TOKENS["ann"]))
            assert ann.status_code == 201 and ann.json()["user"] == "ann", ann.text
            forged = c.post(f"/v1/ab/{qid}/answer", json={"chosen": "b", "dimension": "VQ", "user": "ann"},
                            headers=bearer(TOKENS["bob"]))
            assert forged.status_code == 403 and forged.json()["error"]["code"] == "wrong_user"
            bob = c.post(f"/v1/ab/{qid}/answer", json={"chosen": "b", "user": "bob"}, headers=bearer(TOKENS["bob"]))
            assert bob.status_code == 201 and bob.json()["user"] == "bob"
            admin = c.post(f"/v1/ab/{qid}/answer", json={"chosen": "a"}, headers=bearer("shared-token"))
            assert admin.json()["user"] == "admin"
            # the page: bob logs in with his own token; the page says so and answers are his
            qid2 = c.post("/v1/ab", json={**ask, "dimension": "MQ"}, headers=bearer(TOKENS["ann"])).json()["question"]
            assert c.post("/login", data={"token": "nobody", "next": "/ab"}).status_code == 401
            assert c.post("/login", data={"token": TOKENS["bob"], "next": f"/ab/{qid2}"}).status_code == 303
            page = c.get(f"/ab/{qid2}")
            assert 'signed in as <strong id="signed-in">bob</strong>' in page.text and 'id="user"' not in page.text
            post = {"answers": {"MQ": "b"}}
            other = c.post(f"/ab/{qid2}/answer", json={**post, "user": "mallory"},
                           headers={"X-CSRF-Token": csrf_of(page)})
            assert other.status_code == 403 and other.json()["error"]["code"] == "wrong_user"
            mine = c.post(f"/ab/{qid2}/answer", json=post, headers={"X-CSRF-Token": csrf_of(page)})
            assert mine.status_code == 200 and mine.json()["answers"][0]["user"] == "bob", mine.text
            # ann's page: the question bob answered is still open to her, without his choice shown
            with httpx.Client(base_url=s.url, timeout=30) as ann_page:
                ann_page.post("/login", data={"token": TOKENS["ann"], "next": "/ab"})
                nxt = ann_page.get("/ab")
                assert f"A/B question #{qid2}" in nxt.text and '"answered": false' in nxt.text
                assert " checked" not in nxt.text
                hers = ann_page.post(f"/ab/{qid2}/answer", json={"answers": {"MQ": "a"}},
                                     headers={"X-CSRF-Token": csrf_of(nxt)})
                assert hers.status_code == 200 and [x["user"] for x in hers.json()["answers"]] == ["ann"], hers.text
                assert [x["user"] for x in ann_page.get(f"/ab/{qid2}/verdict").json()["answers"]] == ["ann"]
                assert "No open A/B question" in ann_page.get("/ab").text
            # the docs need the token (Bearer or the page's session)
            assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200  # bob's session
            c.cookies.clear()
            docs = c.get("/docs")
            assert docs.status_code == 303 and docs.headers["location"] == "/login?next=/docs"
            assert c.get("/openapi.json").status_code == 401
            assert c.get("/redoc").status_code == 404  # no ReDoc (its script comes from a CDN): /docs is ours
            assert c.get("/openapi.json", headers=bearer(TOKENS["ann"])).status_code == 200
            assert c.get("/docs", headers=bearer("shared-token")).status_code == 200
            assert c.get("/health").status_code == 200  # liveness stays open
    finally:
        s.stop()
    db = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    answers = sorted(db.execute("SELECT question, dimension, user, chosen FROM ab_answers").fetchall())
    selections = sorted(db.execute("SELECT dimension, user, chosen FROM selections").fetchall())
    db.close()
    assert answers == sorted([(qid, "OA", "ann", "a"), (qid, "OA", "bob", "b"), (qid, "OA", "admin", "a"),
                              (qid2, "MQ", "bob", "b"), (qid2, "MQ", "ann", "a")])
    assert selections == sorted([("OA", "ann", "a"), ("OA", "bob", "b"), ("OA", "admin", "a"), ("MQ", "bob", "b"),
                                 ("MQ", "ann", "a")])


def test_sessions_end_on_the_server_whatever_the_browser_keeps(media):
    s = Server(media["base"] / "e.sqlite", [media["root"]], "--session-hours", "0.002", token="tok-e").start()
    try:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            qid = c.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "b.mp4", "dimension": "OA"},
                         headers=bearer("tok-e")).json()["question"]
            login = c.post("/login", data={"token": "tok-e", "next": f"/ab/{qid}"})
            assert "max-age=7" in login.headers["set-cookie"].lower()
            cookie = login.cookies["dqa_session"]
            c.cookies.clear()
            sent = {"Cookie": f"dqa_session={cookie}"}  # by hand: a client that ignores Max-Age
            page = c.get(f"/ab/{qid}", headers=sent)
            assert page.status_code == 200
            user, expires, nonce, mac = cookie.split(".")
            later = f"{user}.{int(expires) + 3600}.{nonce}.{mac}"  # a cookie made to last longer is not ours
            assert c.get(f"/ab/{qid}", headers={"Cookie": f"dqa_session={later}"}).status_code == 303
            time.sleep(max(0.0, int(expires) - time.time()) + 0.5)
            again = c.get(f"/ab/{qid}", headers=sent)
            assert again.status_code == 303 and again.headers["location"].startswith("/login")
            late = c.post(f"/ab/{qid}/answer", json={"answers": {"OA": "a"}},
                          headers={**sent, "X-CSRF-Token": csrf_of(page)})
            assert late.status_code == 401
            assert c.get("/media", params={"path": "a.mp4"}, headers=sent).status_code == 401
            assert c.get("/docs", headers=sent).status_code == 303
    finally:
        s.stop()


def test_a_bad_users_file_is_one_clear_line(media, tmp_path):
    from dqa.serve.config import ServeConfig
    from dqa.serve.users import parse_users
    from vrthinker.errors import UsageError

    bad = tmp_path / "bad.txt"
    bad.write_text("ann " + "0" * 64 + "\nbob not-a-hash\n")
    s = Server(tmp_path / "x.sqlite", [media["root"]], "--users", str(bad))
    r = subprocess.run(s.command(), cwd=ROOT, env=s.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith(f"dqa: error: --users {bad} line 2: expected 'NAME SHA256'")
    assert len(r.stderr.strip().splitlines()) == 1
    h = "a" * 64
    with pytest.raises(UsageError, match="line 2: ann is listed twice"):
        parse_users(f"ann {h}\nann {'b' * 64}\n")
    with pytest.raises(UsageError, match="same token hash"):
        parse_users(f"ann {h}\nbob {h}\n")
    with pytest.raises(UsageError, match="'admin' is the shared"):
        parse_users(f"admin {h}\n")
    with pytest.raises(UsageError, match="no users"):
        parse_users("# nobody\n")
    assert parse_users(f"ann {h.upper()}  # comment\n") == {"ann": h}
    # a users file is a guard of its own: binding beyond loopback is allowed with it
    assert ServeConfig(db=str(tmp_path / "y.sqlite"), roots=(str(tmp_path),), host="192.168.1.5",
                       users={"ann": h}).host == "192.168.1.5"
