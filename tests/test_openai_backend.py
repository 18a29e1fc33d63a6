"""--backend openai against a real `transformers serve` of the tiny Qwen2.5-VL, and a fake server for faults.

The real server (transformers' own OpenAI-compatible server, `pip install -e .[serving]`) is started on a free
loopback port, waited for on /health and stopped by its PID. The fake one (http.server in a thread) only
adds the error paths a real server will not produce on demand: 5xx, malformed JSON, a reply too slow.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_openai import reply_json as _reply
from fake_openai import synthetic_pairs
from serve_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


class Served:
    """One `transformers serve` process of a model dir on 127.0.0.1."""

    def __init__(self, model: Path, port: int | None = None, log: Path | None = None):
        self.model, self.port = model, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log or Path(f"/tmp/transformers-serve-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 240) -> "Served":
        import httpx

        exe = shutil.which("transformers")
        if exe is None:
            pytest.fail("`transformers serve` is missing: pip install -e '.[serving]'")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen([exe, "serve", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                                      "--device", "cpu"], stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     env=env)
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait_s:
            if self.proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"transformers serve not healthy after {wait_s}s: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self.proc = None


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    s = Served(tiny_model_dir).start()
    yield s
    s.stop()


def _judge(server_urls, **kw):
    from vrthinker.judge import Judge

    return Judge.from_pretrained(None, backend="openai", server=server_urls, max_turns=1, max_new_tokens=2, **kw)


def test_turn1_prompt_tokens_equal_the_hf_backends(server, hf_backend, clips):
    from vrthinker.judge import Judge

    served = _judge([server.url], protocol="card")
    assert served.backend.kind == "transformers" and served.profile.name == "card"
    v = served.compare(clips["a"], clips["b"], "a red fox", orders="both")
    local = Judge(hf_backend, "card", max_turns=1, max_new_tokens=2).compare(clips["a"], clips["b"], "a red fox")
    assert v.reason == "token_limit"  # 2 new tokens: finish_reason "length"
    for order in v.per_order:
        t = order.turns[0]
        assert t.prompt_tokens == t.server_prompt_tokens == local.turns[0].prefill_tokens > 1000
        assert "warnings" not in order.extra
        assert t.stopped == "length" and t.new_tokens == 2


def test_training_profile_refused_where_the_server_would_resample(server):
    from vrthinker.errors import UsageError

    with pytest.raises(UsageError, match="video item.*vLLM"):
        _judge([server.url], protocol="training")


def test_store_key_names_the_served_model(server):
    from vrthinker.batch import identify

    ident = identify(_judge([server.url], protocol="card"))  # a tiny served model: its profile is declared
    assert ident.backend == "openai" and ident.model_id == str(server.model)
    assert ident.config["model_id"] == str(server.model) and ident.config["server_kind"] == "transformers"
    assert "url" not in json.dumps(ident.config)  # any server of the model gives the same judgments


def _pairs(tmp_path: Path, clips, n: int) -> Path:
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps({"id": f"p{i}", "video1": str(clips["a"]), "video2": str(clips["b"]),
                                     "prompt": f"scene number {i}"}) + "\n" for i in range(n)))
    return p


def _batch(pairs: Path, db: Path, *servers: str, concurrency: int = 4) -> list[str]:
    return [sys.executable, "-m", "vrthinker.cli", "batch", str(pairs), "--db", str(db), "--backend", "openai",
            *[a for s in servers for a in ("--server", s)], "--concurrency", str(concurrency),
            "--max-turns", "1", "--max-new-tokens", "2", "--protocol", "card"]


def _counts(db: Path) -> tuple[int, int, int]:
    """(done items, judgments, distinct judgment keys)."""
    if not db.exists():
        return 0, 0, 0
    with sqlite3.connect(db) as c:
        try:
            done = c.execute("select count(*) from items where status='done'").fetchone()[0]
            n, distinct = c.execute("select count(*), count(distinct key) from judgments").fetchone()
        except sqlite3.OperationalError:
            return 0, 0, 0
    return done, n, distinct


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))


def test_batch_killed_mid_run_then_resumed(server, clips, tmp_path):
    pairs, db = _pairs(tmp_path, clips, 8), tmp_path / "j.sqlite"
    proc = subprocess.Popen(_batch(pairs, db, server.url), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while _counts(db)[0] < 2 and time.monotonic() - t0 < 300 and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done, n, distinct = _counts(db)
    assert 0 < done < 8 and n == distinct == 2 * done  # nothing half-written: whole items only
    out = subprocess.run(_batch(pairs, db, server.url), env=_env(), capture_output=True, text=True, timeout=600)
    # exit 3: two new tokens leave every verdict incomplete (token_limit); no row failed
    assert out.returncode == 3 and "failed=0" in out.stdout, out.stdout + out.stderr
    assert f"reused={done}" in out.stdout and f"judged={8 - done}" in out.stdout
    assert _counts(db) == (8, 16, 16)


def test_two_servers_one_dead(server, clips, tmp_path):
    pairs, db = _pairs(tmp_path, clips, 4), tmp_path / "j.sqlite"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    out = subprocess.run(_batch(pairs, db, dead, server.url), env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 3 and "failed=0" in out.stdout, out.stdout + out.stderr  # 3: token_limit verdicts
    assert _counts(db) == (4, 8, 8)


def test_a_host_that_never_answers_and_a_small_budget(server, clips, tmp_path):
    """Against the real server: a blackholed host first in the list costs --connect-timeout, and a 1 MB client
    budget (nearly nothing cached) still judges every pair; the counts match a run without either."""
    from fake_openai import Blackhole

    hole = Blackhole()
    try:
        pairs = _pairs(tmp_path, clips, 3)
        t0 = time.monotonic()
        out = subprocess.run(_batch(pairs, tmp_path / "j.sqlite", hole.url, server.url)
                             + ["--connect-timeout", "1", "--turn-deadline", "300", "--client-cache-mb", "1"],
                             env=_env(), capture_output=True, text=True, timeout=600)
        took = time.monotonic() - t0
        # exit 3: two new tokens leave every verdict incomplete (token_limit); no row failed
        assert out.returncode in (0, 3) and "judged=3 " in out.stdout and "failed=0" in out.stdout, out.stdout
        assert _counts(tmp_path / "j.sqlite") == (3, 6, 6)
        t0 = time.monotonic()
        ref = subprocess.run(_batch(pairs, tmp_path / "ref.sqlite", server.url), env=_env(), capture_output=True,
                             text=True, timeout=600)
        assert ref.returncode == out.returncode and _counts(tmp_path / "ref.sqlite") == (3, 6, 6)
        assert took < time.monotonic() - t0 + 20  # the dead host cost seconds, not a 10 s connect per try
    finally:
        hole.close()


def test_server_killed_mid_batch_and_restarted(tiny_model_dir, clips, tmp_path):
    own = Served(tiny_model_dir, log=tmp_path / "serve.log").start()
    pairs, db = _pairs(tmp_path, clips, 6), tmp_path / "j.sqlite"
    proc = subprocess.Popen(_batch(pairs, db, own.url, concurrency=2), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        while _counts(db)[0] < 1 and time.monotonic() - t0 < 300 and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
        own.stop(signal.SIGKILL)
        own.start()
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 3 and "failed=0" in out, out  # 3: token_limit verdicts, no row failed
        assert _counts(db) == (6, 12, 12)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        own.stop()


# ----------------------------------------------------------------------------------------------------------
# a fake server: the error paths


def _fake_judge(url, **kw):
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.judge import Judge

    b = OpenAIBackend([url], backoff_s=0.01, **kw)
    return Judge(b, b.resolve_profile("card")[0], max_turns=1, max_new_tokens=16)


def test_fake_5xx_and_malformed_json_are_retried(fake, clips):
    f = fake([(503, "{}"), (200, "not json {"), (200, _reply("<Answer>TA=1, VQ=2, MQ=0, OA=1</Answer>"))])
    v = _fake_judge(f.url).compare(clips["a"], clips["b"], "p")
    assert v.labels == {"TA": 1, "VQ": 2, "MQ": 0, "OA": 1} and len(f.calls) == 3
    body = f.calls[0]
    assert body["temperature"] == 0 and body["max_tokens"] == 16
    assert "repetition_penalty" not in body  # the checkpoint's settings unknown here: the server's own apply
    images = [c for m in body["messages"] if isinstance(m["content"], list) for c in m["content"]
              if c["type"] == "image_url"]
    assert len(images) == 8 and all(c["image_url"]["url"].startswith("data:image/png;base64,") for c in images)
    assert v.turns[0].server_prompt_tokens == 100 and v.turns[0].prompt_tokens is None  # no processor here


def test_fake_failure_after_retries_is_server_error_and_the_4xx_is_not_retried(fake, clips):
    f = fake([(500, "{}")] * 10)
    v = _fake_judge(f.url, retries=2).compare(clips["a"], clips["b"], "p")
    assert v.reason == "server_error" and "HTTP 500" in v.detail and len(f.calls) == 3
    g = fake([(422, '{"detail": "no"}')])
    v = _fake_judge(g.url).compare(clips["a"], clips["b"], "p")
    assert v.reason == "server_error" and "HTTP 422" in v.detail and len(g.calls) == 1


def test_fake_timeout_and_length(fake, clips):
    f = fake(["slow", "slow"])
    v = _fake_judge(f.url, retries=1, timeout=0.5).compare(clips["a"], clips["b"], "p")
    assert v.reason == "server_error" and "Timeout" in v.detail
    g = fake([(200, _reply("cut", finish="length"))])
    assert _fake_judge(g.url).compare(clips["a"], clips["b"], "p").reason == "token_limit"


def test_fake_prompt_count_mismatch_is_a_warning(fake, clips, fixtures_dir):
    f = fake([(200, _reply("<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>", prompt_tokens=5))])
    v = _fake_judge(f.url, processor_source=str(fixtures_dir)).compare(clips["a"], clips["b"], "p")
    assert v.turns[0].prompt_tokens > 1000 and v.turns[0].server_prompt_tokens == 5
    assert "server counted 5" in v.extra["warnings"][0]
    assert f.calls[0]["repetition_penalty"] == 1.05  # the checkpoint's generation_config, sent to vLLM


def test_fake_server_error_row_is_bad_then_judged_on_rerun(fake, clips, tmp_path):
    from vrthinker.batch import read_pairs, run_batch
    from vrthinker.store import Store

    f = fake([(500, "{}")] * 4)
    judge = _fake_judge(f.url, retries=0)
    rows = read_pairs(_pairs(tmp_path, clips, 2))
    with Store(tmp_path / "j.sqlite") as store:
        s = run_batch(judge, rows, store, job="j", concurrency=4)
        assert s.bad == 2 and {b.reason for b in s.bad_rows} == {"server_error"}
        s = run_batch(judge, rows, store, job="j", concurrency=4)
        assert s.bad == 0 and s.judged == 2 and s.judgments_written == 4


def test_fake_least_in_flight_and_a_dead_servers_share(fake):
    from vrthinker.backends.openai import ServerPool

    pool = ServerPool(["http://a:1/v1", "http://b:1", "http://c:1/v1/"])
    a, b, c = pool.servers
    assert b.url == "http://b:1/v1" and c.url == "http://c:1/v1"
    got = [pool.acquire() for _ in range(3)]
    assert got == [a, b, c]
    pool.release(b, ok=False)  # b failed: it rests, the others take its share
    assert pool.acquire() in (a, c) and pool.acquire() in (a, c)
    assert pool.acquire(prefer=b) is not b


def test_fake_served_model_default_and_choice(fake):
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.errors import UsageError

    f = fake([], model={"id": "qunwang13/vr-thinker", "owned_by": "sglang"})
    b = OpenAIBackend([f.url])
    assert b.model_id == "qunwang13/vr-thinker" and b.kind == "sglang"
    with pytest.raises(UsageError, match="video item"):  # the known-ids table picks training; SGLang resamples
        b.resolve_profile(None)
    with pytest.raises(UsageError, match="video item"):  # the checkpoint's own profile wins over --protocol card
        b.resolve_profile("card")
    other = OpenAIBackend([fake([], model={"id": "judge", "root": "/srv/judge", "owned_by": "sglang"}).url])
    assert other.resolve_profile("card")[1] == "--protocol"  # a served model no rule knows: --protocol decides
    with pytest.raises(UsageError, match="not served"):
        OpenAIBackend([f.url], served_model="other")


def _first_and_last_image(body: dict) -> tuple[str, str]:
    urls = [c["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for c in m["content"] if c["type"] == "image_url"]
    return urls[0], urls[-1]


def _ordered_answer(body: dict) -> str:
    """A consistent judge: the video whose first frame's PNG hashes lower is better on every dimension."""
    import hashlib

    a, b = (hashlib.sha256(u.encode()).hexdigest() for u in _first_and_last_image(body))
    w = 1 if a < b else 2
    return f"<Answer>TA={w}, VQ={w}, MQ={w}, OA={w}</Answer>"


