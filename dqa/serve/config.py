"""What one `dqa serve` process is configured with, and the start-up security rule on --host and the token."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from vrthinker.errors import UsageError

MAX_PROMPT = 2000  # characters; longer prompts are refused with 422
TOKEN_ENV = "DQA_TOKEN"


@dataclass(frozen=True)
class ServeConfig:
    """`roots`: the only directories media may come from (symlinks resolved). `judge`: keyword arguments of
    `Judge.from_pretrained` (backend, model, protocol, ...). `token`: None means no authentication."""

    db: str
    roots: tuple[str, ...]
    judge: Mapping[str, Any] = field(default_factory=lambda: {"backend": "metrics"})
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8700
    budget_gb: float = 24.0
    device: str | None = None

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
        if self.token is not None and not self.token.strip():
            object.__setattr__(self, "token", None)
        check_host(self.host, self.token)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, token: str | None) -> None:
    """Binding beyond this machine without a token would hand the store to the network: refuse."""
    if not is_loopback(host) and not token:
        raise UsageError(f"--host {host} is reachable from other machines: set a token (--token or ${TOKEN_ENV}) "
                         "or bind 127.0.0.1")
