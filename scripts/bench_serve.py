"""Throughput of --backend openai against one server: our client at concurrency 1 and 8, the server's own limit.

The same N distinct pairs (distinct synthetic clips and prompts) are judged, each run with cold caches
(vLLM: a fresh `cache_salt` per run):
- our client (`judge batch` code: vrthinker.batch.run_batch) at --concurrency 1, then 8;
- the server's limit: the very requests the concurrency-8 run sent, pre-rendered, replayed by a bare httpx
  client with 8 conversations in flight (each conversation's turns in order);
- the in-process HF backend on the same pairs (--hf-model; skipped without it).

Replies are made realistic on vLLM: structured outputs (a regex per turn) force every turn but the last
into a tool call (snapshot, thinking, two frame indices) and the last into an answer, each of about
--reply-tokens tokens (the letters' length calibrated on the served model by one request first), so every
conversation runs --max-turns turns of a few hundred tokens as VR-Thinker's do; --max-tokens only caps them.
`--make-model DIR` builds the tiny random Qwen2.5-VL that vLLM's CPU build can serve (head_dim 32).
Other servers get plain max_tokens (a random model then runs into the cap). Each run
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

# A turn's reply: a snapshot and thinking of random letters, then the turn's action. Their lengths (in
# characters) are set per run so that a turn comes to about --reply-tokens tokens (see calibrate).
TOOL_CALL = (r'<tool_call>\{"name": "select_frames", "arguments": \{"frame_indices": '
             r'\[[1-9][0-9], [1-9][0-9]\]\}\}</tool_call>')
ANSWER = r'<Answer>TA=[12], VQ=[12], MQ=[12], OA=[12]</Answer>'


def reply_regexes(chars: int) -> tuple[str, str]:
    """(tool-call regex, answer regex) with about `chars` characters of letters, one fifth as the snapshot."""
    snap, think = max(8, chars // 5), max(16, chars - chars // 5)
    head = (rf'<Snapshot>[a-z ]{{{int(snap * 0.9)},{int(snap * 1.1)}}}</Snapshot>'
            rf'<Think>[a-z ]{{{int(think * 0.9)},{int(think * 1.1)}}}</Think>')
    return head + TOOL_CALL, head + ANSWER


def calibrate(judge, rows, target: int, max_tokens: int) -> int:
    """The letters per reply that make a turn about `target` new tokens with this model: one first turn with
    a trial length (its own cache_salt), then the length scaled by what it gave (the tags are ~40 tokens)."""
    import httpx

    from vrthinker.backends.openai import openai_messages, request_json
    from vrthinker.conversation import Dialogue

    b = judge.backend
    trial = 4 * target
    grids = judge.load_videos(rows[0].video1, rows[0].video2)
    messages, media = Dialogue(judge.profile, list(grids), rows[0].prompt).request()
    body = {"model": b.model_id, "messages": openai_messages(messages, media, b.caps["video"]),
            "max_tokens": max_tokens, "temperature": 0.0, "cache_salt": f"bench-calibrate-{time.time()}",
            "structured_outputs": {"regex": reply_regexes(trial)[0]}}
    r = httpx.post(b.pool.servers[0].url + "/chat/completions", content=request_json(body),
                   headers={"Content-Type": "application/json"}, timeout=600)
    r.raise_for_status()
    got = r.json()["usage"]["completion_tokens"]
    chars = max(40, round(trial * (target - 40) / max(1, got - 40)))
    print(f"calibration: {trial} letters gave {got} tokens; {chars} letters for ~{target}", file=sys.stderr)
    return chars


def make_model(out: Path) -> Path:
    """The tiny random Qwen2.5-VL vLLM's CPU build can run (head_dim 32: its CPU attention takes no 16):
    2 layers, hidden 128, 4 heads, mrope_section [4, 6, 6], the real processor files; never downloaded."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from scripts.make_tiny_model import FIXTURES, tiny_config_dict

    cfg = tiny_config_dict()
    cfg.update(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)
    cfg["rope_scaling"] = {"type": "mrope", "mrope_section": [4, 6, 6]}
    cfg["vision_config"].update(out_hidden_size=128)
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**cfg)).eval().save_pretrained(out)
    AutoProcessor.from_pretrained(FIXTURES).save_pretrained(out)
    (out / "generation_config.json").write_bytes((FIXTURES / "generation_config.json").read_bytes())
    return out


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
    ready = [[json.dumps(dict(b, **({"cache_salt": salt} if salt else {}))).encode() for b in bodies]
             for bodies in conversations]  # pre-rendered: the bare client only posts bytes
    headers = {"Content-Type": "application/json"}

    def one(bodies: list[bytes]) -> None:
        for body in bodies:
            r = client.post(url.rstrip("/") + "/chat/completions", content=body, headers=headers)
            r.raise_for_status()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, ready))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-model", type=Path, metavar="DIR",
                   help="only build the tiny random model vLLM's CPU build can serve into DIR, then exit")
    p.add_argument("--server", help="the server's URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="where the checkpoint's processor is (default: the served root)")
    p.add_argument("--pairs", type=int, default=8, help="distinct pairs (default 8)")
    p.add_argument("--max-turns", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=512, help="cap on new tokens per turn (default 512)")
    p.add_argument("--reply-tokens", type=int, default=275,
                   help="new tokens per turn the structured outputs aim at on vLLM (default 275)")
    p.add_argument("--hf-model", default=None, help="a local checkpoint for the in-process HF figure")
    p.add_argument("--device", default="cpu", help="device of the in-process HF run")
    p.add_argument("--timeout", type=float, default=1800)
    a = p.parse_args()
    if a.make_model:
        print(make_model(a.make_model))
        return
    if not a.server:
        p.error("--server is required")

    from vrthinker.backends.openai import clear_media_caches
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
                body["structured_outputs"] = {"regex": regexes[1] if turn >= a.max_turns else regexes[0]}
            if record:
                with lock:
                    recorded.setdefault(id(session), []).append(json.loads(json.dumps(body)))
        return on_request

    rates = {}
    regexes = ("", "")
    for c in (1, 8):
        judge = Judge.from_pretrained(a.model, backend="openai", server=[a.server], protocol="card",
                                      max_turns=a.max_turns, max_new_tokens=a.max_tokens, concurrency=c,
                                      timeout=a.timeout)
        b = judge.backend
        kind = b.kind
        if kind == "vllm" and not regexes[0]:
            regexes = reply_regexes(calibrate(judge, rows, a.reply_tokens, a.max_tokens))
        if kind == "vllm":
            b.extra_body = {"cache_salt": f"bench-c{c}-{time.time()}"}  # cold prefix cache per run
        b.on_request = hook(record=c == 8)
        clear_media_caches()  # cold on our side too: no frame encoded by the run before
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
