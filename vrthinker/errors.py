"""Typed errors: each names what went wrong and what to change, so the CLI can print one line."""
from __future__ import annotations


# How an option is spelled in an error: as a CLI flag while a command line runs (`guarded` sets it), else as the
# Python argument a notebook user passed. A plain flag: the CLI is one user in one process, and worker threads
# raise errors too.
_spelling = {"cli": False}


def set_cli_spelling(on: bool) -> None:
    _spelling["cli"] = on


def arg(name: str, value=None) -> str:
    """Option `name` as the user gave it: `--max-turns 3` on the command line, `max_turns=3` from Python."""
    if _spelling["cli"]:
        return f"--{name.replace('_', '-')}" + ("" if value is None else f" {value}")
    return f"{name}=" + ("" if value is None else repr(value))


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
