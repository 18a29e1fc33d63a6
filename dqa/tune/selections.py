"""A person's A/B choices between two videos of one prompt, kept in the project's SQLite store.

A selection says: for `prompt`, on `dimension` (TA, VQ, MQ or OA; OA when not given), `user` preferred
video a or video b. Videos are identified by content (sha256, through the store's file-hash cache), so a
renamed file is the same video and the same pair shown the other way round is the same question.

Two selections ask the same question when they share prompt, dimension, user and the unordered pair of
video contents. If they prefer the same video the second is a *duplicate* and is not recorded (the first
one's id is reported); if they prefer different videos it is a *contradiction*: both are kept and reported,
and the tuner leaves contradicted questions out of training until one of them is deleted. Nothing is
merged silently.

The tables (selections, tune_replies, tune_runs) are vrthinker.store's, like every table of the file;
this module only reads and writes rows.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vrthinker import jsonl
from vrthinker.errors import UsageError, VideoError
from vrthinker.store import Store
from vrthinker.verdict import DIMENSIONS

DEFAULT_DIMENSION = "OA"

@dataclass(frozen=True)
class Selection:
    id: int
    prompt: str
    video_a: str
    video_b: str
    hash_a: str
    hash_b: str
    chosen: str
    dimension: str = DEFAULT_DIMENSION
    user: str = ""
    time: str = ""
    question: str = ""
    source: str = ""
    created: float = 0.0

    @property
    def label(self) -> int:
        """The person's label in the judge's terms (video a is shown as Video 1): 1 or 2."""
        return 1 if self.chosen == "a" else 2

    @property
    def chosen_hash(self) -> str:
        return self.hash_a if self.chosen == "a" else self.hash_b

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """What happened to one offered selection: 'recorded', 'duplicate' or 'contradiction' (recorded too)."""

    status: str
    id: int | None  # the new row, or for a duplicate the existing one
    others: tuple[int, ...] = ()  # duplicate: the earlier id; contradiction: the ids it contradicts
    line: int | None = None  # import: the input line

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        if self.status == "duplicate":
            return f"{where}duplicate of selection #{self.others[0]}: not recorded"
        if self.status == "contradiction":
            ids = ", ".join(f"#{i}" for i in self.others)
            return f"{where}selection #{self.id} contradicts {ids}: both kept, left out of training"
        return f"{where}recorded selection #{self.id}"


def question_key(prompt: str, dimension: str, user: str, hash_a: str, hash_b: str) -> str:
    return json.dumps([prompt.strip(), dimension, user, *sorted((hash_a, hash_b))])


def open_store(path: str | os.PathLike) -> Store:
    """The project's store (its schema holds the selection tables)."""
    return Store(path)


