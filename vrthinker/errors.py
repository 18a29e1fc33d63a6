"""Typed errors: each names what went wrong and what to change, so the CLI can print one line."""
from __future__ import annotations


class JudgeError(Exception):
    """Base class for errors caused by input or setup, not by a bug."""


class VideoError(JudgeError):
    """A video could not be used: missing, unreadable, corrupt, empty or too short."""

    def __init__(self, path: str, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class UsageError(JudgeError):
    """A bad argument: empty prompt, unknown profile, conflicting options."""


class ModelLoadError(JudgeError):
    """The model or processor could not be loaded (bad path, no weights reachable offline, ...)."""


class ServerError(JudgeError):
    """A served backend's request that still failed after its retries (every server tried); says why."""
