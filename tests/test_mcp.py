"""`dqa mcp` end to end: the official SDK's own client drives a real `dqa mcp` process (--backend metrics) over
stdio and over streamable HTTP, on generated clips."""
from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

pytest.importorskip("mcp", reason="dqa mcp needs the serve extra (pip install '.[serve]')")
httpx = pytest.importorskip("httpx")

import anyio  # noqa: E402
from mcp import Client, MCPError, StdioServerParameters  # noqa: E402

from serve_helpers import ROOT, free_port, media_with_escapes  # noqa: E402

PROMPT = "a red square glides over a textured field"
TOOLS = {"verify_video", "compare_videos", "get_frames", "ask_preference", "record_selection", "run_tuner",
         "failure_patterns"}
TOKEN = "mcp-test-token"
ANN_TOKEN = "ann-has-her-own-token"  # a --users token: selections made with it are recorded as ann's


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A media root with three clips, a corrupt file, and escapes: a symlink out and a file just outside."""
    from vrthinker_eval.synth import render_scene, write_video

    media = media_with_escapes(tmp_path_factory.mktemp("mcp"))
    media["c"] = media["root"] / "c.mp4"
    write_video(media["c"], render_scene("orbit", 160, 96, 24, seed=3), fps=12)
    return media


def mcp_args(db, root, *extra) -> list[str]:
    return ["-m", "dqa.cli", "mcp", "--db", str(db), "--media-root", str(root), "--backend", "metrics", *extra]


def clean_env(token: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DQA_TOKEN"}
    return env | ({"DQA_TOKEN": token} if token else {}) | {"PYTHONUNBUFFERED": "1"}


def stdio(db, root) -> Client:
    return Client(StdioServerParameters(command=sys.executable, args=mcp_args(db, root), cwd=str(ROOT),
                                        env=clean_env()), read_timeout_seconds=120)


def http_client(url: str, token: str | None = None) -> Client:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=120)),
                  read_timeout_seconds=120)


class HttpServer:
    """A real `dqa mcp --transport http` process on a free loopback port."""

    def __init__(self, db, root, *extra: str, token: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(str(db) + f".{self.port}.log", "ab+")
        self.proc = subprocess.Popen([sys.executable, *mcp_args(db, root, "--transport", "http", "--port",
                                                                 str(self.port), *extra)],
                                     cwd=ROOT, env=clean_env(token), stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dqa mcp did not answer /health: {self.stderr()}")

    def stderr(self) -> str:
        self.log.flush()
        return open(self.log.name).read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def one_line_error(result, *words: str) -> str:
    """The text of a tool error: isError, one text block, one line, no traceback, containing `words`."""
    assert result.is_error, result
    assert len(result.content) == 1 and result.content[0].type == "text", result.content
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text and 'File "' not in text, text
    for w in words:
        assert w in text, (w, text)
    return text


async def exercise(c: Client, media) -> None:
    """List the tools and check their schemas, then call every tool and read every resource."""
    from dqa.measures.pairwise import MetricsJudge
    from dqa.score.scoring import score

    tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t.description and "\n" not in t.description.strip() and len(t.description) < 250, t
        assert t.input_schema["type"] == "object"
        assert t.output_schema and t.output_schema.get("type") == "object", t.name
    assert set(tools["verify_video"].input_schema["required"]) == {"video", "prompt"}
    assert {"semantic_score", "spatial_score", "benchmark_score", "prompt_adherence", "reasoning", "grade", "action",
            "missing"} <= set(tools["verify_video"].output_schema["properties"])
    assert {"training_step", "loss", "new_patterns", "model_confidence"} <= set(
        tools["run_tuner"].output_schema["properties"])
    assert {"test_id", "variation_a", "variation_b", "chosen", "timestamp"} <= set(
        tools["record_selection"].output_schema["properties"])
    assert set(tools["compare_videos"].input_schema["properties"]["orders"]["enum"]) == {"one", "both"}

    # verify_video: the grade `dqa score` gives the same video, with progress notifications
    seen = []

    async def progress(done, total, message):
        seen.append((done, total, message))

    r = await c.call_tool("verify_video", {"video": "a.mp4", "prompt": PROMPT}, progress_callback=progress)
    assert not r.is_error, r.content
    v = r.structured_content
    ref = score([media["a"]], prompt=PROMPT).videos[0]
    assert v["prompt_adherence"] == pytest.approx(ref.grade.score, abs=1e-6)
    assert (v["grade"], v["action"]) == (ref.grade.grade, ref.grade.action)
    assert v["benchmark_score"] == pytest.approx(ref.grade.channels["benchmark"], abs=1e-6)
    assert v["semantic_score"] is None and v["spatial_score"] is None  # no VLM, no grounding weights here
    assert {"semantic", "spatial"} <= {m["component"] for m in v["missing"]}
    assert all(m["message"] for m in v["missing"])
    assert v["video"] == str(media["a"].resolve()) and "Grade" in v["reasoning"]
    assert seen and seen[-1][0] == seen[-1][1] and [s[0] for s in seen] == sorted(s[0] for s in seen)
    assert any("running" in s[2] for s in seen) and "done" in seen[-1][2]

    # compare_videos: the judge's labels, and the frames it looked at
    r = await c.call_tool("compare_videos", {"video1": str(media["a"]), "video2": "sub/b.mp4", "prompt": PROMPT})
    assert not r.is_error, r.content
    d = r.structured_content
    want = MetricsJudge().compare(media["a"], media["b"], PROMPT)
    assert d["labels"] == dict(want.labels) and d["reasoning"] == want.reasoning
    assert d["probabilities"] == (getattr(want, "probabilities", None) or None)
    frames = [f for g in d["frames"] for f in g["frames"]]
    assert {f["video"] for f in frames} == {1, 2} and all(0 <= f["frame"] < 24 for f in frames)

    # get_frames: MCP image content, evenly spaced or by index
    from PIL import Image

    r = await c.call_tool("get_frames", {"video": "a.mp4", "count": 3, "max_side": 80})
    assert not r.is_error, r.content
    assert [b.type for b in r.content] == ["text", "image", "image", "image"]
    assert [f["index"] for f in r.structured_content["frames"]] == [0, 12, 23]
    img = Image.open(io.BytesIO(base64.b64decode(r.content[1].data)))
    assert img.format == "JPEG" and img.size == (80, 48) and r.content[1].mime_type == "image/jpeg"
    r = await c.call_tool("get_frames", {"video": "sub/b.mp4", "indices": [20, 2]})
    assert not r.is_error and [f["index"] for f in r.structured_content["frames"]] == [20, 2]
    assert r.structured_content["frames"][0]["time_s"] == pytest.approx(20 / 12, abs=1e-3)

    # ask_preference + record_selection: a question, then a person's choice in the USER_SELECTIONS shape
    r = await c.call_tool("ask_preference", {"prompt": PROMPT, "a": "a.mp4", "b": "c.mp4", "dimension": "vq"})
    assert not r.is_error, r.content
    q = r.structured_content
    assert q["dimensions"] == ["VQ"] and q["variation_a"] == str(media["a"].resolve())
    r = await c.call_tool("record_selection", {"test_id": q["test_id"], "chosen": "variation_b", "user": "ann"})
    assert not r.is_error, r.content
    s = r.structured_content
    assert (s["test_id"], s["chosen"], s["rejected"], s["dimension"], s["status"]) == (
        q["test_id"], "variation_b", "variation_a", "VQ", "recorded")
    assert s["variation_b"] == str(media["c"].resolve()) and s["timestamp"].endswith("+00:00")
    again = await c.call_tool("record_selection", {"test_id": q["test_id"], "chosen": "a", "user": "ann"})
    one_line_error(again, "already has an answer")

    # run_tuner: the sleeptime rule (one new selection, two needed): nothing trained, the Tuner document
    r = await c.call_tool("run_tuner", {"min_new": 2})
    assert not r.is_error, r.content
    t = r.structured_content
    assert (t["status"], t["new_selections"], t["training_step"], t["loss"]) == ("skipped", 1, 0, None)
    assert t["new_patterns"] == [] and "need 2" in t["detail"]

    r = await c.call_tool("failure_patterns", {})
    if r.is_error:  # this install has no pattern finder yet: a one-line error, not a crash
        one_line_error(r, "patterns")
    else:
        assert isinstance(r.structured_content["FAILURE_PATTERNS"], list)

    # resources under dqa://
    uris = {str(x.uri) for x in (await c.list_resources()).resources}
    assert {"dqa://grades/recent", "dqa://patterns", "dqa://tuner/history", "dqa://selections/recent"} <= uris
    grades = json.loads((await c.read_resource("dqa://grades/recent")).contents[0].text)
    assert grades[0]["video"] == str(media["a"].resolve()) and grades[0]["grade"] == v["grade"]
    sels = json.loads((await c.read_resource("dqa://selections/recent")).contents[0].text)
    assert sels[0]["test_id"] == q["test_id"] and sels[0]["chosen"] == "variation_b"
    assert json.loads((await c.read_resource("dqa://tuner/history")).contents[0].text) == []
    assert "FAILURE_PATTERNS" in json.loads((await c.read_resource("dqa://patterns")).contents[0].text)


async def errors(c: Client, media) -> None:
    """Bad input: one-line tool errors naming the problem, and the server keeps answering."""
    outside = await c.call_tool("verify_video", {"video": str(media["outside"]), "prompt": PROMPT})
    one_line_error(outside, "outside the media roots")
    for sneaky in ("escape.mp4", "../secret.mp4", "sub/../../secret.mp4"):
        one_line_error(await c.call_tool("get_frames", {"video": sneaky}), "outside the media roots")
    one_line_error(await c.call_tool("compare_videos", {"video1": "a.mp4", "video2": "corrupt.mp4",
                                                        "prompt": PROMPT}), "video2", "corrupt.mp4")
    one_line_error(await c.call_tool("get_frames", {"video": "corrupt.mp4"}), "corrupt.mp4")
    one_line_error(await c.call_tool("verify_video", {"video": "a.mp4", "prompt": "   "}), "prompt", "empty")
    one_line_error(await c.call_tool("verify_video", {"video": "missing.mp4", "prompt": PROMPT}), "not found")
    one_line_error(await c.call_tool("verify_video", {"video": "a.mp4"}), "prompt", "required")
    one_line_error(await c.call_tool("verify_video", {"video": "a.mp4", "prompt": PROMPT,
                                                      "components": ["nonsense"]}), "unknown component")
    one_line_error(await c.call_tool("get_frames", {"video": "a.mp4", "count": "x"}), "count")
    one_line_error(await c.call_tool("get_frames", {"video": "a.mp4", "indices": [3, 99]}), "[99]", "24 frames")
    one_line_error(await c.call_tool("get_frames", {"video": "a.mp4", "count": 2, "indices": [1]}), "not both")
    one_line_error(await c.call_tool("ask_preference", {"prompt": PROMPT, "a": "a.mp4", "b": "a.mp4"}),
                   "same content")
    one_line_error(await c.call_tool("ask_preference", {"prompt": PROMPT, "a": "a.mp4", "b": "c.mp4",
                                                        "dimension": "XX"}), "dimension")
    one_line_error(await c.call_tool("record_selection", {"test_id": 9999, "chosen": "a"}), "no A/B question 9999")
    one_line_error(await c.call_tool("run_tuner", {"min_new": 0}), "min_new")
    r = await c.call_tool("get_frames", {"video": "a.mp4", "count": 1})
    assert not r.is_error  # still serving


def test_stdio_lists_tools_calls_every_tool_and_refuses_bad_input_in_one_line(media, tmp_path):
    db = tmp_path / "store.sqlite"

    async def main():
        async with stdio(db, media["root"]) as c:
            await exercise(c, media)
            await errors(c, media)

    anyio.run(main)
    with sqlite3.connect(db) as con:  # the same store dqa serve and dqa select use
        assert con.execute("SELECT count(*) FROM selections").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM serve_jobs WHERE kind='score'").fetchone()[0] == 1


@pytest.fixture(scope="module")
def token_server(media):
    import hashlib

    users = media["base"] / "users.txt"
    users.write_text(f"ann {hashlib.sha256(ANN_TOKEN.encode()).hexdigest()}\n")
    s = HttpServer(media["base"] / "http.sqlite", media["root"], "--users", str(users), token=TOKEN)
    yield s
    s.stop()
    assert "Traceback" not in s.stderr()


def test_http_with_token_serves_every_tool(token_server, media):
    async def main():
        async with http_client(token_server.url + "/mcp", ANN_TOKEN) as c:
            await exercise(c, media)
            await errors(c, media)

    anyio.run(main)


def test_http_records_a_selection_as_the_tokens_user(token_server):
    """As dqa serve: with authentication the token says who chose; another name is refused in one line."""
    async def main():
        out = {}
        for who, token in (("admin", TOKEN), ("ann", ANN_TOKEN)):
            async with http_client(token_server.url + "/mcp", token) as c:
                q = (await c.call_tool("ask_preference", {"prompt": f"{PROMPT} as {who}", "a": "a.mp4",
                                                          "b": "c.mp4"})).structured_content
                out[who, "other"] = await c.call_tool("record_selection", {"test_id": q["test_id"], "chosen": "a",
                                                                           "user": "mallory"})
                out[who] = await c.call_tool("record_selection", {"test_id": q["test_id"], "chosen": "a"})
        return out

    out = anyio.run(main)
    for who in ("admin", "ann"):
        one_line_error(out[who, "other"], f"signed in as {who}")
        assert not out[who].is_error and out[who].structured_content["user"] == who


def test_http_without_or_with_a_wrong_token_is_refused(token_server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": ANN_TOKEN}):
        r = httpx.post(token_server.url + "/mcp", headers=headers | {"Accept": "application/json, text/event-stream"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        assert r.json()["error"]["code"] == "unauthorized"

    async def main():
        async with http_client(token_server.url + "/mcp") as c:
            await c.list_tools()

    with pytest.raises(BaseException) as e:  # the SDK client cannot even connect
        anyio.run(main)
    leaves, todo = [], [e.value]
    while todo:
        x = todo.pop()
        todo.extend(x.exceptions) if hasattr(x, "exceptions") else leaves.append(x)  # exception groups
    assert any(isinstance(x, MCPError) for x in leaves), leaves


def test_http_without_token_answers_loopback_names_only(media, tmp_path):
    s = HttpServer(tmp_path / "open.sqlite", media["root"], "--components", "measures")
    try:
        r = httpx.post(s.url + "/mcp", headers={"Host": "evil.example:80"}, json={})
        assert r.status_code == 403 and r.json()["error"]["code"] == "bad_host"

        async def main():
            async with http_client(s.url + "/mcp") as c:
                r = await c.call_tool("get_frames", {"video": "a.mp4", "count": 1})
                assert not r.is_error and r.content[1].type == "image"
                # --components measures: verify_video scores vq and mq only unless the caller asks for more
                v = (await c.call_tool("verify_video", {"video": "a.mp4", "prompt": PROMPT})).structured_content
                assert set(v["components"]) == {"vq", "mq"} and v["benchmark_score"] is None
                assert {"component": "benchmark", "reason": "not_asked"}.items() <= next(
                    m for m in v["missing"] if m["component"] == "benchmark").items()

        anyio.run(main)
    finally:
        s.stop()
    # binding beyond this machine needs a token: refused at start, one line, exit 2
    p = subprocess.run([sys.executable, *mcp_args(tmp_path / "x.sqlite", media["root"], "--transport", "http",
                                                  "--host", "0.0.0.0")], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "token" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = subprocess.run([sys.executable, *mcp_args(tmp_path / "x.sqlite", media["root"], "--components", "nope")],
                       cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown component 'nope'" in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_two_concurrent_clients_lose_and_duplicate_nothing(token_server, media):
    db = media["base"] / "http.sqlite"
    with sqlite3.connect(db) as con:
        before = con.execute("SELECT count(*) FROM selections").fetchone()[0]
    prompts = {k: [f"{PROMPT} #{k}.{i}" for i in range(4)] for k in (1, 2)}
    results: dict = {1: [], 2: []}
    shared: dict = {}

    async def worker(k: int, shared_q_ready: anyio.Event):
        async with http_client(token_server.url + "/mcp", TOKEN) as c:
            if k == 1:
                r = await c.call_tool("ask_preference", {"prompt": PROMPT + " shared", "a": "a.mp4", "b": "c.mp4",
                                                         "dimension": "OA"})
                shared["q"] = r.structured_content["test_id"]
                shared_q_ready.set()
            await shared_q_ready.wait()
            async with anyio.create_task_group() as tg:
                async def one(p, i):
                    r = await c.call_tool("ask_preference", {"prompt": p, "a": "a.mp4", "b": "sub/b.mp4",
                                                             "dimension": "MQ"})
                    assert not r.is_error, r.content
                    r = await c.call_tool("record_selection", {"test_id": r.structured_content["test_id"],
                                                               "chosen": "ab"[i % 2]})
                    assert not r.is_error, r.content
                    results[k].append(r.structured_content)

                for i, p in enumerate(prompts[k]):
                    tg.start_soon(one, p, i)

                async def shared_answer():  # both clients answer the same question as the same person (admin)
                    r = await c.call_tool("record_selection", {"test_id": shared["q"], "chosen": "a"})
                    results[k].append(r)

                async def verify():
                    r = await c.call_tool("verify_video", {"video": "c.mp4", "prompt": PROMPT})
                    results[k].append(r)

                tg.start_soon(shared_answer)
                tg.start_soon(verify)

    async def main():
        ready = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, 1, ready)
            tg.start_soon(worker, 2, ready)

    anyio.run(main)
    docs = [x for k in (1, 2) for x in results[k] if isinstance(x, dict)]
    assert len(docs) == 8 and len({d["selection"] for d in docs}) == 8
    shared_answers = [x for k in (1, 2) for x in results[k] if not isinstance(x, dict)
                      and x.structured_content and "selection" in (x.structured_content or {})]
    refused = [x for k in (1, 2) for x in results[k] if not isinstance(x, dict) and x.is_error]
    assert len(shared_answers) == 1 and len(refused) == 1  # one answer kept, the other refused
    one_line_error(refused[0], "already has an answer")
    grades = [x.structured_content for k in (1, 2) for x in results[k]
              if not isinstance(x, dict) and not x.is_error and "grade" in (x.structured_content or {})]
    assert len(grades) == 2 and grades[0] == grades[1]
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT prompt, user, chosen, dimension FROM selections").fetchall()
        assert len(rows) - before == 9 and len(set(rows)) == len(rows)
        assert {(p, "admin") for k in (1, 2) for p in prompts[k]} <= {(r[0], r[1]) for r in rows}
        jobs = con.execute("SELECT count(*) FROM serve_jobs WHERE kind='score' AND request LIKE '%c.mp4%'").fetchone()
        assert jobs[0] == 1  # both clients got the one scoring job


def test_a_selection_through_mcp_is_what_dqa_tune_reads_from_the_ab_page(media, tmp_path):
    """The same choice made on the A/B page's API and through MCP gives the same selection to dqa tune."""
    from serve_helpers import Server

    from dqa.tune.selections import open_store
    from dqa.tune.train import pending

    page_db, mcp_db = tmp_path / "page.sqlite", tmp_path / "mcp.sqlite"
    server = Server(page_db, [media["root"]]).start()
    try:
        with server.client() as http:
            qid = http.post("/v1/ab", json={"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4",
                                            "dimension": "MQ"}).json()["question"]
            r = http.post(f"/v1/ab/{qid}/answer", json={"chosen": "b", "user": "ann"})
            assert r.status_code == 201, r.text
    finally:
        server.stop()

    async def main():
        async with stdio(mcp_db, media["root"]) as c:
            q = (await c.call_tool("ask_preference", {"prompt": PROMPT, "a": "a.mp4", "b": "sub/b.mp4",
                                                      "dimension": "MQ"})).structured_content
            r = await c.call_tool("record_selection", {"test_id": q["test_id"], "chosen": "variation_b",
                                                       "user": "ann"})
            assert not r.is_error, r.content

    anyio.run(main)
    seen = {}
    for name, db in (("page", page_db), ("mcp", mcp_db)):
        with open_store(db) as store:
            usable, new, bad = pending(store, "any-model")
        assert len(usable) == len(new) == 1 and not bad
        seen[name] = {k: v for k, v in usable[0].to_dict().items() if k not in ("created", "time")}
    assert seen["mcp"] == seen["page"]
    assert seen["mcp"]["chosen"] == "b" and seen["mcp"]["dimension"] == "MQ" and seen["mcp"]["user"] == "ann"
    # and `dqa tune` itself says the same about both stores (its sleeptime rule, before loading any model)
    outs = [subprocess.run([sys.executable, "-m", "dqa.cli", "tune", "--db", str(db), "--out", str(tmp_path / "ad"),
                            "--min-new", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
            for db in (page_db, mcp_db)]
    assert outs[0].returncode == outs[1].returncode == 0
    assert outs[0].stdout == outs[1].stdout == "nothing to do: 1 new selection(s) since the last adapter; need 2\n"


def test_a_missing_sdk_is_one_line_naming_the_extra(media, tmp_path):
    code = ("import sys; sys.modules['mcp'] = None; from dqa.cli import main; "
            f"sys.exit(main(['mcp', '--db', {str(tmp_path / 's.sqlite')!r}, '--media-root', {str(media['root'])!r}, "
            "'--backend', 'metrics']))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and 'pip install "vrthinker[serve]"' in p.stderr, p.stderr


def test_the_documented_refine_loop_stops_at_the_first_grade_over_the_threshold(tmp_path):
    """docs/mcp.md's plain Python loop (examples/mcp_refine_loop.py): a ruined first attempt is refined, the
    clean second one is accepted, and the third is never made."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mcp_refine_loop", ROOT / "examples" / "mcp_refine_loop.py")
    loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop)
    root = tmp_path / "media"
    root.mkdir()
    asked: list[tuple[str, int]] = []
    make = loop.synthetic_generator(root)

    def generate(prompt: str, attempt: int) -> str:
        asked.append((prompt, attempt))
        return make(prompt, attempt)

    async def main():
        async with stdio(tmp_path / "loop.sqlite", root) as c:
            return await loop.refine_loop(c, PROMPT, generate, threshold=0.6, attempts=3, log=lambda s: None)

    best, history = anyio.run(main)
    assert [h["action"] for h in history] == ["reject", "accept"] and best == history[-1]
    assert history[0]["prompt_adherence"] < 0.6 <= best["prompt_adherence"]
    assert [k for _, k in asked] == [0, 1] and asked[1][0].startswith(PROMPT + ". Fix: ")
    assert not (root / "attempt_2.mp4").exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_run_tuner_trains_the_tiny_judge_on_selections_made_through_mcp(tiny_model_dir, media, tmp_path):
    """The sleeptime cycle over MCP: two A/B choices, run_tuner(min_new=2) trains one DPO step on the tiny
    random Qwen2.5-VL (the paper's Tuner document, progress on the way), then run_tuner(min_new=1) skips."""
    db, out = tmp_path / "tune.sqlite", tmp_path / "adapter"
    args = ["-m", "dqa.cli", "mcp", "--db", str(db), "--media-root", str(media["root"]), "--backend", "hf",
            "--model", str(tiny_model_dir), "--protocol", "training", "--device", "cpu", "--max-new-tokens", "8",
            "--max-turns", "2", "--tune-out", str(out), "--tune-max-steps", "1", "--tune-samples", "1",
            "--allow-label-swap"]
    server = StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT), env=clean_env())

    async def main():
        async with Client(server, read_timeout_seconds=900) as c:
            for k, chosen in enumerate(("variation_a", "variation_b")):
                q = (await c.call_tool("ask_preference", {"prompt": f"{PROMPT} {k}", "a": "a.mp4",
                                                          "b": "sub/b.mp4"})).structured_content
                r = await c.call_tool("record_selection", {"test_id": q["test_id"], "chosen": chosen,
                                                           "dimension": "OA"})
                assert not r.is_error, r.content
            seen = []

            async def progress(done, total, message):
                seen.append(message)

            first = await c.call_tool("run_tuner", {"min_new": 2}, progress_callback=progress)
            second = await c.call_tool("run_tuner", {"min_new": 1})
            history = json.loads((await c.read_resource("dqa://tuner/history")).contents[0].text)
            return first, second, seen, history

    first, second, seen, history = anyio.run(main)
    assert not first.is_error, first.content
    t = first.structured_content
    assert (t["status"], t["training_step"], t["new_selections"]) == ("done", 1, 2)
    assert isinstance(t["loss"], float) and t["run_id"] == history[0]["id"]
    assert t["model_confidence"] is None or 0 <= t["model_confidence"] <= 1
    assert t["adapter"] == str(out.resolve()) and (out / "adapter_model.safetensors").is_file()
    assert seen and any("training on" in s for s in seen)  # the tuner's own log lines, as progress
    assert [(h["status"], h["steps"]) for h in history] == [("done", 1)]
    s = second.structured_content
    assert not second.is_error and s["status"] == "skipped" and s["new_selections"] == 0
    assert (s["training_step"], s["loss"]) == (1, t["loss"])  # nothing trained: the same step and loss


def test_failure_patterns_over_mcp_are_the_tuners_and_read_nothing_outside_the_roots(media, tmp_path):
    """Twelve choices of the clean clip over its flickering copy: failure_patterns gives what the tuner's pattern
    finder gives on the same selections; a selection whose video lies outside the media roots is skipped unread."""
    import numpy as np
    from vrthinker_eval.synth import render_scene, write_video

    from dqa.tune.selections import add, normalize, open_store, usable

    pt = pytest.importorskip("dqa.tune.patterns", reason="this install has no pattern finder")
    root, db = tmp_path / "media", tmp_path / "patterns.sqlite"
    root.mkdir()
    clean = render_scene("shapes", 160, 96, 24, seed=5)
    flicker = clean.astype(np.int16)
    flicker[1::2] = flicker[1::2] * 2 // 3
    write_video(root / "clean.mp4", clean, fps=12)
    write_video(root / "flicker.mp4", np.clip(flicker, 0, 255).astype(np.uint8), fps=12)
    elsewhere = tmp_path / "elsewhere.mp4"
    write_video(elsewhere, render_scene("orbit", 160, 96, 24, seed=6), fps=12)
    with open_store(db) as store:
        recs = [normalize(f"scene {k}", str(root / "clean.mp4"), str(root / "flicker.mp4"), "a", "VQ")
                for k in range(12)]
        recs.append(normalize("outside", str(root / "clean.mp4"), str(elsewhere), "a", "VQ"))
        add(store, recs)

    async def main():
        async with stdio(db, root) as c:
            return await c.call_tool("failure_patterns", {})

    r = anyio.run(main)
    assert not r.is_error, r.content
    d = r.structured_content
    with open_store(db) as store:
        unread = store.db.execute("SELECT count(*) FROM video_measures").fetchone()[0]
    assert unread == 2  # clean and flicker only: the video outside the roots was never measured
    assert "1 selection(s) skipped" in d["detail"] and "outside the media roots" in d["detail"]
    with open_store(db) as store:  # the tuner's own finder over the selections inside the roots
        inside = [s for s in usable(store)[0] if s.prompt != "outside"]
        want = [p.to_dict() for p in pt.find(store, inside).patterns]
    assert d["patterns"] == want and d["FAILURE_PATTERNS"] == [p["text"] for p in want]
    assert d["FAILURE_PATTERNS"], d["detail"]  # the flicker is found


def test_side_by_side_with_dqa_serve_on_one_store(media, tmp_path):
    """dqa serve and dqa mcp on one store: a comparison asked through MCP is the job the HTTP API then gets
    back (one job, not two), and a question asked through MCP is answered on serve's A/B API."""
    from serve_helpers import Server, wait_job

    db = tmp_path / "shared.sqlite"
    server = Server(db, [media["root"]]).start()
    try:
        async def ask():
            async with stdio(db, media["root"]) as c:
                r = await c.call_tool("compare_videos", {"video1": "a.mp4", "video2": "c.mp4", "prompt": PROMPT})
                q = await c.call_tool("ask_preference", {"prompt": PROMPT, "a": "a.mp4", "b": "c.mp4",
                                                         "dimension": "OA"})
                return r.structured_content, q.structured_content

        verdict, q = anyio.run(ask)
        with server.client() as http:
            job = http.post("/v1/compare", json={"video1": "a.mp4", "video2": "c.mp4", "prompt": PROMPT}).json()
            done = wait_job(http, job["job"])
            assert done["result"]["labels"] == verdict["labels"]
            r = http.post(f"/v1/ab/{q['test_id']}/answer", json={"chosen": "b", "user": "ann"})
            assert r.status_code == 201, r.text

        async def read():
            async with stdio(db, media["root"]) as c:
                return json.loads((await c.read_resource("dqa://selections/recent")).contents[0].text)

        sels = anyio.run(read)
    finally:
        server.stop()
    assert [(s["test_id"], s["chosen"], s["user"]) for s in sels] == [(q["test_id"], "variation_b", "ann")]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM serve_jobs WHERE kind='compare'").fetchone()[0] == 1


def test_a_call_does_not_wait_forever_on_a_dead_worker(media, tmp_path):
    """With the job worker down, verify_video says so in one line at once instead of waiting on a queued job."""
    from dqa.mcp.service import Service, ToolFailure

    service = Service(str(tmp_path / "dead.sqlite"), [str(media["root"])], {"backend": "metrics"})
    try:  # never started: the worker is not running
        t0 = time.monotonic()
        with pytest.raises(ToolFailure) as e:
            service.verify_video("a.mp4", PROMPT)
        assert time.monotonic() - t0 < 10
        assert "job worker is down" in str(e.value) and "\n" not in str(e.value)
    finally:
        service.stop()


def test_run_tuner_refuses_to_read_videos_outside_the_roots(media, tmp_path):
    """A selection recorded with `dqa select` on a video outside the media roots: run_tuner would read it, so
    it refuses in one line (and loads nothing); with too few new selections it just skips, reading nothing."""
    from dqa.mcp.service import Service, ToolFailure
    from dqa.tune.selections import add, normalize, open_store

    db = str(tmp_path / "outside.sqlite")
    with open_store(db) as store:
        add(store, [normalize(PROMPT, str(media["c"]), str(media["base"] / "secret.mp4"), "b")])
    service = Service(db, [str(media["root"] / "sub")], {"backend": "hf", "model": "no-such-model"})
    try:
        with pytest.raises(ToolFailure) as e:
            service.run_tuner(1)
        assert "outside the media roots" in str(e.value) and "#1" in str(e.value) and "\n" not in str(e.value)
        assert service.run_tuner(2).status == "skipped"
    finally:
        service.stop()


def test_compare_videos_carries_the_judges_label_probabilities(media, tmp_path):
    """A judge that reports label probabilities (a scripted card judge with given ones): compare_videos returns
    them as the verdict holds them, with its labels and the frames its turn saw."""
    from vrthinker.backends.scripted import ScriptedBackend
    from vrthinker.judge import Judge
    from vrthinker.testing import GivenProbabilities

    from dqa.mcp.server import build
    from dqa.mcp.service import Service

    probs = {"TA": {"1": 0.9, "2": 0.05, "0": 0.05}, "VQ": {"1": 0.3, "2": 0.3, "0": 0.4},
             "MQ": {"1": 0.2, "2": 0.7, "0": 0.1}, "OA": {"1": 0.55, "2": 0.4, "0": 0.05}}
    service = Service(str(tmp_path / "p.sqlite"), [str(media["root"])], {"backend": "scripted"})
    service.jobs._judge = Judge(GivenProbabilities(ScriptedBackend(
        ["<Think>steady</Think><Answer>TA=1, VQ=0, MQ=2, OA=1</Answer>"]), [[probs]]), "card")
    service.start()

    async def main():
        async with Client(build(service)) as c:
            return await c.call_tool("compare_videos", {"video1": "a.mp4", "video2": "c.mp4", "prompt": PROMPT})

    try:
        r = anyio.run(main)
    finally:
        service.stop()
    assert not r.is_error, r.content
    d = r.structured_content
    assert d["probabilities"] == probs and d["labels"] == {"TA": 1, "VQ": 0, "MQ": 2, "OA": 1} and d["complete"]
    assert d["frames"][0]["title"].startswith("turn 1") and {f["video"] for f in d["frames"][0]["frames"]} == {1, 2}


def test_one_answer_per_person_when_many_arrive_at_once(media, tmp_path):
    """record_selection and the A/B page share Questions.answer: eight simultaneous answers by one person to
    one question keep exactly one and refuse the rest with 409 (no store error, no second row)."""
    import threading

    from dqa.serve.errors import ApiError
    from dqa.serve.questions import Questions
    from dqa.serve.tables import Connections

    conns = Connections(str(tmp_path / "race.sqlite"))
    questions = Questions(conns)
    try:
        for k in range(3):
            q = questions.ask(f"{PROMPT} {k}", str(media["a"].resolve()), str(media["c"].resolve()), "OA", None)
            start, outcomes = threading.Barrier(8), []

            def answer(q=q, start=start, outcomes=outcomes):
                conns.get()  # each thread's connection is open before they all go
                start.wait()
                try:
                    outcomes.append(questions.answer(q.id, "a", None, "sam").status)
                except ApiError as e:
                    outcomes.append(e.status)
                except Exception as e:  # noqa: BLE001 - what the test is about: nothing else may escape
                    outcomes.append(repr(e))

            threads = [threading.Thread(target=answer) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(outcomes, key=str) == sorted(["recorded"] + [409] * 7, key=str), outcomes
            assert len(questions.get(q.id).answers) == 1
    finally:
        conns.close()


def test_progress_says_running_even_when_a_job_finished_between_two_looks():
    """A fast job can go from queued to done between two polls; the progress still reports queued, running, done
    in order (a quiet machine made the end-to-end tests miss 'running')."""
    from types import SimpleNamespace

    from dqa.mcp.service import Service

    states = iter(["queued", "done"])

    class Jobs:
        def get(self, job_id):
            return SimpleNamespace(state=next(states))

        def health(self):
            return {"ok": True}

        def wait(self, job_id, timeout):
            return None

    svc = object.__new__(Service)
    svc.jobs, svc.poll_s = Jobs(), 0.01
    seen = []
    svc.wait("j1", lambda done, total, msg: seen.append((done, total, msg)), "verify")
    assert seen == [(0, 2, "verify: queued"), (1, 2, "verify: running"), (2, 2, "verify: done")]
