"""Train/validation split by question, by a fixed rule: a question's side never changes as data grows.

A question is the prompt plus the unordered pair of video contents: every dimension the A/B page records for
one pair, and the same pair shown the other way round, is one question. It is on the validation side when
the first 16 hex digits of sha256(question), read as a fraction of 16**16, are below the fraction. Nothing
else enters the rule, so a run that continues from an adapter validates on questions no run trained on (at
the same fraction).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from dqa.tune.selections import Selection

RULE = "validation when int(sha256(question)[:16], 16) / 16**16 < fraction; question = [prompt, *sorted(hashes)]"


def question(s: Selection) -> str:
    """The question a selection answers: its prompt and the unordered pair of its videos' contents."""
    return json.dumps([s.prompt.strip(), *sorted((s.hash_a, s.hash_b))])


def position(q: str) -> float:
    """Where a question falls in [0, 1): fixed by its text alone."""
    return int(hashlib.sha256(q.encode("utf-8")).hexdigest()[:16], 16) / 16 ** 16


def is_validation(s: Selection, fraction: float) -> bool:
    return position(question(s)) < fraction


@dataclass(frozen=True)
class Split:
    """Selection ids on each side, and the questions they make up."""

    fraction: float
    train: tuple[int, ...]
    val: tuple[int, ...]
    train_questions: int
    val_questions: int

    def to_dict(self) -> dict:
        return {"rule": RULE, "fraction": self.fraction, "train": list(self.train), "val": list(self.val),
                "train_questions": self.train_questions, "val_questions": self.val_questions}


def split(selections: Sequence[Selection], fraction: float) -> Split:
    train, val, tq, vq = [], [], set(), set()
    for s in selections:
        q = question(s)
        if position(q) < fraction:
            val.append(s.id)
            vq.add(q)
        else:
            train.append(s.id)
            tq.add(q)
    return Split(fraction, tuple(train), tuple(val), len(tq), len(vq))
