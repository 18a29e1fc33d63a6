"""Pairwise preference metrics as the video benchmarks define them, per dimension, with bootstrap intervals.

Labels follow `vrthinker.verdict`: 1 = video1 preferred, 2 = video2, 0 = tie, None = missing.

Which rows count, and how missing predictions count (the same everywhere below):

- A row counts for a dimension only when its *human* label is present; unlabelled rows are left out.
- A *missing prediction* (the judge gave no label: no answer, turn limit, a dimension it cannot judge)
  stays in the denominator and counts as wrong; `missing` reports how many there were. A judge that
  abstains on hard pairs is therefore never rewarded for it, and accuracy is comparable across judges.
- Accuracy without ties: rows whose human label is 1 or 2 (tie rows left out); correct when the prediction
  equals it. A predicted tie there is wrong, as in VideoAlign's `calc_accuracy_without_ties`, where a zero
  score difference counts as discordant.
- Accuracy with ties, discrete judges: 3-class accuracy over all labelled rows (tie rows included).
- Accuracy with ties, score judges (`tie_sweep`): Algorithm 1 of "Ties Matter" (arXiv 2305.14324) exactly as
  VideoAlign's `calc_accuracy_with_ties` (VideoGen-RewardBench's own metric) computes it: rows sorted by
  |s1 - s2| become predicted ties one at a time, smallest first; the best 3-class accuracy is reported with
  the |difference| where it was reached. No smaller threshold (such as 0 below every difference) is tried,
  and rows with equal |differences| turn into ties one by one, in input order, as there.
  (The threshold is picked on the evaluated rows themselves, as the benchmark does, so it is optimistic.)
  For score judges, accuracy without ties uses the sign of the difference (0 = a predicted tie = wrong).
- Position consistency (`--orders both`): over rows judged in both orders with a label from each, the share
  where the (video2, video1) label mapped back (1 <-> 2) equals the (video1, video2) label.
- Confusion: human label (rows: video1, video2, tie) by prediction (columns: video1, video2, tie, missing).
- Intervals: percentile bootstrap over rows (resampled with replacement; seeded numpy). For a mean of 0/1
  outcomes a resample's count of correct rows is Binomial(n, k/n), which is drawn directly; the tie sweep
  resamples rows and re-picks its threshold in every resample.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from vrthinker.verdict import DIMENSIONS

ORDER = (1, 2, 0)  # confusion rows / columns: video1, video2, tie
ORDER_NAMES = ("video1", "video2", "tie")
_SWAP = {0: 0, 1: 2, 2: 1}
DEFAULT_BOOTSTRAP = 1000


@dataclass(frozen=True)
class Accuracy:
    """correct / n over the rows that count; `missing` of those had no prediction (counted wrong)."""

    value: float | None  # None when no row counts
    correct: int
    n: int
    missing: int
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class TieSweep:
    """Ties-Matter accuracy with ties: the best 3-class accuracy over tie thresholds, and that threshold."""

    value: float | None
    threshold: float | None  # |score difference| at or below which a tie is predicted
    correct: int
    n: int
    missing: int  # rows without a score difference (counted wrong)
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class Confusion:
    """Counts of human label (rows: video1, video2, tie) by prediction (video1, video2, tie, missing)."""

    counts: tuple[tuple[int, int, int, int], ...]

    def to_dict(self) -> dict:
        return {"rows": list(ORDER_NAMES), "columns": [*ORDER_NAMES, "missing"],
                "counts": [list(r) for r in self.counts]}


@dataclass(frozen=True)
class Consistency:
    """Share of rows labelled in both orders where the two orders agree."""

    value: float | None
    agreed: int
    n: int
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class DimensionReport:
    """All metrics of one dimension; `with_ties` is 3-class accuracy, `tie_sweep` only for score judges."""

    dimension: str
    labelled: int  # rows with a human label for this dimension
    ties: int  # of those, human ties
    without_ties: Accuracy
    with_ties: Accuracy
    confusion: Confusion
    tie_sweep: TieSweep | None = None
    consistency: Consistency | None = None
    basis: str = "labels"  # what `without_ties` was computed from: "labels" or "scores"

    @property
    def reported_with_ties(self) -> Accuracy | TieSweep:
        """The with-ties number a benchmark table prints: the sweep for score judges, else 3-class."""
        return self.tie_sweep if self.tie_sweep is not None else self.with_ties

    def to_dict(self) -> dict:
        d = asdict(self)
        d["confusion"] = self.confusion.to_dict()
        return d


@dataclass(frozen=True)
class Report:
    """Per-dimension metrics of one benchmark run."""

    examples: int
    dimensions: Mapping[str, DimensionReport]
    bootstrap: int
    seed: int
    confidence: float
    consistency: Consistency | None = None  # pooled over dimensions, with --orders both
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"examples": self.examples, "bootstrap": self.bootstrap, "seed": self.seed,
                "confidence": self.confidence,
                "consistency": asdict(self.consistency) if self.consistency else None,
                "dimensions": {k: v.to_dict() for k, v in self.dimensions.items()}, "notes": list(self.notes)}


# ----------------------------------------------------------------------------------------------------------
# building blocks


def _codes(labels: Sequence[int | None]) -> np.ndarray:
    """Labels as an int array, -1 for missing; anything but 0, 1, 2 or None is an error."""
    out = np.full(len(labels), -1, dtype=np.int8)
    for i, v in enumerate(labels):
        if v is None:
            continue
        if v not in (0, 1, 2):
            raise ValueError(f"label {v!r} at row {i} is not 0, 1, 2 or None")
        out[i] = v
    return out


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(seed)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def _proportion(correct: int, n: int, bootstrap: int, seed, confidence: float) -> tuple[float, float] | None:
    """Bootstrap percentile interval of a share of 0/1 outcomes (a resample's count is Binomial(n, k/n))."""
    if n == 0 or bootstrap <= 0:
        return None
    draws = _rng(seed).binomial(n, correct / n, size=bootstrap) / n
    return _interval(draws, confidence)


def _check(human: Sequence, other: Sequence, what: str) -> None:
    if len(human) != len(other):
        raise ValueError(f"{len(human)} human labels but {len(other)} {what}")


def accuracy_without_ties(human: Sequence[int | None], predicted: Sequence[int | None], *,
                          bootstrap: int = DEFAULT_BOOTSTRAP, seed=0, confidence: float = 0.95) -> Accuracy:
    """Accuracy over rows whose human label is 1 or 2; a predicted tie or a missing prediction is wrong."""
    _check(human, predicted, "predictions")
    h, p = _codes(human), _codes(predicted)
    rows = (h == 1) | (h == 2)
    n, correct, missing = int(rows.sum()), int((rows & (p == h)).sum()), int((rows & (p < 0)).sum())
    return Accuracy(correct / n if n else None, correct, n, missing,
                    _proportion(correct, n, bootstrap, seed, confidence))


def accuracy_with_ties(human: Sequence[int | None], predicted: Sequence[int | None], *,
                       bootstrap: int = DEFAULT_BOOTSTRAP, seed=0, confidence: float = 0.95) -> Accuracy:
    """3-class accuracy over all labelled rows (ties included); a missing prediction is wrong."""
    _check(human, predicted, "predictions")
    h, p = _codes(human), _codes(predicted)
    rows = h >= 0
    n, correct, missing = int(rows.sum()), int((rows & (p == h)).sum()), int((rows & (p < 0)).sum())
    return Accuracy(correct / n if n else None, correct, n, missing,
                    _proportion(correct, n, bootstrap, seed, confidence))


def _score_codes(diffs: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|difference|, its direction as a label 1/2/0, valid mask) of score differences s1 - s2."""
    d = np.array([np.nan if v is None else float(v) for v in diffs], dtype=np.float64)
    valid = np.isfinite(d)
    a = np.where(valid, np.abs(d), np.inf)
    s = np.where(d > 0, 1, np.where(d < 0, 2, 0)).astype(np.int8)
    return a, s, valid


def labels_from_scores(diffs: Sequence[float | None], threshold: float = 0.0) -> list[int | None]:
    """Labels predicted from score differences s1 - s2: a tie when |difference| <= threshold."""
    out: list[int | None] = []
    for v in diffs:
        if v is None or not math.isfinite(float(v)):
            out.append(None)
        else:
            out.append(0 if abs(v) <= threshold else (1 if v > 0 else 2))
    return out


def _sweep(h: np.ndarray, a: np.ndarray, s: np.ndarray, valid: np.ndarray) -> tuple[int, int]:
    """VideoAlign's `calc_accuracy_with_ties` over labelled rows: (best 3-class correct count, its row).

    Rows are taken in order of |difference| (a stable sort: equal ones keep their input order) and, one row at
    a time, the first k are predicted ties, for k = 1 .. rows with a difference; the first maximum wins and its
    threshold is the k-th row's |difference|. No threshold below the smallest |difference| is tried, and among
    equal |differences| the rows move one by one, exactly as the benchmark's published figures were computed.
    `valid` False rows (no score difference) are never predicted and always wrong. Returns (0, -1) when none
    has a difference.
    """
    m = int(valid.sum())
    if m == 0:
        return 0, -1
    order = np.argsort(np.where(valid, a, np.inf), kind="stable")[:m]
    tie = (h == 0)[order]  # right once predicted a tie
    direction = ((h > 0) & (s == h))[order]  # right while not predicted a tie
    correct = np.cumsum(tie) + (int(direction.sum()) - np.cumsum(direction))  # after k = 1 .. m rows
    k = int(np.argmax(correct))  # first maximum, as VideoAlign's strict `>`
    return int(correct[k]), int(order[k])


def tie_sweep(human: Sequence[int | None], diffs: Sequence[float | None], *,
              bootstrap: int = DEFAULT_BOOTSTRAP, seed=0, confidence: float = 0.95) -> TieSweep:
    """Accuracy with ties for score differences s1 - s2 (positive: video1 better), as VideoAlign computes it."""
    _check(human, diffs, "score differences")
    h = _codes(human)
    a, s, valid = _score_codes(diffs)
    rows = h >= 0
    h, a, s, valid = h[rows], a[rows], s[rows], valid[rows]
    n, missing = len(h), int((~valid).sum())
    if n == 0:
        return TieSweep(None, None, 0, 0, 0, None)
    correct, at = _sweep(h, a, s, valid)
    ci = None
    if bootstrap > 0:
        rng = _rng(seed)
        draws = np.empty(bootstrap)
        for b in range(bootstrap):  # each resample is swept again, in its own order, as the function would
            idx = rng.integers(0, n, n)
            draws[b] = _sweep(h[idx], a[idx], s[idx], valid[idx])[0] / n
        ci = _interval(draws, confidence)
    return TieSweep(correct / n, float(a[at]) if at >= 0 else None, correct, n, missing, ci)


def confusion(human: Sequence[int | None], predicted: Sequence[int | None]) -> Confusion:
    """Human (video1, video2, tie) by predicted (video1, video2, tie, missing); unlabelled rows left out."""
    _check(human, predicted, "predictions")
    h, p = _codes(human), _codes(predicted)
    counts = tuple(tuple(int(((h == hv) & (p == pv)).sum()) for pv in (*ORDER, -1)) for hv in ORDER)
    return Confusion(counts)  # type: ignore[arg-type]


def position_consistency(forward: Sequence[int | None], reverse: Sequence[int | None], *,
                         bootstrap: int = DEFAULT_BOOTSTRAP, seed=0, confidence: float = 0.95) -> Consistency:
    """Agreement of (video1, video2) labels with (video2, video1) labels mapped back, where both exist.

    `reverse[i]` is the label as the judge gave it with the videos swapped (1 = video2 better).
    """
    _check(forward, reverse, "reverse labels")
    pairs = [(f, _SWAP[r]) for f, r in zip(forward, reverse) if f is not None and r is not None]
    n = len(pairs)
    agreed = sum(f == r for f, r in pairs)
    return Consistency(agreed / n if n else None, agreed, n, _proportion(agreed, n, bootstrap, seed, confidence))


# ----------------------------------------------------------------------------------------------------------
# everything at once


def evaluate(human: Sequence[Mapping[str, int | None]], predicted: Sequence[Mapping[str, int | None]], *,
             dimensions: Sequence[str] = DIMENSIONS,
             forward: Sequence[Mapping[str, int | None] | None] | None = None,
             reverse: Sequence[Mapping[str, int | None] | None] | None = None,
             scores: Sequence[Mapping[str, float | None] | None] | None = None,
             bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, confidence: float = 0.95) -> Report:
    """Metrics per dimension for examples with `human` labels and the judge's `predicted` labels.

    `forward` / `reverse`: per example, the labels of each order (reverse as the judge gave it), or None
    where it was judged in one order; given, position consistency is reported. `scores`: per example, the
    judge's score differences s1 - s2 per dimension (score judges), enabling the Ties-Matter sweep.
    """
    _check(human, predicted, "predictions")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    kw = dict(bootstrap=bootstrap, confidence=confidence)
    reports: dict[str, DimensionReport] = {}
    pooled_f: list[int | None] = []
    pooled_r: list[int | None] = []
    for k, d in enumerate(dimensions):
        hs = [x.get(d) for x in human]
        ps = [x.get(d) for x in predicted]
        diffs = None
        if scores is not None:
            diffs = [None if x is None else x.get(d) for x in scores]
            if all(v is None for v in diffs):
                diffs = None
        sweep = None
        basis = "labels"
        if diffs is not None:
            sweep = tie_sweep(hs, diffs, seed=[seed, k, 2], **kw)
            without = accuracy_without_ties(hs, labels_from_scores(diffs), seed=[seed, k, 0], **kw)
            basis = "scores"
        else:
            without = accuracy_without_ties(hs, ps, seed=[seed, k, 0], **kw)
        cons = None
        if forward is not None and reverse is not None:
            both = [(f.get(d), r.get(d)) for f, r in zip(forward, reverse) if f is not None and r is not None]
            fs, rs = [f for f, _ in both], [r for _, r in both]
            pooled_f += fs
            pooled_r += rs
            cons = position_consistency(fs, rs, seed=[seed, k, 3], **kw)
        reports[d] = DimensionReport(
            dimension=d, labelled=sum(v is not None for v in hs), ties=sum(v == 0 for v in hs),
            without_ties=without, with_ties=accuracy_with_ties(hs, ps, seed=[seed, k, 1], **kw),
            confusion=confusion(hs, ps), tie_sweep=sweep, consistency=cons, basis=basis)
    pooled = None
    if forward is not None and reverse is not None:
        pooled = position_consistency(pooled_f, pooled_r, seed=[seed, 99], **kw)
    return Report(examples=len(human), dimensions=reports, bootstrap=bootstrap, seed=seed,
                  confidence=confidence, consistency=pooled)
