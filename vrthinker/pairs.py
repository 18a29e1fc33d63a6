"""Preference pairs for DPO from stored judgments and rankings: prompt, chosen video, rejected video.

One JSON line per pair, every line with the same fields (so `datasets.load_dataset("json", ...)` reads it):

- `prompt`: the text prompt both videos were generated from.
- `chosen`, `rejected`: video paths, the preferred one first. This is what a video-generator DPO trainer
  (Diffusion-DPO / VideoDPO style: a prompt, a winning and a losing sample) takes.
- `dimension`: the dimension the preference is on (TA, VQ, MQ or OA).
- `labels`: all four dimensions for (chosen, rejected) in the judge's convention: 1 = chosen better,
  2 = rejected better, 0 = tie, null = missing (for rankings: from the scores on each ranked dimension).
- `confidence` in [0, 1]: 1.0 when both orders agree, 0.5 when judged in one order only, 0.25 when one
  order picks the winner and the other calls it a tie (kept only with allow_inconsistent); where the judge
  read label probabilities, instead the chosen video's probability on the dimension, averaged over both orders
  with the reverse mapped back (position-debiased; one order's alone when judged in one); for a ranking,
  P(chosen beats rejected) from the Bradley-Terry fit and its covariance (`vrthinker.rank.p_beats`): above
  0.5, and near 0.5 when the gap rests on little evidence.
- `chosen_sha256`, `rejected_sha256`: the videos' content hashes (what duplicates are found by).
- `source`: "judgment" or "ranking"; `job` and `id`: where it came from.
- `judgments`: the ordered judgments behind a judgment pair (key, order, labels as the model gave them
  with 1 = the video shown first, reason); empty for a ranking pair.
- `score_gap`, `chosen_score`, `rejected_score`: the ranking scores (null for judgment pairs).
- `model_id`, `protocol`: the judge that produced it.

Ties and missing labels never make a pair; orders that pick opposite winners never make one either.
Two pairs on the same prompt, dimension and videos (by content: the same video under another path, or
from a ranking and a judgment, is the same video) that prefer opposite videos are both dropped, and
duplicates in the same direction are merged into the most confident one.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations

from vrthinker.batch import JudgedItem, judged_items
from vrthinker.errors import UsageError
from vrthinker.orders import swap
from vrthinker.rank import p_beats
from vrthinker.store import RankEntry, Store
from vrthinker.verdict import DIMENSIONS

CONFIDENCE_BOTH = 1.0
CONFIDENCE_ONE_ORDER = 0.5
CONFIDENCE_HALF_TIE = 0.25


@dataclass(frozen=True)
class PreferencePair:
    """One chosen/rejected pair and the evidence behind it."""

    prompt: str
    chosen: str
    rejected: str
    dimension: str
    labels: dict[str, int | None]
    confidence: float
    source: str
    job: str
    id: str
    judgments: tuple[dict, ...] = ()
    score_gap: float | None = None
    chosen_score: float | None = None
    rejected_score: float | None = None
    model_id: str = ""
    protocol: str = ""
    chosen_sha256: str | None = None  # content hashes: None only for a ranking stored before they were kept
    rejected_sha256: str | None = None

    def content(self) -> frozenset[str]:
        """The two videos by content (by real path where a content hash is unknown)."""
        return frozenset((self.chosen_sha256 or os.path.realpath(self.chosen),
                          self.rejected_sha256 or os.path.realpath(self.rejected)))

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected,
                "dimension": self.dimension, "labels": {d: self.labels.get(d) for d in DIMENSIONS},
                "confidence": float(self.confidence), "source": self.source, "job": self.job, "id": self.id,
                "judgments": [dict(j) for j in self.judgments], "score_gap": self.score_gap,
                "chosen_score": self.chosen_score, "rejected_score": self.rejected_score,
                "model_id": self.model_id, "protocol": self.protocol,
                "chosen_sha256": self.chosen_sha256, "rejected_sha256": self.rejected_sha256}


@dataclass(frozen=True)
class PairsResult:
    """The pairs kept, and how many candidates were left out and why."""

    pairs: tuple[PreferencePair, ...]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    contradictions: int = 0  # pairs dropped because another preferred the opposite video
    merged: int = 0  # duplicates folded into a more confident pair


def _flip(labels) -> dict[str, int | None]:
    return swap(labels)


def from_item(j: JudgedItem, dimension: str, *, require_consistent: bool = False,
              allow_inconsistent: bool = False) -> tuple[PreferencePair | None, str]:
    """A pair from one judged item, or None and why not."""
    f, r = j.forward, j.reverse
    if f is None or j.verdict is None:
        return None, "bad"
    votes = [f.labels.get(dimension)] + ([swap(r.labels)[dimension]] if r is not None else [])
    present = [v for v in votes if v is not None]
    sides = {v for v in present if v != 0}
    if not present:
        return None, "missing"
    if len(sides) == 2:
        return None, "inconsistent"
    if not sides:
        return None, "tie"
    side = sides.pop()
    if len(present) == 2 and all(v == side for v in present):
        confidence = CONFIDENCE_BOTH
    elif len(present) == 1:
        if require_consistent:
            return None, "one_order"
        confidence = CONFIDENCE_ONE_ORDER
    else:  # one order picks a winner, the other calls it a tie
        if require_consistent or not allow_inconsistent:
            return None, "inconsistent"
        confidence = CONFIDENCE_HALF_TIE
    probs = (j.verdict.probabilities or {}).get(dimension)
    if probs is not None:  # the judge's own figure: the winner's probability, both orders averaged (debiased)
        confidence = round(float(probs[str(side)]), 6)
    it = j.item
    labels = {d: j.verdict.labels.get(d) for d in DIMENSIONS}
    chosen, rejected = (it.video1, it.video2) if side == 1 else (it.video2, it.video1)
    hashes = (f.hashA, f.hashB) if side == 1 else (f.hashB, f.hashA)  # forward: video1 shown first
    if side == 2:
        labels = _flip(labels)
    behind = tuple({"key": o.key, "order": name, "labels": {d: o.labels.get(d) for d in DIMENSIONS},
                    "reason": o.reason} for name, o in (("forward", f), ("reverse", r)) if o is not None)
    return PreferencePair(prompt=it.prompt, chosen=chosen, rejected=rejected, dimension=dimension, labels=labels,
                          confidence=confidence, source="judgment", job=it.job, id=it.item_id,
                          judgments=behind, model_id=f.model_id, protocol=f.protocol,
                          chosen_sha256=hashes[0], rejected_sha256=hashes[1]), ""


def from_rankings(entries: Sequence[RankEntry], dimension: str) -> tuple[list[PreferencePair], dict[str, int]]:
    """Every pair of candidates ranked on `dimension` for one prompt, better one chosen; equal scores skipped."""
    scores: dict[tuple[str, str, str], dict[str, RankEntry]] = defaultdict(dict)
    for e in entries:
        scores[(e.job, e.prompt, e.dimension)][e.candidate] = e
    out, skipped = [], defaultdict(int)
    for (job, prompt, dim), ranked in sorted(scores.items()):
        if dim != dimension:
            continue
        for a, b in combinations(sorted(ranked.values(), key=lambda e: e.rank), 2):
            gap = a.score - b.score
            if gap == 0:
                skipped["tie"] += 1
                continue
            win, lose = (a, b) if gap > 0 else (b, a)
            labels: dict[str, int | None] = {}
            for d in DIMENSIONS:
                other = scores.get((job, prompt, d), {})
                sw, sl = other.get(win.candidate), other.get(lose.candidate)
                labels[d] = None if sw is None or sl is None else (
                    0 if sw.score == sl.score else 1 if sw.score > sl.score else 2)
            out.append(PreferencePair(
                prompt=prompt, chosen=win.candidate, rejected=lose.candidate, dimension=dim, labels=labels,
                confidence=round(ranking_confidence(win, lose), 6), source="ranking", job=job,
                id=f"{job}:{dim}:{win.rank}>{lose.rank}", score_gap=round(abs(gap), 6),
                chosen_score=win.score, rejected_score=lose.score, model_id=win.model_id,
                chosen_sha256=win.sha256, rejected_sha256=lose.sha256))
    return out, dict(skipped)


def ranking_confidence(win: RankEntry, lose: RankEntry) -> float:
    """P(win beats lose) from their scores and the fit's covariance; a ranking stored without the covariance
    counts the two scores as independent (their standard errors only)."""
    var = (win.uncertainty or 0.0) ** 2 + (lose.uncertainty or 0.0) ** 2
    if win.covariance and lose.candidate in win.covariance:
        var -= 2 * win.covariance[lose.candidate]
    return p_beats(win.score - lose.score, var)


def resolve_conflicts(pairs: Iterable[PreferencePair]) -> tuple[list[PreferencePair], int, int]:
    """Drop every pair whose (prompt, dimension, videos by content) has pairs preferring both ways; merge
    same-way duplicates into the most confident one. Returns (pairs, dropped as contradictory, merged)."""
    groups: dict[tuple, list[PreferencePair]] = defaultdict(list)
    for p in pairs:
        groups[(p.prompt.strip(), p.dimension, p.content())].append(p)
    kept, dropped, merged = [], 0, 0
    for group in groups.values():
        if len({p.chosen_sha256 or os.path.realpath(p.chosen) for p in group}) > 1:
            dropped += len(group)
            continue
        best = max(group, key=lambda p: p.confidence)
        if len(group) > 1:
            merged += len(group) - 1
            behind = tuple(j for p in group for j in p.judgments)
            best = replace(best, judgments=tuple({j["key"]: j for j in behind}.values()) if behind else ())
        kept.append(best)
    return kept, dropped, merged


def build_pairs(store: Store, dimension: str = "OA", *, job: str | None = None, require_consistent: bool = False,
                allow_inconsistent: bool = False, min_margin: float = 0.0, rankings: bool = True,
                min_confidence: float | None = None) -> PairsResult:
    """Preference pairs on `dimension` from the stored judgments (and rankings), filtered and conflict-free.

    `require_consistent` keeps only items judged in both orders that agree; `allow_inconsistent` also keeps
    items where one order called it a tie; `min_confidence` (`min_margin`, its older name) drops pairs
    whose confidence is below it.
    """
    if min_confidence is not None:
        min_margin = min_confidence
    if dimension not in DIMENSIONS:
        raise UsageError(f"unknown dimension {dimension!r}; choose from {', '.join(DIMENSIONS)}")
    if not 0 <= min_margin <= 1:
        raise UsageError(f"--min-confidence is a confidence between 0 and 1, got {min_margin}")
    if require_consistent and allow_inconsistent:
        raise UsageError("--require-consistent and --allow-inconsistent contradict each other")
    skipped: dict[str, int] = defaultdict(int)
    candidates = []
    known: dict[str, str] = {}  # path -> content hash, from the judgments (for rankings stored without hashes)
    for j in judged_items(store, job):
        if j.forward is not None:
            known.setdefault(j.forward.videoA, j.forward.hashA)
            known.setdefault(j.forward.videoB, j.forward.hashB)
        p, why = from_item(j, dimension, require_consistent=require_consistent,
                           allow_inconsistent=allow_inconsistent)
        if p is None:
            skipped[why] += 1
        else:
            candidates.append(p)
    if rankings and not require_consistent:  # a ranking has no orders to be consistent in
        entries = [e if e.sha256 or e.candidate not in known else replace(e, sha256=known[e.candidate])
                   for e in store.rankings(job)]
        ranked, why = from_rankings(entries, dimension)
        candidates += ranked
        for k, v in why.items():
            skipped[k] += v
    kept = []
    for p in candidates:
        if p.confidence < min_margin:
            skipped["below_margin"] += 1
        else:
            kept.append(p)
    kept, dropped, merged = resolve_conflicts(kept)
    return PairsResult(tuple(kept), dict(skipped), dropped, merged)


def write_jsonl(pairs: Iterable[PreferencePair], path: str) -> int:
    """Write one JSON object per line; returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n