def test_fake_rank_keeps_a_rounds_pairs_in_flight(fake, tmp_path):
    """`judge rank --concurrency 4`: a Swiss round's pairs are judged together, the ranking is unchanged."""
    from vrthinker_eval.synth import render_scene, write_video

    vids = [str(write_video(tmp_path / f"c{i}.mp4", render_scene(("shapes", "pan")[i % 2], 160, 96, 12, seed=i),
                            fps=12)) for i in range(8)]
    out = {}
    for c in (1, 4):
        f = fake([], answer=_ordered_answer, delay_s=0.3)
        cmd = [sys.executable, "-m", "vrthinker.cli", "rank", "--prompt", "a fox", *vids, "--backend", "openai",
               "--server", f.url, "--protocol", "card", "--max-turns", "1", "--max-new-tokens", "16",
               "--concurrency", str(c), "--json", "--db", str(tmp_path / f"rank{c}.sqlite")]  # each run judges
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        out[c] = (json.loads(r.stdout), f.max_in_flight, len(f.calls))
    (one, peak1, calls1), (four, peak4, calls4) = out[1], out[4]
    assert peak1 == 1 and 3 <= peak4 <= 4  # round one: 4 disjoint pairs of the 8, all in flight
    assert calls1 == calls4 == one["comparisons"] == 24  # ceil(8 log2 8), one request per comparison
    assert four["history"] == one["history"] and four["standings"] == one["standings"]
    assert one["judged"] == four["judged"] == 24


