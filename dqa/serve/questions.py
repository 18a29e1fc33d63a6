"""A/B questions for a person: asked over HTTP, answered on the page or the API, stored as selections.

An answer 'a' or 'b' becomes a row of `selections` (through `dqa.tune.selections.add`, the same path as
`dqa select`), so `dqa tune` learns from it. A tie says neither is better: it is kept with the question
but makes no selection (a preference pair needs a winner).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from vrthinker.errors import JudgeError
from vrthinker.verdict import DIMENSIONS

from dqa.serve.errors import ApiError
from dqa.serve.tables import Connections

CHOICES = ("a", "b", "tie")


@dataclass(frozen=True)
class Answer:
    dimension: str
    chosen: str
    user: str
    selection: int | None
    status: str
    created: float

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "chosen": self.chosen, "user": self.user,
                "selection": self.selection, "status": self.status, "created": self.created}


@dataclass(frozen=True)
class Question:
    id: int
    prompt: str
    a: str
    b: str
    dimension: str | None
    job: str | None
    created: float
    answers: tuple[Answer, ...] = ()

    @property
    def dimensions(self) -> tuple[str, ...]:
        """What the person is asked about: the one dimension given, else all four."""
        return (self.dimension,) if self.dimension else DIMENSIONS

    @property
    def answered(self) -> bool:
        return bool(self.answers)

    def seen_by(self, user: str | None) -> Question:
        """The question with only `user`'s answers (None: everyone's), as that person's page shows it."""
        return self if user is None else replace(self, answers=tuple(a for a in self.answers if a.user == user))

    def to_dict(self) -> dict:
        return {"question": self.id, "prompt": self.prompt, "a": self.a, "b": self.b, "dimension": self.dimension,
                "dimensions": list(self.dimensions), "created": self.created, "answered": self.answered,
                "answers": [x.to_dict() for x in self.answers]}


def dimension_of(value: Any, default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    d = str(value).strip().upper()
    if d not in DIMENSIONS:
        raise ApiError(422, "bad_dimension", f"dimension must be one of {', '.join(DIMENSIONS)}, not {value!r}")
    return d


class Questions:
    def __init__(self, conns: Connections):
        self.conns = conns
        self._answering = threading.Lock()  # a selection and its answer row are written as one step

    def ask(self, prompt: str, a: str, b: str, dimension: str | None, job: str | None) -> Question:
        """A new question, or the one already asked with the same prompt, videos and dimension (so a request
        sent again, after a lost reply or a restart, makes no second question; each person answers it once)."""
        store = self.conns.get()
        with store.transaction() as db:
            row = db.execute("SELECT id FROM ab_questions WHERE prompt=? AND video_a=? AND video_b=? AND dimension IS ?"
                             " ORDER BY id LIMIT 1", (prompt, a, b, dimension)).fetchone()
            if row is not None:
                qid = row[0]
            else:
                qid = db.execute("INSERT INTO ab_questions (prompt, video_a, video_b, dimension, job, created) "
                                 "VALUES (?,?,?,?,?,?)", (prompt, a, b, dimension, job, time.time())).lastrowid
        return self.get(qid)

    def get(self, qid: int) -> Question | None:
        db = self.conns.get().db
        row = db.execute("SELECT * FROM ab_questions WHERE id=?", (qid,)).fetchone()
        if row is None:
            return None
        answers = tuple(Answer(r["dimension"], r["chosen"], r["user"], r["selection"], r["status"], r["created"])
                        for r in db.execute("SELECT * FROM ab_answers WHERE question=? ORDER BY created, dimension",
                                            (qid,)))
        return Question(row["id"], row["prompt"], row["video_a"], row["video_b"], row["dimension"], row["job"],
                        row["created"], answers)

    def next_open(self, after: int = 0, user: str | None = None) -> Question | None:
        """The oldest question with no answer yet (after id `after`, wrapping round to the start); with `user`,
        the oldest that this user has not answered (each person answers every question once)."""
        db = self.conns.get().db
        mine = "" if user is None else " AND a.user=?"
        sql = ("SELECT id FROM ab_questions q WHERE NOT EXISTS (SELECT 1 FROM ab_answers a WHERE a.question=q.id"
               f"{mine}) AND q.id > ? ORDER BY q.id LIMIT 1")
        args = (lambda start: (user, start) if user is not None else (start,))
        row = db.execute(sql, args(after)).fetchone() or (db.execute(sql, args(0)).fetchone() if after else None)
        return self.get(row[0]) if row else None

    def answer(self, qid: int, chosen: Any, dimension: Any = None, user: Any = None) -> Answer:
        """Record one answer; 404 unknown question, 409 already answered (same dimension and user)."""
        from dqa.tune.selections import add, normalize

        q = self.get(qid)
        if q is None:
            raise ApiError(404, "not_found", f"no A/B question {qid}")
        c = str(chosen or "").strip().lower()
        if c not in CHOICES:
            raise ApiError(422, "bad_choice", f"chosen must be 'a', 'b' or 'tie', not {chosen!r}")
        d = dimension_of(dimension, q.dimension or "OA")
        if d not in q.dimensions:
            raise ApiError(422, "bad_dimension", f"question {qid} asks about {', '.join(q.dimensions)}, not {d}")
        if user is not None and not isinstance(user, str):
            raise ApiError(422, "bad_user", "user must be text")
        u = (user or "").strip()[:200]
        store = self.conns.get()
        with self._answering:
            q = self.get(qid)  # read again under the lock: an answer may have landed since the read above
            if any(x.dimension == d and x.user == u for x in q.answers):
                raise ApiError(409, "already_answered", f"question {qid} already has an answer on {d}"
                                                        + (f" from {u}" if u else ""))
            selection, status = None, "tie"
            if c != "tie":
                try:
                    rec = normalize(q.prompt, q.a, q.b, c, d, u)
                    outcome = add(store, [rec], source=f"serve:ab/{qid}")[0]
                except JudgeError as e:
                    raise ApiError(422, "bad_selection", str(e)) from None
                selection, status = outcome.id, outcome.status
            now = time.time()
            try:
                with store.transaction() as db:
                    db.execute("INSERT INTO ab_answers VALUES (?,?,?,?,?,?,?)",
                               (qid, d, u, c, selection, status, now))
            except sqlite3.IntegrityError:  # another process on the same store answered first
                raise ApiError(409, "already_answered", f"question {qid} already has an answer on {d}"
                                                        + (f" from {u}" if u else "")) from None
        return Answer(d, c, u, selection, status, now)

