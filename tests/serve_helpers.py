"""A real `dqa serve` process for the tests: started on a free loopback port, stopped or killed by id."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def media_with_escapes(base: Path) -> dict:
    """A media root under `base` with two clips (one in sub/), a corrupt file, and escapes: a file just outside
    the root and a symlink to it from inside. The dict names each path, and the root and `base`."""
    from vrthinker_eval.synth import render_scene, write_corrupt, write_video

    root = base / "media"
    (root / "sub").mkdir(parents=True)
    write_video(root / "a.mp4", render_scene("shapes", 160, 96, 24, seed=1), fps=12)
    write_video(root / "sub" / "b.mp4", render_scene("pan", 160, 96, 24, seed=2), fps=12)
    write_corrupt(root / "corrupt.mp4")
    outside = base / "secret.mp4"
    outside.write_bytes((root / "a.mp4").read_bytes())
    (root / "escape.mp4").symlink_to(outside)
    return {"root": root, "a": root / "a.mp4", "b": root / "sub" / "b.mp4", "corrupt": root / "corrupt.mp4",
            "outside": outside, "base": base}


class Server:
    def __init__(self, db: Path, roots, *args: str, token: str | None = None, port: int | None = None,
                 launcher: str | None = None, env: dict | None = None):
        """`launcher`: a script run instead of `-m dqa.cli` (tests/faulty_serve.py); `env`: extra variables."""
        self.db, self.roots, self.args, self.token = Path(db), [str(r) for r in roots], list(args), token
        self.launcher, self.extra_env = launcher, dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(str(db) + f".{self.port}.log")

    def command(self) -> list[str]:
        roots = [a for r in self.roots for a in ("--media-root", r)]
        entry = [str(ROOT / "tests" / self.launcher)] if self.launcher else ["-m", "dqa.cli"]
        return [sys.executable, *entry, "serve", "--port", str(self.port), "--db", str(self.db), *roots,
                "--backend", "metrics", *self.args]

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "DQA_TOKEN"}
        if self.token:
            env["DQA_TOKEN"] = self.token
        return env | {"PYTHONUNBUFFERED": "1"} | self.extra_env

    def start(self, timeout: float = 40.0) -> Server:
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env(), stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dqa serve exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dqa serve did not answer /health: {self.log.read_text()}")

    def client(self, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers, **kw)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def stderr(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def wait_job(client: httpx.Client, job: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = client.get(f"/v1/jobs/{job}").json()
        if d["state"] in ("done", "failed"):
            return d
        time.sleep(0.1)
    raise AssertionError(f"job {job} still {d['state']} after {timeout} s")
