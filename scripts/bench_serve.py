"""Throughput of --backend openai against one server: our client at concurrency 1 and 8, the server's own limit.

The same N distinct pairs (distinct synthetic clips and prompts) are judged, each run with cold caches
(vLLM: a fresh `cache_salt` per run):
- our client (`judge batch` code: vrthinker.batch.run_batch) at --concurrency 1, then 8;
- the server's limit: the very requests the concurrency-8 run sent, pre-rendered, replayed by a bare httpx
  client with 8 conversations in flight (each conversation's turns in order);
- the in-process HF backend on the same pairs (--hf-model; skipped without it), doing the same work: each of
  its turns is forced (a LogitsProcessor through HFBackend.generate_hook) to emit exactly the token ids the
  concurrency-8 served run got for that conversation and turn (vLLM's `return_token_ids`, asked in every
  served run), so it runs the same turns with the same reply lengths, decoding token by token with its KV
  cache as usual; its prompt ids are checked against vLLM's `prompt_token_ids` for the same turn.

Replies are made realistic on vLLM: structured outputs (a regex per turn) force every turn but the last
into a tool call (snapshot, thinking, two frame indices) and the last into an answer, each of about
--reply-tokens tokens (the letters' length calibrated on the served model by one request first), so every
conversation runs --max-turns turns of a few hundred tokens as VR-Thinker's do; --max-tokens only caps them.
`--make-model DIR` builds the tiny random Qwen2.5-VL that vLLM's CPU build can serve (head_dim 32).
Other servers get plain max_tokens (a random model then runs into the cap). Each run
reports its turns per conversation and new tokens per turn, so the work compared is visible.
With --hf-model the line before it reads `hf_pairs_per_hour=H hf_vs_c1=H/X hf_vs_c8=H/Y (...)`; the last line reads
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


def _pixels_key(items) -> str:
    """sha256 of the first two media items' RGB pixels (a clip: its first frame): which pair and order."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for x in list(items)[:2]:
        x = x.frames[0] if hasattr(x, "frames") else x
        a = np.ascontiguousarray(np.asarray(x if x.mode == "RGB" else x.convert("RGB")))
        h.update(repr(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def request_key(messages: list[dict], media) -> tuple[str, int]:
    """(the conversation's first two media items' pixels, turn number): the same for the in-process request
    and the chat-completions body sent for it (see `body_key`)."""
    return _pixels_key(media), 1 + sum(m["role"] == "assistant" for m in messages)


def body_key(body: dict) -> tuple[str, int]:
    """`request_key` of a chat-completions body: its first two images decoded from their PNG data URLs."""
    import base64
    import io

    from PIL import Image

    urls = [c[c["type"]]["url"] for m in body["messages"] if isinstance(m.get("content"), list)
            for c in m["content"] if c.get("type") in ("image_url", "video_url")]
    images = [Image.open(io.BytesIO(base64.b64decode(u.split(",")[1]))) for u in urls[:2]]
    return _pixels_key(images), 1 + sum(m["role"] == "assistant" for m in body["messages"])


class ForceServed:
    """Makes the in-process HF backend emit, at each turn, exactly the token ids a served run got for the
    same conversation and turn. `table`: request_key -> (the server's prompt ids or None, its reply ids).

    `hook` is an HFBackend.generate_hook: for each generate call (one conversation, or a batch's rows) it looks
    up every row's reply and passes a LogitsProcessor that, at step i, leaves only row b's token i (then an
    end-of-sequence id) with a finite score, after the checkpoint's own processors ran; the model still runs
    every step with its KV cache, only the choice is forced. Prompts are compared with the server's:
    `prompts_equal` / `prompts_differ` count turns; a request missing from the table raises KeyError."""

    def __init__(self, table: dict, eos_id: int):
        self.table = dict(table)
        self.eos_id = int(eos_id)
        self.prompts_equal = self.prompts_differ = self.calls = 0

    @classmethod
    def from_served(cls, exchanges, eos_id: int) -> "ForceServed":
        """From (body, response) pairs of a vLLM run asked with `return_token_ids`."""
        table = {}
        for body, data in exchanges:
            ids = data["choices"][0].get("token_ids")
            if ids is None:
                raise ValueError("the server returned no token_ids: ask with return_token_ids (vLLM)")
            table[body_key(body)] = (data.get("prompt_token_ids"), list(ids))
        return cls(table, eos_id)

    def hook(self, sessions, requests) -> dict:
        from transformers import LogitsProcessorList

        rows = [self.table[request_key(m, media)] for m, media in requests]
        self.calls += 1
        return {"logits_processor": LogitsProcessorList([_Force(self, rows)])}


class _Force:
    """One generate call's forcing (see ForceServed); a transformers LogitsProcessor."""

    def __init__(self, owner: ForceServed, rows: list):
        self.owner, self.rows, self.start = owner, rows, None

    def __call__(self, input_ids, scores):
        if self.start is None:  # the first step: input_ids is the prompt
            self.start = input_ids.shape[1]
            for b, (prompt, _) in enumerate(self.rows):
                if prompt is not None:
                    same = input_ids[b].tolist() == list(prompt)
                    self.owner.prompts_equal += same
                    self.owner.prompts_differ += not same
        i = input_ids.shape[1] - self.start
        for b, (_, reply) in enumerate(self.rows):
            target = reply[i] if i < len(reply) else self.owner.eos_id
            scores[b] = float("-inf")
            scores[b, target] = 0.0
        return scores


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
    from vrthinker_eval.synth import render_scene, write_video

    scenes = ("shapes", "pan")
    rows = []
    for i in range(n):
        a = write_video(folder / f"a{i}.mp4", render_scene(scenes[i % 2], 160, 96, 24, seed=100 + i), fps=12)
        b = write_video(folder / f"b{i}.mp4", render_scene(scenes[(i + 1) % 2], 160, 96, 24, seed=500 + i), fps=12)
        rows.append({"id": f"p{i}", "video1": str(a), "video2": str(b), "prompt": f"scene {i}: a moving object"})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def conversations(db: Path) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(pair id, order) -> [(reply, new tokens) per turn] of a run's store."""
    from vrthinker.batch import judged_items
    from vrthinker.store import Store

    with Store(db) as store:
        return {(it.item.item_id, order): [(t.get("reply"), t.get("new_tokens") or 0)
                                           for t in j.verdict.get("turns") or []]
                for it in judged_items(store, "bench")
                for order, j in (("forward", it.forward), ("reverse", it.reverse)) if j is not None}


def run_client(judge, rows, concurrency: int, db: Path) -> float:
    from vrthinker.batch import run_batch
    from vrthinker.store import Store

    t0 = time.perf_counter()
    with Store(db) as store:
        s = run_batch(judge, rows, store, job="bench", concurrency=concurrency)
        dt = time.perf_counter() - t0
    turns = list(conversations(db).values())
    n_conv, n_turns = len(turns), sum(map(len, turns))
    new = [n for ts in turns for _, n in ts]
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
    exchanges: list[tuple[dict, dict]] = []  # (body, response) of every request of the concurrency-8 run
    lock = threading.Lock()

    def recording(post, record: bool):
        def wrapped(path: str, body: dict, prefer=None, root: bool = False):
            data, server = post(path, body, prefer=prefer, root=root)
            if record and path == "/chat/completions":
                with lock:
                    exchanges.append((body, data))
            return data, server
        return wrapped

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
        if kind == "vllm":  # cold prefix cache per run; the reply's token ids (for the HF run), in every run
            b.extra_body = {"cache_salt": f"bench-c{c}-{time.time()}", "return_token_ids": True}
        b.on_request = hook(record=c == 8)
        b.post = recording(b.post, record=c == 8)
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

        backend = HFBackend.from_pretrained(a.hf_model, device=a.device)
        judge = Judge(backend, "card", max_turns=a.max_turns, max_new_tokens=a.max_tokens)
        forced = None
        if kind == "vllm":  # the same work: every turn emits the concurrency-8 run's reply for it
            forced = ForceServed.from_served(exchanges, backend.processor.tokenizer.convert_tokens_to_ids("<|im_end|>"))
            backend.generate_hook = forced.hook
        print(f"in-process HF backend ({a.device}{', replies forced to the served ones' if forced else ''}):",
              file=sys.stderr)
        hf = a.pairs * 3600 / run_client(judge, rows, 1, work / "hf.sqlite")
        if forced is not None:
            served, ours = conversations(work / "c8.sqlite"), conversations(work / "hf.sqlite")
            same = sum(ours.get(k) == v for k, v in served.items())
            print(f"  {same} of {len(served)} conversations with the served run's replies and token counts, turn "
                  f"for turn; prompt ids equal to vLLM's at {forced.prompts_equal} of "
                  f"{forced.prompts_equal + forced.prompts_differ} turns", file=sys.stderr)
            note = f"same replies as the served concurrency-8 run: {same}/{len(served)} conversations"
        else:
            note = "replies differ: no structured outputs in-process"
        print(f"hf_pairs_per_hour={hf:.1f} hf_vs_c1={hf / rates[1]:.2f} hf_vs_c8={hf / rates[8]:.2f} ({note})")
    print(f"serve_pairs_per_hour_c1={rates[1]:.1f} serve_pairs_per_hour_c8={rates[8]:.1f} "
          f"ratio={rates[8] / rates[1]:.2f} server_limit_pairs_per_hour={limit:.1f} efficiency={rates[8] / limit:.2f}")


if __name__ == "__main__":
    main()
