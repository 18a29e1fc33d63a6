"""The one JSON-lines reader: numbered records of a file, blank lines skipped, a bad line named by file:line."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vrthinker.errors import UsageError


@dataclass(frozen=True)
class BadLine:
    """A line that is not what the reader was asked for: its number (from 1) and why."""

    line: int
    reason: str


def read_text(path: str | os.PathLike, newline: str | None = None) -> str:
    """The file's text (UTF-8, a byte-order mark dropped); UsageError naming the file when it can't be read.

    `newline` as open()'s: "" keeps line endings as written (what the csv module needs)."""
    try:
        with open(path, encoding="utf-8-sig", newline=newline) as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{os.fspath(path)}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{os.fspath(path)}: cannot read it (not UTF-8 text: {e.reason})") from None


def records(path: str | os.PathLike, *, text: str | None = None, objects: bool = True,
            bad: list[BadLine] | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON-lines file.

    `text` is the file's content when the caller has read it already. With `objects` each value must be a
    JSON object. A bad line raises UsageError "FILE:LINE: not JSON (...)" (or "... not a JSON object"),
    unless `bad` is given: then it is appended there and reading goes on, so a caller can report every
    bad line at once.
    """
    name = os.fspath(path)
    for n, line in enumerate((read_text(path) if text is None else text).splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            problem = BadLine(n, f"not JSON ({getattr(e, 'msg', e)})")
        else:
            if not objects or isinstance(value, dict):
                yield n, value
                continue
            problem = BadLine(n, "not a JSON object")
        if bad is None:
            raise UsageError(f"{name}:{problem.line}: {problem.reason}")
        bad.append(problem)
