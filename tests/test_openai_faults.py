"""The server client under rate limits, hangs, dead hosts and a memory budget (a fake server: error paths only).

429 / 503 are retried after the server's Retry-After, moving on to another server; a turn has one deadline over
all its tries; a host that never accepts a connection costs --connect-timeout, not minutes; the client's caches
share one byte budget and hold no image alive.
"""
from __future__ import annotations

import email.utils
import gc
import json
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from fake_openai import Blackhole, reply_json, synthetic_pairs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def blackhole():
    b = Blackhole()
    yield b
    b.close()


def _judge(urls, **kw):
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.judge import Judge

    b = OpenAIBackend(list(urls), backoff_s=0.01, **kw)
    return Judge(b, b.resolve_profile("card")[0], max_turns=1, max_new_tokens=16)


ANSWER = reply_json("<Answer>TA=1, VQ=2, MQ=1, OA=1</Answer>")


# ----------------------------------------------------------------------------------------------------------
# 5: 429 and 503 are retried after Retry-After


def test_retry_after_is_read_as_seconds_or_a_date():
    from vrthinker.backends.openai import retry_after_s

    now = time.time()
    assert retry_after_s("3") == 3.0 and retry_after_s(" 1.5 ") == 1.5 and retry_after_s("0") == 0.0
    assert retry_after_s(email.utils.formatdate(now + 10, usegmt=True), now=now) == pytest.approx(10, abs=1)
    assert retry_after_s(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0  # a date passed: now
    assert retry_after_s("-4") == 0.0
    for unreadable in (None, "", "soon", "nan", "Mon, 99 Foo 2026"):
        assert retry_after_s(unreadable) is None


def test_429_and_503_are_retried_after_their_retry_after(fake, clips):
    f = fake([(429, '{"error": "rate limited"}', {"Retry-After": "1"}), (503, "{}", {"Retry-After": "1"}),
              (200, ANSWER)])
    v = _judge([f.url]).compare(clips["a"], clips["b"], "p", orders="one")
    assert v.labels == {"TA": 1, "VQ": 2, "MQ": 1, "OA": 1} and len(f.calls) == 3
    gaps = np.diff(f.times)
    assert (gaps >= 0.95).all(), gaps  # backoff is 0.01 s: the wait is the server's Retry-After


def test_a_busy_server_is_left_to_another_for_its_retry_after(fake, clips):
    busy = fake([(429, "{}", {"Retry-After": "30"})])
    well = fake([])
    t0 = time.monotonic()
    v = _judge([busy.url, well.url]).compare(clips["a"], clips["b"], "p", orders="both")
    assert v.complete and time.monotonic() - t0 < 10  # not 30 s: the other server takes the work at once
    assert len(busy.calls) == 1 and len(well.calls) == 2  # and the busy one is sent nothing while it asked so


def test_a_retry_after_past_the_turn_deadline_fails_at_once(fake, clips):
    f = fake([(503, "{}", {"Retry-After": "120"})] * 3)
    t0 = time.monotonic()
    v = _judge([f.url], turn_deadline=5).compare(clips["a"], clips["b"], "p", orders="one")
    assert time.monotonic() - t0 < 4 and len(f.calls) == 1
    assert v.reason == "server_error" and "Retry-After" in v.detail and "deadline 5s" in v.detail


def test_other_4xx_still_fail_at_once(fake, clips):
    f = fake([(422, '{"detail": "no"}', {"Retry-After": "1"})])
    v = _judge([f.url]).compare(clips["a"], clips["b"], "p", orders="one")
    assert v.reason == "server_error" and "HTTP 422" in v.detail and len(f.calls) == 1


# ----------------------------------------------------------------------------------------------------------
# 6: one deadline per turn, a connect timeout


def test_a_hung_server_costs_one_turn_deadline_not_every_retry(fake, clips):
    """timeout 1 s a request, 8 retries: 9+ s before; the turn's 2.5 s deadline ends it, retries included."""
    f = fake(["hang"] * 20, hang_s=30)
    t0 = time.monotonic()
    v = _judge([f.url], timeout=1.0, retries=8, turn_deadline=2.5).compare(clips["a"], clips["b"], "p",
                                                                            orders="one")
    took = time.monotonic() - t0
    assert v.reason == "server_error" and "deadline 2.5s" in v.detail and "Timeout" in v.detail
    assert took < 4.5 and 2 <= len(f.calls) <= 3, (took, len(f.calls))


def test_a_trickling_reply_is_cut_at_the_deadline(clips):
    """A server that sends a byte a second never trips a read timeout; the turn's deadline still holds."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    def handle(c):
        data = b""
        while b"\r\n\r\n" not in data:
            data += c.recv(65536)
        if data.startswith(b"GET"):
            body = json.dumps({"data": [{"id": "m", "owned_by": "vllm"}]}).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n"
                      % len(body) + body)
            return c.close()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: application/json\r\n\r\n")
        while not stop.is_set():
            try:
                c.sendall(b" ")
            except OSError:
                return
            time.sleep(0.3)

    threading.Thread(target=serve, daemon=True).start()
    try:
        t0 = time.monotonic()
        v = _judge([f"http://127.0.0.1:{srv.getsockname()[1]}/v1"], timeout=2.0, retries=0,
                   turn_deadline=2.0).compare(clips["a"], clips["b"], "p", orders="one")
        assert v.reason == "server_error" and "deadline" in v.detail and time.monotonic() - t0 < 5
    finally:
        stop.set()
        srv.close()


def test_a_dead_host_is_skipped_in_seconds(fake, blackhole, clips):
    """A host that never answers the connection (first in the list, so it is tried first) costs the connect
    timeout once, not the request timeout; the well server does the work."""
    well = fake([])
    t0 = time.monotonic()
    v = _judge([blackhole.url, well.url], connect_timeout=0.5, timeout=60).compare(clips["a"], clips["b"], "p",
                                                                                   orders="both")
    assert v.complete and len(well.calls) == 2
    assert time.monotonic() - t0 < 5  # GET /models and the first POST each wait 0.5 s for the dead host


def test_the_flags_reach_the_client(fake, blackhole, clips, tmp_path):
    """`judge batch` with --connect-timeout / --turn-deadline / --client-cache-mb: shown in --help, checked,
    and in force (a dead host first in the list is skipped quickly)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    helptext = subprocess.run([sys.executable, "-m", "vrthinker.cli", "batch", "--help"], env=env,
                              capture_output=True, text=True, timeout=120).stdout
    for flag in ("--turn-deadline", "--connect-timeout", "--client-cache-mb"):
        assert flag in helptext
    well = fake([])
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"p{i}", "video1": str(clips["a"]), "video2": str(clips["b"]),
                                         "prompt": f"scene {i}"}) + "\n" for i in range(3)))
    base = [sys.executable, "-m", "vrthinker.cli", "batch", str(pairs), "--db", str(tmp_path / "j.sqlite"),
            "--backend", "openai", "--server", blackhole.url, "--server", well.url, "--max-turns", "1",
            "--max-new-tokens", "8", "--protocol", "card"]
    t0 = time.monotonic()
    r = subprocess.run(base + ["--connect-timeout", "0.5", "--turn-deadline", "30", "--client-cache-mb", "16"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "judged=3" in r.stdout and len(well.calls) == 6
    assert time.monotonic() - t0 < 60
    for bad in (["--turn-deadline", "0"], ["--connect-timeout", "-1"], ["--client-cache-mb", "-5"]):
        r = subprocess.run(base + bad, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and bad[0] in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "vrthinker.cli", str(clips["a"]), str(clips["b"]),
                        "--prompt", "p", "--backend", "metrics", "--turn-deadline", "5"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--turn-deadline" in r.stderr and "does not apply" in r.stderr


# ----------------------------------------------------------------------------------------------------------
# 7: one byte budget for every cache, no image held


def _noisy(n: int, seed: int, side: int = 448) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB") for _ in range(n)]


def test_the_budget_bounds_every_cache_by_bytes():
    from vrthinker.backends.openai import Budget, openai_messages, png_data_url, request_json
    from vrthinker.protocol import Clip

    budget = Budget(3 * 2**20)
    images = _noisy(12, 0)  # each ~790 KB of base64 (noise does not compress)
    clip = Clip(tuple(_noisy(4, 1)), 2.0)
    messages = [{"role": "user", "content": [{"type": "image"}] * 12 + [{"type": "video"}, {"type": "text",
                                                                                         "text": "which?"}]}]
    for _ in range(3):
        api = openai_messages(messages, images + [clip], video=True, cache=budget)
        assert budget.nbytes <= budget.max_bytes and budget.peak_bytes <= budget.max_bytes
        assert request_json({"messages": api}) == json.dumps({"messages": api}).encode()
    assert 0 < len(budget) and budget.nbytes > 2**20  # it is used, within its bound
    # the same pixels in another object: one encoding while cached; a budget of 0 keeps nothing and still works
    big = Budget(64 * 2**20)
    twin = images[0].copy()
    assert png_data_url(images[0], big) is png_data_url(twin, big)
    none = Budget(0)
    assert png_data_url(images[1], none) == png_data_url(images[1], big) and len(none) == 0 and none.nbytes == 0


def test_the_client_holds_no_image_alive():
    """The per-object cache knows an image by weak reference: once its owner drops it, it is freed."""
    from vrthinker.backends.openai import Budget, png_data_url
    from vrthinker.protocol import Clip

    budget = Budget(64 * 2**20)
    im, = _noisy(1, 2)
    clip = Clip(tuple(_noisy(2, 3)), 2.0)
    refs = [weakref.ref(im), weakref.ref(clip), weakref.ref(clip.frames[0])]
    url = png_data_url(im, budget)
    from vrthinker.backends.openai import video_data_url

    video_data_url(clip, budget)
    assert png_data_url(im, budget) is url
    del im, clip
    gc.collect()
    assert all(r() is None for r in refs)


def test_a_small_budget_gives_the_same_judgments(fake, tmp_path):
    """The budget changes memory, not answers: 1 MB (nearly nothing cached) and the default judge alike."""
    from vrthinker.batch import judged_items, run_batch
    from vrthinker.store import Store

    rows = synthetic_pairs(tmp_path, 3, seed=30)

    def answer(body):
        import hashlib

        urls = [c["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
                for c in m["content"] if c["type"] == "image_url"]
        w = 1 if hashlib.sha256(urls[0].encode()).digest() < hashlib.sha256(urls[-1].encode()).digest() else 2
        return f"<Answer>TA={w}, VQ={w}, MQ={w}, OA={w}</Answer>"

    got = {}
    for mb in (1, None):
        f = fake([], answer=answer)
        judge = _judge([f.url], cache_mb=mb)
        with Store(tmp_path / f"{mb}.sqlite") as store:
            s = run_batch(judge, rows, store, job="j", concurrency=4)
            assert s.judged == 3
            got[mb] = {it.item.item_id: (dict(it.forward.labels), dict(it.reverse.labels))
                       for it in judged_items(store, "j")}
        assert judge.backend.media.peak_bytes <= judge.backend.media.max_bytes
    assert got[1] == got[None] and len(got[1]) == 3
