"""The OpenAI-compatible client's peak memory on a 64-pair batch: this tree against a baseline commit, in one run.

A fake chat-completions server (its own process, so its memory is not counted) answers each conversation's
first turn with a tool call for two more frames and its second with an answer. The client is `judge batch`'s
code (vrthinker.batch.run_batch, --concurrency 8, both orders, the card profile) over N pairs of distinct
noise videos (448x448 noise does not compress: each frame is ~0.8 MB of base64, as a detailed real frame is).
Each client runs in a fresh process; its peak RSS (VmHWM) is what is compared (its RSS once connected,
before the batch, is printed beside it: imports and the checkpoint's tokenizer, if any, are in there). The
judge's own frame-grid cache is the same in both (--grid-cache-mb), so the rest of the difference is the
client's caches.

    python scripts/bench_client_memory.py [--pairs 64] [--baseline 8fde35f]

The baseline is the project at --baseline (git archive into a temporary folder; --baseline-client puts
another commit's vrthinker/backends/openai in it): by default the last commit whose client still had its
fixed caches (base64 three times over, images by count). Last line:
`pairs=N before_peak_rss_mb=A after_peak_rss_mb=B ratio=B/A before_s=S after_s=T same_judgments=yes`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = r'''
import hashlib, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send({"data": [{"id": "fake-vl", "owned_by": "vllm", "root": "/nowhere/fake-vl"}]})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(0.02)
        msgs = body["messages"]
        urls = [c["image_url"]["url"] for m in msgs if isinstance(m["content"], list) for c in m["content"]
                if c["type"] == "image_url"]
        h = hashlib.sha256(urls[0].encode() + urls[-1].encode()).digest()
        if not any(m["role"] == "assistant" for m in msgs):
            a, b = 1 + h[0] % 60, 64 + h[1] % 60
            text = ('<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [%d, %d]}}</tool_call>'
                    % (a, b))
        else:
            w = 1 + h[2] % 2
            text = f"<Answer>TA={w}, VQ={w}, MQ={w}, OA={w}</Answer>"
        self._send({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20}})

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
'''

CLIENT = r'''
import inspect, json, sys, time
import vrthinker
from vrthinker.backends.openai import OpenAIBackend
from vrthinker.batch import judged_items, read_pairs, run_batch
from vrthinker.judge import Judge
from vrthinker.store import Store

url, pairs, db, grid_mb, cache_mb = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
kw = {}
if cache_mb != "default" and "cache_mb" in inspect.signature(OpenAIBackend).parameters:
    kw["cache_mb"] = float(cache_mb)
b = OpenAIBackend([url], **kw)
from vrthinker.protocol import Profile
judge = Judge(b, Profile.load("card"), max_turns=2, max_new_tokens=64, grid_cache_mb=grid_mb)
rows = read_pairs(pairs)
ready = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")) / 1024
t0 = time.perf_counter()
with Store(db) as store:
    s = run_batch(judge, rows, store, job="mem", concurrency=8)
    labels = {it.item.item_id: [dict(it.forward.labels), dict(it.reverse.labels)] for it in judged_items(store, "mem")}
took = time.perf_counter() - t0
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
media = getattr(b, "media", None)
print(json.dumps({"peak_rss_mb": hwm / 1024, "ready_rss_mb": ready, "seconds": took, "judged": s.judged,
                  "labels": labels, "code": vrthinker.__file__,
                  "budget_peak_mb": media.peak_bytes / 2**20 if media else None}))
'''


def make_pairs(d: Path, n: int) -> Path:
    """N pairs of distinct 448x448 noise videos (12 frames each, MPEG-4: quick to write)."""
    import numpy as np

    from vrthinker_eval.synth import write_video

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        paths = []
        for side in ("a", "b"):
            frames = rng.integers(0, 256, (12, 448, 448, 3), dtype=np.uint8)
            paths.append(str(write_video(d / f"{side}{i}.mp4", frames, fps=12, codec="mpeg4")))
        rows.append({"id": f"p{i}", "video1": paths[0], "video2": paths[1], "prompt": f"scene {i}"})
    out = d / "pairs.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def run_client(tree: Path, url: str, pairs: Path, db: Path, grid_mb: float, cache_mb: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, "-c", CLIENT, url, str(pairs), str(db), str(grid_mb), cache_mb],
                       env=env, capture_output=True, text=True, cwd=tree, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"client in {tree} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if not out["code"].startswith(str(tree)):
        raise SystemExit(f"the client imported {out['code']}, not the tree {tree}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--baseline", default="8fde35f", help="the project measured as 'before'")
    ap.add_argument("--baseline-client", default=None,
                    help="the client package measured as 'before' (default: --baseline's)")
    ap.add_argument("--cache-mb", default="default", help="the client's budget in the 'after' run (default: its own)")
    ap.add_argument("--grid-cache-mb", type=float, default=256, help="the judge's frame-grid cache, both runs")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-client-mem-") as tmp:
        tmp = Path(tmp)
        before_tree = tmp / "before"
        before_tree.mkdir()
        client = before_tree / "vrthinker" / "backends" / "openai"
        for ref, paths in ((a.baseline, ["vrthinker", "judge_prompts"]),
                           (a.baseline_client or a.baseline, ["vrthinker/backends/openai"])):
            if paths[0] != "vrthinker" and client.exists():
                shutil.rmtree(client)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *paths], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before_tree)], input=archive, check=True)
        pairs = make_pairs(tmp / "clips", a.pairs)
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
            before = run_client(before_tree, url, pairs, tmp / "before.sqlite", a.grid_cache_mb, "default")
            after = run_client(ROOT, url, pairs, tmp / "after.sqlite", a.grid_cache_mb, a.cache_mb)
        finally:
            server.terminate()
            server.wait(30)
    same = before["labels"] == after["labels"] and before["judged"] == after["judged"] == a.pairs
    print(f"before (client {a.baseline_client or a.baseline}, project {a.baseline}): "
          f"RSS connected {before['ready_rss_mb']:.0f} MB, peak {before['peak_rss_mb']:.0f} MB, "
          f"{before['seconds']:.1f} s")
    print(f"after (this tree, budget peak {after['budget_peak_mb']:.0f} MB): RSS connected {after['ready_rss_mb']:.0f} "
          f"MB, peak {after['peak_rss_mb']:.0f} MB, {after['seconds']:.1f} s")
    print(f"pairs={a.pairs} before_peak_rss_mb={before['peak_rss_mb']:.0f} "
          f"after_peak_rss_mb={after['peak_rss_mb']:.0f} ratio={after['peak_rss_mb'] / before['peak_rss_mb']:.2f} "
          f"before_s={before['seconds']:.1f} "
          f"after_s={after['seconds']:.1f} same_judgments={'yes' if same else 'no'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
