"""Judge a loaded benchmark through the judgment store and join each example with its judgments.

The join gives `vrthinker_eval.metrics.evaluate` its inputs: human labels, the judge's (combined) labels, the
forward and reverse judgments for position consistency, and score differences for score judges. Every pair
given is counted: one whose judgment failed (an undecodable video, a server error, a conversation that ended
without an answer: token or turn limit, no answer, a malformed tool call) keeps no labels, so it is wrong in
every metric, and is listed with its reason; `Joined.judged_only()` gives the judged pairs alone.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vrthinker.batch import PairRow, run_batch
from vrthinker.verdict import DIMENSIONS

from vrthinker_eval.benchmarks import Example, Loaded


# how a judgment ends without an answer: the pair counts as failed (wrong in every metric, and named)
FAILED_REASONS = ("bad_video", "server_error", "missing_file", "unreadable", "token_limit", "turn_limit",
                  "no_answer", "malformed_tool_call")


@dataclass(frozen=True)
class Joined:
    """Per given example (same order): labels and judgments. A failed pair (no judgment, or one that ended
    without an answer) has no predicted labels, so it counts as wrong; `failed` gives its (id, reason,
    detail) and `judged[i]` says whether example i was judged."""

    examples: tuple[Example, ...]
    human: tuple[Mapping[str, int | None], ...]
    predicted: tuple[Mapping[str, int | None], ...]
    forward: tuple[Mapping[str, int | None] | None, ...]
    reverse: tuple[Mapping[str, int | None] | None, ...]
    scores: tuple[Mapping[str, float] | None, ...]
    judged: tuple[bool, ...]
    failed: tuple[tuple[str, str, str], ...]
    # the judge's label probabilities per example (both orders averaged when judged in both), None where none
    probabilities: tuple[Mapping[str, Mapping[str, float]] | None, ...] = ()

    @property
    def coverage(self) -> float | None:
        """Judged pairs over given pairs."""
        return sum(self.judged) / len(self.judged) if self.judged else None

    def reasons(self) -> dict[str, int]:
        """Failed pairs per reason, most frequent first."""
        counts: dict[str, int] = {}
        for _, reason, _ in self.failed:
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def judged_only(self) -> "Joined":
        """The judged pairs alone (for accuracy over judged pairs, reported beside the honest figure)."""
        keep = [i for i, ok in enumerate(self.judged) if ok]

        def pick(xs):
            return tuple(xs[i] for i in keep)

        return Joined(pick(self.examples), pick(self.human), pick(self.predicted), pick(self.forward),
                      pick(self.reverse), pick(self.scores), tuple(True for _ in keep), ())


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
    human, predicted, forward, reverse, scores, judged = [], [], [], [], [], []
    probabilities: list = []
    failed: list[tuple[str, str, str]] = []
    none = {d: None for d in DIMENSIONS}
    for ex, row in zip(loaded.examples, rows):
        out = outcomes.get(row.item_id)
        item = store.item(job, row.item_id) if out is not None and out.status != "bad" else None
        f = store.judgment(item.key_forward) if item else None
        r = store.judgment(item.key_reverse) if item else None
        why = _failure(out, f, r, orders)
        human.append(ex.labels)
        judged.append(why is None)
        if why is not None:  # no answer: counted wrong (no labels), named with its reason
            failed.append((ex.id, *why))
            predicted.append(none)
            forward.append(None)
            reverse.append(None)
            scores.append(None)
            probabilities.append(None)
            continue
        predicted.append(out.labels)
        probabilities.append(out.probabilities)
        forward.append(dict(f.labels) if f else None)
        reverse.append(dict(r.labels) if r else None)
        scores.append(score_differences(f.verdict) if f else None)
    return Joined(tuple(loaded.examples), tuple(human), tuple(predicted), tuple(forward), tuple(reverse),
                  tuple(scores), tuple(judged), tuple(failed), tuple(probabilities))


def _failure(out: Any, forward: Any, reverse: Any, orders: str) -> tuple[str, str] | None:
    """(reason, detail) when the pair has no answer: not judged, or an order that ended without one."""
    if out is None:
        return "not_judged", "the run stopped before this pair"
    if out.status == "bad":
        return out.reason or "bad", out.detail or ""
    needed = [("forward", forward)] + ([("reverse", reverse)] if orders == "both" else [])
    for name, j in needed:
        if j is None:
            return "not_judged", f"no {name} judgment stored"
        if j.reason in FAILED_REASONS:
            return j.reason, (f"{name}: " if orders == "both" else "") + (j.detail or "")
    return None
