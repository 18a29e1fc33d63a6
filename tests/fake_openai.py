"""A fake OpenAI-compatible server for the client's error paths (http.server in a thread on 127.0.0.1).

/v1/models names one model; each POST takes the next step of a script: (status, body), (status, body, headers),
"slow" (a reply after 2 s) or "hang" (no reply for `hang_s`); with the script spent, a 200 answer. Each
request's body and arrival time are recorded. A real server will not produce these on demand.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply_json(text: str, finish: str = "stop", prompt_tokens: int = 100) -> str:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7}})


def synthetic_pairs(folder, n: int, seed: int) -> list:
    """`n` pairs of small real clips (shapes against pan, seeds from `seed` and `seed` + 10) written under
    `folder` with their pairs.jsonl, read back as `judge batch` reads it: a batch for the fake server."""
    from vrthinker_eval.synth import render_scene, write_video

    from vrthinker.batch import read_pairs

    rows = []
    for i in range(n):
        a = write_video(folder / f"a{i}.mp4", render_scene("shapes", 160, 96, 12, seed=seed + i), fps=12)
        b = write_video(folder / f"b{i}.mp4", render_scene("pan", 160, 96, 12, seed=seed + 10 + i), fps=12)
        rows.append({"id": f"p{i}", "video1": str(a), "video2": str(b), "prompt": f"scene {i}"})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_pairs(folder / "pairs.jsonl")


class Fake:
    """/v1/models and /v1/chat/completions answering from a script (see the module docstring)."""

    def __init__(self, script: list, model: dict | None = None, answer=None, delay_s: float = 0.0,
                 hang_s: float = 60.0):
        self.script, self.calls, self.times = list(script), [], []
        self.in_flight = self.max_in_flight = 0
        self.closing = threading.Event()
        lock = threading.Lock()
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, body: str, headers: dict | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, json.dumps({"data": [model or {"id": "fake-vl", "owned_by": "vllm",
                                                               "root": "/nowhere/fake-vl"}]}))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.calls.append(body)
                    fake.times.append(time.monotonic())
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    step = fake.script.pop(0) if fake.script else None
                try:
                    time.sleep(delay_s)
                    if step == "hang":
                        fake.closing.wait(hang_s)
                        return
                    if step is None:
                        text = answer(body) if answer else "<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"
                        step = (200, reply_json(text))
                    if step == "slow":
                        time.sleep(2)
                        step = (200, reply_json("late"))
                finally:
                    with lock:
                        fake.in_flight -= 1
                self._send(*step)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Blackhole:
    """A host that never accepts a connection: a listening socket whose backlog is full, so a new connection's
    SYN goes unanswered (as a dead or firewalled host) and only a connect timeout ends the wait."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self.fillers = []
        for _ in range(8):  # fill the accept queue; the kernel then drops further SYNs
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        time.sleep(0.2)

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()
