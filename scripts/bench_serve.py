"""Throughput of --backend openai against one server: our client at concurrency 1 and 8, the server's own limit.

The same N distinct pairs (distinct synthetic clips and prompts) are judged, each run with cold caches
(vLLM: a fresh `cache_salt` per run):
- our client (`judge batch` code: vrthinker.batch.run_batch) at --concurrency 1, then 8;
- the server's limit: the very requests the concurrency-8 run sent, pre-rendered, replayed by a bare httpx
  client with 8 conversations in flight (each conversation's turns in order);
- the in-process HF backend on the same pairs (--hf-model; skipped without it).

Replies are made realistic on vLLM: structured outputs (a regex per turn) force every turn but the last
into a tool call of a few hundred tokens (snapshot, thinking, two frame indices) and the last into an
answer of the same length, so every conversation runs --max-turns turns as VR-Thinker's do; --max-tokens
only caps them. Other servers get plain max_tokens (a random model then runs into the cap). Each run
reports its turns per conversation and new tokens per turn, so the work compared is visible.
The last line reads
`serve_pairs_per_hour_c1=X serve_pairs_per_hour_c8=Y ratio=Z server_limit_pairs_per_hour=L efficiency=E`,
E = Y / L.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# about 250 tokens of a random model's letters (~2.4 characters per token), then the turn's action
THINK = r'<Snapshot>[a-z ]{80,120}</Snapshot><Think>[a-z ]{350,450}</Think>'
TOOL_REGEX = THINK + (r'<tool_call>\{"name": "select_frames", "arguments": \{"frame_indices": '
                      r'\[[1-9][0-9], [1-9][0-9]\]\}\}</tool_call>')
ANSWER_REGEX = THINK + r'<Answer>TA=[12], VQ=[12], MQ=[12], OA=[12]</Answer>'


def make_pairs(folder: Path, n: int) -> Path:
    from eval.synth import render_scene, write_video

    scenes = ("shapes", "pan")
    rows = []
    for i in range(n):
        a = write_video(folder / f"a{i}.mp4", render_scene(scenes[i % 2], 160, 96, 24, seed=100 + i), fps=12)
        b = write_video(folder / f"b{i}.mp4", render_scene(scenes[(i + 1) % 2], 160, 96, 24, seed=500 + i), fps=12)
        rows.append({"id": f"p{i}", "video1": str(a), "video2": str(b), "prompt": f"scene {i}: a moving object"})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_client(judge, rows, concurrency: int, db: Path) -> float:
    from vrthinker.batch import judged_items, run_batch
    from vrthinker.store import Store

    t0 = time.perf_counter()
    with Store(db) as store:
        s = run_batch(judge, rows, store, job="bench", concurrency=concurrency)
        dt = time.perf_counter() - t0
        turns = [t for it in judged_items(store, "bench") for j in (it.forward, it.reverse) if j is not None
                 for t in [j.verdict.get("turns") or []]]
    n_conv, n_turns = len(turns), sum(map(len, turns))
    new = [t.get("new_tokens") or 0 for ts in turns for t in ts]
    print(f"  {s.judged} pairs judged ({s.bad} bad) in {dt:.1f}s; {n_conv} conversations, "
          f"{n_turns / max(1, n_conv):.2f} turns each, {sum(new) / max(1, len(new)):.0f} new tokens per turn",
          file=sys.stderr)
    return dt


def replay(url: str, conversations: list[list[dict]], concurrency: int, salt: str | None, timeout: float) -> float:
    """Send each conversation's recorded requests in order, `concurrency` conversations at once."""
    import httpx

    client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=64))

    def one(bodies: list[dict]) -> None:
        for b in bodies:
            body = dict(b, **({"cache_salt": salt} if salt else {}))
            r = client.post(url.rstrip("/") + "/chat/completions", json=body)
            r.raise_for_status()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, conversations))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="the server's URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="where the checkpoint's processor is (default: the served root)")
    p.add_argument("--pairs", type=int, default=8, help="distinct pairs (default 8)")
    p.add_argument("--max-turns", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=512, help="cap on new tokens per turn (default 512)")
    p.add_argument("--hf-model", default=None, help="a local checkpoint for the in-process HF figure")
    p.add_argument("--device", default="cpu", help="device of the in-process HF run")
    p.add_argument("--timeout", type=float, default=1800)
    a = p.parse_args()

    from vrthinker.batch import read_pairs
    from vrthinker.judge import Judge

    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    rows = read_pairs(make_pairs(work, a.pairs))
    recorded: dict[int, list[dict]] = {}
    lock = threading.Lock()

    def hook(record: bool):
        def on_request(session, body: dict) -> None:
            if kind == "vllm":  # force this turn's reply: a tool call, the last turn an answer
                turn = 1 + sum(m["role"] == "assistant" for m in body["messages"])
                body["structured_outputs"] = {"regex": ANSWER_REGEX if turn >= a.max_turns else TOOL_REGEX}
            if record:
                with lock:
                    recorded.setdefault(id(session), []).append(json.loads(json.dumps(body)))
        return on_request

    rates = {}
    for c in (1, 8):
        judge = Judge.from_pretrained(a.model, backend="openai", server=[a.server], protocol="card",
                                      max_turns=a.max_turns, max_new_tokens=a.max_tokens, concurrency=c,
                                      timeout=a.timeout)
        b = judge.backend
        kind = b.kind
        if kind == "vllm":
            b.extra_body = {"cache_salt": f"bench-c{c}-{time.time()}"}  # cold prefix cache per run
        b.on_request = hook(record=c == 8)
        print(f"our client, concurrency {c} ({kind} server, model {b.model_id}):", file=sys.stderr)
        rates[c] = a.pairs * 3600 / run_client(judge, rows, c, work / f"c{c}.sqlite")
    convs = [[{k: v for k, v in body.items() if k != "cache_salt"} for body in bodies]
             for bodies in recorded.values()]
    print(f"bare client, concurrency 8, {sum(map(len, convs))} recorded requests:", file=sys.stderr)
    dt = replay(a.server, convs, 8, f"bench-bare-{time.time()}" if kind == "vllm" else None, a.timeout)
    limit = a.pairs * 3600 / dt
    print(f"  {dt:.1f}s", file=sys.stderr)
    if a.hf_model:
        from vrthinker.backends.hf import HFBackend

        judge = Judge(HFBackend.from_pretrained(a.hf_model, device=a.device), "card", max_turns=a.max_turns,
                      max_new_tokens=a.max_tokens)
        print(f"in-process HF backend ({a.device}):", file=sys.stderr)
        hf = a.pairs * 3600 / run_client(judge, rows, 1, work / "hf.sqlite")
        print(f"hf_pairs_per_hour={hf:.1f} (replies differ: no structured outputs in-process)")
    print(f"serve_pairs_per_hour_c1={rates[1]:.1f} serve_pairs_per_hour_c8={rates[8]:.1f} "
          f"ratio={rates[8] / rates[1]:.2f} server_limit_pairs_per_hour={limit:.1f} efficiency={rates[8] / limit:.2f}")


if __name__ == "__main__":
    main()