def _logprobs_reply(top: list[tuple[str, float]]) -> str:
    first = {"token": top[0][0], "logprob": top[0][1],
             "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": top[0][0]}, "finish_reason": "length",
                                    "logprobs": {"content": [first]}}],
                       "usage": {"prompt_tokens": 50, "completion_tokens": 1}})


def test_fake_checklist_p_yes_from_the_first_tokens_top_logprobs(fake, clips):
    """dqa's checklist over a server: P(yes) from top_logprobs; only the answer words among them count."""
    import math

    from PIL import Image

    from dqa.score.checklist import p_yes_top
    from dqa.workers.vlm import ServedAsker
    from vrthinker.backends.openai import OpenAIBackend

    yes, no, other = math.log(0.6), math.log(0.2), math.log(0.1)
    f = fake([(200, _logprobs_reply([("Yes", yes), (" No", no), ("The", other)])),
              (200, _logprobs_reply([("The", other)])), (503, "{}"),
              (200, _logprobs_reply([("no", math.log(0.5))]))])
    asker = ServedAsker(OpenAIBackend([f.url], backoff_s=0.01), answer_prefix="Answer:", concurrency=1)
    images = [Image.new("RGB", (56, 56), (i * 30, 0, 0)) for i in range(3)]
    got = asker.probs(images, ["Is it sharp?", "Is it red?", "Is it blue?"])
    assert got[0] == pytest.approx((0.75, 0.8)) and got[1] == (0.5, 0.0) and got[2] == pytest.approx((0.0, 0.5))
    body = f.calls[0]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["temperature"] == 0 and body["continue_final_message"] is True
    assert body["messages"][-1] == {"role": "assistant", "content": "Answer:"}
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"] and parts[-1]["text"] == "Is it sharp?"
    assert p_yes_top([]) == (0.5, 0.0)