def normalize(prompt: Any, a: Any, b: Any, chosen: Any, dimension: Any = None, user: Any = None,
              when: Any = None, base: Path | None = None) -> dict:
    """Check one selection's fields; raise UsageError naming the first problem."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError("the prompt is empty")
    chosen = str(chosen or "").strip().lower()
    if chosen not in ("a", "b"):
        raise UsageError(f"chosen must be 'a' or 'b', not {chosen!r}")
    dimension = str(dimension or DEFAULT_DIMENSION).strip().upper()
    if dimension not in DIMENSIONS:
        raise UsageError(f"dimension must be one of {', '.join(DIMENSIONS)}, not {dimension!r}")
    paths = []
    for name, v in (("a", a), ("b", b)):
        if not isinstance(v, str) or not v:
            raise UsageError(f"video {name} is missing")
        p = Path(v).expanduser()
        if not p.is_absolute() and base is not None:
            p = base / p
        if not p.is_file():
            raise UsageError(f"{v}: file not found")
        paths.append(str(p.resolve()))
    if when is None or when == "":
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"prompt": prompt.strip(), "video_a": paths[0], "video_b": paths[1], "chosen": chosen,
            "dimension": dimension, "user": str(user or ""), "time": str(when)}


def _hash(store: Store, path: str) -> str:
    try:
        return store.file_hash(path)
    except VideoError as e:
        raise UsageError(str(e)) from None


def add(store: Store, records: Sequence[dict], source: str = "select",
        lines: Sequence[int] | None = None) -> list[Outcome]:
    """Record normalized selections in one transaction; report duplicates and contradictions."""
    hashed = []
    for r in records:
        ha, hb = _hash(store, r["video_a"]), _hash(store, r["video_b"])
        if ha == hb:
            raise UsageError(f"videos a and b have the same content ({r['video_a']})")
        hashed.append((r, ha, hb))
    out: list[Outcome] = []
    with store.transaction() as db:
        for k, (r, ha, hb) in enumerate(hashed):
            q = question_key(r["prompt"], r["dimension"], r["user"], ha, hb)
            chosen_hash = ha if r["chosen"] == "a" else hb
            same, other = [], []
            for row in db.execute("SELECT id, chosen, hash_a, hash_b FROM selections WHERE question=? ORDER BY id",
                                  (q,)):
                (same if (row["hash_a"] if row["chosen"] == "a" else row["hash_b"]) == chosen_hash
                 else other).append(row["id"])
            line = lines[k] if lines else None
            if same and not other:
                out.append(Outcome("duplicate", same[0], (same[0],), line))
                continue
            cur = db.execute(
                "INSERT INTO selections (prompt, video_a, video_b, hash_a, hash_b, chosen, dimension, user, time,"
                " question, source, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (r["prompt"], r["video_a"], r["video_b"], ha, hb, r["chosen"], r["dimension"], r["user"],
                 r["time"], q, source, time.time()))
            new = cur.lastrowid
            out.append(Outcome("contradiction", new, tuple(other), line) if other
                       else Outcome("recorded", new, (), line))
    return out


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], list[int]]:
    """Parse and check a JSONL file of selections; relative video paths are relative to the file.

    Each line: {"prompt", "a", "b", "chosen": "a"|"b", optional "dimension", "user", "time"}. Every bad
    line is reported at once (UsageError) and nothing is recorded.
    """
    p = Path(path)
    records, lines, bad = [], [], []
    found: list[tuple[int, str]] = []
    for n, d in jsonl.records(p, bad=bad):
        try:
            records.append(normalize(d.get("prompt"), d.get("a", d.get("video_a")), d.get("b", d.get("video_b")),
                                     d.get("chosen"), d.get("dimension"), d.get("user"), d.get("time"),
                                     base=p.parent))
            lines.append(n)
        except UsageError as e:
            found.append((n, str(e)))
    problems = [f"line {n}: {why}" for n, why in sorted(found + [(b.line, b.reason) for b in bad])]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UsageError(f"{path}: nothing imported; " + "; ".join(problems[:3]) + more)
    if not records:
        raise UsageError(f"{path}: no selections in it")
    return records, lines


def all_selections(store: Store, after: int = 0) -> list[Selection]:
    rows = store.db.execute("SELECT * FROM selections WHERE id > ? ORDER BY id", (after,)).fetchall()
    return [Selection(**dict(r)) for r in rows]


def contradicted(selections: Iterable[Selection]) -> set[int]:
    """Ids of selections whose question was answered both ways."""
    by_q: dict[str, list[Selection]] = {}
    for s in selections:
        by_q.setdefault(s.question, []).append(s)
    bad: set[int] = set()
    for group in by_q.values():
        if len({s.chosen_hash for s in group}) > 1:
            bad.update(s.id for s in group)
    return bad


def usable(store: Store, after: int = 0) -> tuple[list[Selection], set[int]]:
    """Selections with id > `after` that may be trained on, and the contradicted ids left out.

    Contradictions are judged over the whole table: a new choice can contradict an old one.
    """
    everything = all_selections(store)
    bad = contradicted(everything)
    return [s for s in everything if s.id > after and s.id not in bad], bad
