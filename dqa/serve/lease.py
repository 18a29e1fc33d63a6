"""Who runs a job: each process on a store is an `Owner` (host, pid, a random token). A running job records its
owner, a heartbeat the owner refreshes while it holds the job, and the owner's lease; another process puts a
running job back in the queue only when its owner is gone: a dead pid on this host, or no heartbeat for
longer than the lease. So two processes on one store (two `dqa serve`, or `dqa serve` beside `dqa mcp`) never
run each other's jobs, and a job whose process was killed runs again, once.
"""
from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any, Mapping

LEASE_S = 30.0  # a running job whose owner has not beaten for this long is abandoned
BEAT_MAX_S = 5.0  # the owner beats at least this often (and 6 times per lease)
_HERE: set[str] = set()  # the owners made in this process


def heartbeat_every(lease_s: float) -> float:
    """Seconds between an owner's heartbeats (and its look for abandoned jobs): well inside the lease."""
    return min(BEAT_MAX_S, lease_s / 6)


def this_host() -> str:
    """The host name and the pid namespace: a pid names one process only inside its namespace (containers
    on one machine may share a host name)."""
    try:
        ns = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        ns = ""
    name = socket.gethostname()
    return f"{name}/{ns}" if ns else name


@dataclass(frozen=True)
class Owner:
    """One process's claim on the jobs it runs."""

    host: str
    pid: int
    token: str  # random, per process: a reused pid is never the same owner

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def this_process(cls) -> Owner:
        owner = cls(this_host(), os.getpid(), secrets.token_hex(8))
        _HERE.add(owner.id)
        return owner


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid runs on this host (a zombie, killed but not yet reaped, does not)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process, alive
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: kill's answer stands
    return state not in ("Z", "X")


def abandoned(row: Mapping[str, Any], me: Owner, now: float, lease_s: float) -> str | None:
    """Why the owner of this running job is gone (the job may be queued again), or None while it may be alive.

    `row`: the job's owner, owner_host, owner_pid, heartbeat, lease and started. Its own lease counts (the
    owner's setting), else `lease_s`."""
    if row["owner"] is None:
        return "no owner recorded (started before owners were kept)"
    if row["owner"] != me.id and row["owner_host"] == me.host:
        if not pid_alive(row["owner_pid"]):
            return f"process {row['owner_pid']} is gone"
        if row["owner_pid"] == os.getpid() and row["owner"] not in _HERE:
            return f"process {row['owner_pid']} is gone (this process has its pid now)"
    lease = row["lease"] or lease_s
    beat = row["heartbeat"] or row["started"] or 0.0
    if now - beat > lease:
        return f"no heartbeat for {now - beat:.0f} s (lease {lease:g} s)"
    return None
