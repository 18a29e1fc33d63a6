"""Judge a loaded benchmark through the judgment store and join each example with its judgments.

The join gives `vrthinker_eval.metrics.evaluate` its inputs: human labels, the judge's (combined) labels, the
forward and reverse judgments for position consistency, and score differences for score judges. Pairs
whose video could not be decoded are a data problem, not the judge's: they are left out and listed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vrthinker.batch import PairRow, run_batch

from vrthinker_eval.benchmarks import Example, Loaded


@dataclass(frozen=True)
class Joined:
    """Per evaluated example (same order): labels and judgments; `bad` the (id, reason) of pairs left out."""

    examples: tuple[Example, ...]
    human: tuple[Mapping[str, int | None], ...]
    predicted: tuple[Mapping[str, int | None], ...]
    forward: tuple[Mapping[str, int | None] | None, ...]
    reverse: tuple[Mapping[str, int | None] | None, ...]
    scores: tuple[Mapping[str, float] | None, ...]
    bad: tuple[tuple[str, str], ...]


def score_differences(verdict: Mapping[str, Any] | None) -> dict[str, float] | None:
    """Score differences s1 - s2 per dimension from a stored verdict, for score judges; None otherwise.

    A judge may put them in `extra["score_diff"]`; the weight-free metrics judge stores per-video VQ and MQ
    in `extra["scores"]`, whose overall is their mean (as its OA label is decided).
    """
    extra = (verdict or {}).get("extra") or {}
    if isinstance(extra.get("score_diff"), Mapping):
        return {d: float(v) for d, v in extra["score_diff"].items() if v is not None}
    scores = extra.get("scores")
    if not isinstance(scores, Mapping) or not {"video1", "video2"} <= set(scores):
        return None
    s1, s2 = scores["video1"], scores["video2"]
    out: dict[str, float] = {}
    for d, key in (("VQ", "vq"), ("MQ", "mq")):
        if s1.get(key) is not None and s2.get(key) is not None:
            out[d] = float(s1[key]) - float(s2[key])
    if "VQ" in out and "MQ" in out:
        out["OA"] = (out["VQ"] + out["MQ"]) / 2
    return out or None


def pair_rows(examples: Sequence[Example]) -> list[PairRow]:
    """One store row per example; a repeated benchmark id gets its position appended, so each is its own."""
    rows, seen = [], set()
    for k, ex in enumerate(examples, 1):
        item_id = ex.id if ex.id not in seen else f"{ex.id}#{k}"
        seen.add(item_id)
        rows.append(PairRow(item_id, ex.video1, ex.video2, ex.prompt, int(ex.meta.get("row", k)), k))
    return rows


def judge_benchmark(judge: Any, loaded: Loaded, store: Any, *, job: str, orders: str = "one", ident: Any = None,
                    on_item: Callable[[Any], None] | None = None, concurrency: int = 1) -> Joined:
    """Judge every example not already in `store` for this judge, then join each with its judgments."""
    rows = pair_rows(loaded.examples)
    outcomes = {}

    def step(out) -> None:
        outcomes[out.item_id] = out
        if on_item is not None:
            on_item(out)

    run_batch(judge, rows, store, job=job, orders=orders, ident=ident, on_item=step, concurrency=concurrency)
    used, human, predicted, forward, reverse, scores = [], [], [], [], [], []
    bad: list[tuple[str, str]] = []
    for ex, row in zip(loaded.examples, rows):
        out = outcomes.get(row.item_id)
        if out is None or out.status == "bad":  # an undecodable video: a data problem, not the judge's
            bad.append((ex.id, f"{out.reason}: {out.detail}" if out else "not judged"))
            continue
        item = store.item(job, row.item_id)
        f = store.judgment(item.key_forward) if item else None
        r = store.judgment(item.key_reverse) if item else None
        used.append(ex)
        human.append(ex.labels)
        predicted.append(out.labels)
        forward.append(dict(f.labels) if f else None)
        reverse.append(dict(r.labels) if r else None)
        scores.append(score_differences(f.verdict) if f else None)
    return Joined(tuple(used), tuple(human), tuple(predicted), tuple(forward), tuple(reverse), tuple(scores),
                  tuple(bad))
