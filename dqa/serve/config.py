"""What one `dqa serve` process is configured with, and the start-up security rule on --host and the token."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from vrthinker.errors import UsageError

from dqa.serve.auth import TOKEN_ENV, token_or_none
from dqa.serve.lease import LEASE_S

MAX_PROMPT = 2000  # characters; longer prompts are refused with 422
MAX_VIDEOS = 64  # videos in one score request; more are refused with 422
MAX_QUEUE = 256  # queued jobs; past it a new job is refused with 429 and Retry-After
SCORE_CHUNK = 8  # videos a score job scores before the worker looks at the compare lane again


@dataclass(frozen=True)
class ServeConfig:
    """`roots`: the only directories media may come from (symlinks resolved). `judge`: keyword arguments of
    `Judge.from_pretrained` (backend, model, protocol, ...). `token` and `users` ({name: sha256 of their
    token}): with neither, no authentication (loopback only). The limits: see the constants above and
    `dqa.serve.limits.MAX_BODY`."""

    db: str
    roots: tuple[str, ...]
    judge: Mapping[str, Any] = field(default_factory=lambda: {"backend": "metrics"})
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8700
    budget_gb: float = 24.0
    device: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    max_queue: int = MAX_QUEUE
    max_body: int = 1 << 20
    max_videos: int = MAX_VIDEOS
    score_chunk: int = SCORE_CHUNK
    session_seconds: float = 7 * 24 * 3600
    job_lease: float = LEASE_S  # s without a heartbeat after which another process takes a running job (lease.py)

    def __post_init__(self):
        if not self.roots:
            raise UsageError("give at least one --media-root DIR")
        resolved = []
        for r in self.roots:
            p = os.path.realpath(os.path.expanduser(r))
            if not os.path.isdir(p):
                raise UsageError(f"--media-root {r}: not a directory")
            resolved.append(p)
        object.__setattr__(self, "roots", tuple(resolved))
        object.__setattr__(self, "token", token_or_none(self.token))
        for name in ("max_queue", "max_body", "max_videos", "score_chunk", "session_seconds", "job_lease"):
            if getattr(self, name) < (0 if name in ("max_queue", "max_body") else 1e-9):
                raise UsageError(f"{name} must be positive, not {getattr(self, name)}")
        check_host(self.host, self.token or bool(self.users))


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, token: str | bool | None) -> None:
    """Binding beyond this machine without a token (or a --users file) would hand the store to the network:
    refuse. A blank token string is no token (token_or_none)."""
    if isinstance(token, str):
        token = token_or_none(token)
    if not is_loopback(host) and not token:
        raise UsageError(f"--host {host} is reachable from other machines: set a token (--token or ${TOKEN_ENV}, "
                         "or --users FILE) or bind 127.0.0.1")


def check_listen(host: str, port: int, token: str | bool | None) -> None:
    """The checks `dqa serve` and `dqa mcp` make before anything slow, so that a refused start says so at once:
    the host rule (check_host), then the port."""
    check_host(host, token)
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: not a port number")


def auth_summary(token: str | None, users: dict) -> str:
    """How a server checks its callers, for its start line: "token", "N users", both, or "" (loopback only)."""
    return ", ".join(x for x in ("token" if token else "", f"{len(users)} users" if users else "") if x)