def test_fake_checklist_server_without_logprobs_is_a_clear_error(fake):
    from PIL import Image

    from dqa.workers.vlm import ServedAsker
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.errors import ServerError

    f = fake([(200, _reply("yes"))])
    with pytest.raises(ServerError, match="no top_logprobs"):
        ServedAsker(OpenAIBackend([f.url], backoff_s=0.01)).probs([Image.new("RGB", (56, 56))], ["q?"])


def test_dqa_score_backend_flags_are_checked():
    r = subprocess.run([sys.executable, "-m", "dqa.cli", "score", "x.mp4", "--backend", "openai"], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--server" in r.stderr


# ----------------------------------------------------------------------------------------------------------
# --concurrency N: N conversations in flight at most, the same judgments at any N


def _two_turn_answer(body: dict) -> str:
    """Turn 1 asks for two frames, turn 2 answers as `_ordered_answer` (which video looks better)."""
    if not any(m["role"] == "assistant" for m in body["messages"]):
        return '<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [20, 90]}}</tool_call>'
    return _ordered_answer(body)


def _labels(store, job: str) -> dict:
    from vrthinker.batch import judged_items

    return {it.item.item_id: (dict(it.forward.labels), dict(it.reverse.labels)) for it in judged_items(store, job)}


@pytest.mark.parametrize("concurrency, low, high", [(1, 1, 1), (2, 2, 2), (3, 2, 3), (4, 3, 4)])
def test_fake_concurrency_caps_the_conversations_in_flight(fake, tmp_path, concurrency, low, high):
    """Both orders of every pair, two turns each: at N the server never sees more than N requests at once,
    and sees more than one as soon as N allows (at 1 the pair's two orders take turns)."""
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.batch import run_batch
    from vrthinker.judge import Judge
    from vrthinker.store import Store

    rows = synthetic_pairs(tmp_path, 4, seed=10)
    f = fake([], answer=_two_turn_answer, delay_s=0.15)
    b = OpenAIBackend([f.url], backoff_s=0.01)  # its own concurrency 1: run_batch's N is the one that counts
    judge = Judge(b, b.resolve_profile("card")[0], max_turns=2, max_new_tokens=64)
    with Store(tmp_path / "j.sqlite") as store:
        s = run_batch(judge, rows, store, job="j", concurrency=concurrency)
        assert s.judged == 4 and s.judgments_written == 8 and s.incomplete == 0
        got = _labels(store, "j")
    assert len(f.calls) == 16  # 4 pairs x 2 orders x 2 turns
    assert low <= f.max_in_flight <= high, f.max_in_flight
    assert b.concurrency == 1 and b.slot()._value == 1  # the batch's cap is undone after it
    # the judgments do not depend on N: the same as one conversation at a time, each order on its own
    g = fake([], answer=_two_turn_answer)
    ref = OpenAIBackend([g.url])
    ref_judge = Judge(ref, ref.resolve_profile("card")[0], max_turns=2, max_new_tokens=64)
    for r in rows:
        fwd = ref_judge.compare(r.video1, r.video2, r.prompt, orders="one")
        rev = ref_judge.compare(r.video2, r.video1, r.prompt, orders="one")
        assert got[r.item_id] == (dict(fwd.labels), dict(rev.labels))
    assert g.max_in_flight == 1


def test_fake_single_judge_both_orders_takes_turns_at_concurrency_1(fake, clips):
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.judge import Judge

    peaks = {}
    for c in (1, 2):
        f = fake([], answer=_two_turn_answer, delay_s=0.2)
        b = OpenAIBackend([f.url], concurrency=c)
        v = Judge(b, b.resolve_profile("card")[0], max_turns=2, max_new_tokens=64).compare(
            clips["a"], clips["b"], "p", orders="both")
        assert v.complete and len(v.per_order) == 2 and len(f.calls) == 4
        peaks[c] = f.max_in_flight
    assert peaks == {1: 1, 2: 2}


# ----------------------------------------------------------------------------------------------------------
# the client's own work: lossless PNG, one encoding per frame, the body as json.dumps makes it, token counts


def test_png_data_urls_give_back_the_very_pixels():
    import base64
    import io

    import numpy as np
    from PIL import Image

    from vrthinker.backends.openai import png_base64, png_bytes, png_data_url

    rng = np.random.default_rng(0)
    for h, w in ((448, 448), (1, 1), (3, 17), (29, 5)):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        a[: h // 2] = a[0]  # flat rows too (the Up filter's zero differences)
        for data in (png_bytes(a), base64.b64decode(png_base64(Image.fromarray(a, "RGB")))):
            back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            assert back.shape == a.shape and np.array_equal(back, a)
        url = png_data_url(Image.fromarray(a, "RGB"))
        assert url.startswith("data:image/png;base64,")
        back = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
        assert np.array_equal(back, a)
    # another object with the same pixels is not encoded again; a different image is never confused with it
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    im1, im2 = Image.fromarray(a, "RGB"), Image.fromarray(a.copy(), "RGB")
    assert png_data_url(im1) is png_data_url(im2)
    b = a.copy()
    b[5, 5, 1] ^= 1
    assert png_base64(Image.fromarray(b, "RGB")) != png_base64(im1)
    # RGBA / L go as RGB, as before
    la = Image.fromarray(a[..., 0], "L")
    back = Image.open(io.BytesIO(base64.b64decode(png_base64(la))))
    assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(la.convert("RGB")))


def test_request_body_is_exactly_json_dumps(clips):
    from vrthinker.backends.openai import openai_messages, request_json
    from vrthinker.judge import load_videos
    from vrthinker.protocol import Conversation, Profile

    for name in ("card", "training"):
        p = Profile.load(name)
        grids = list(load_videos(p, clips["a"], clips["b"]))
        conv = Conversation(p, "a \"quoted\" prompt \\ with \u00fcn\u00efcode and \x00", grids)
        conv.add_reply("<think>x</think>")
        conv.add_tool_response([p.index_range[0] + 3, p.index_range[1]])
        messages, media = conv.request()
        body = {"model": "m", "messages": openai_messages(messages, media, video=True), "max_tokens": 9,
                "structured_outputs": {"regex": r'<A>"\d"</A>'}}
        assert request_json(body) == json.dumps(body).encode()
    # data URLs made elsewhere are serialized by json.dumps, whatever they hold
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 'data:x"\\'}}]}]}
    assert request_json(body) == json.dumps(body).encode()


def test_piecewise_token_count_is_the_whole_renderings(processor, clips):
    """Our count of every turn, made piece by piece with cached pieces, equals tokenizing the whole
    expanded rendering at once, for both profiles over a conversation of several turns."""
    from vrthinker.backends.openai import _PADS, Renderer
    from vrthinker.judge import load_videos
    from vrthinker.protocol import Conversation, Profile

    r = Renderer.from_processor(processor)
    assert r._piecewise
    for name in ("card", "training"):
        p = Profile.load(name)
        conv = Conversation(p, "a cat  jumps\n over  ", list(load_videos(p, clips["a"], clips["b"])))
        lo, hi = p.index_range
        for turn, indices in enumerate(([lo + 3, (lo + hi) // 2], [hi, lo + 7, hi - 1], [lo])):
            messages, media = conv.request()
            text, ids = r.render(messages, media)
            whole = r.whole_ids(_PADS.split(text), _PADS.findall(text), media)
            assert ids == whole and len(ids) > 500
            conv.add_reply(f"<think> step {turn} </think>\n<tool_call>{{\"name\": \"select_frames\", "
                           f"\"arguments\": {{\"frame_indices\": {indices}}}}}</tool_call>")
            conv.add_tool_response(indices)
