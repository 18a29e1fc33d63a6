"""How far to trust the judge's label probabilities: calibration, selective accuracy and a probability tie sweep.

Per dimension, over the rows with a human label and the judge's probabilities ({"1", "2", "0": p}, both
orders averaged when judged in both); rows without probabilities (a failed pair, a judge that reads none)
are left out, and `n` says how many counted.

- Expected calibration error (top label): rows binned by the probability of the judge's top label (BINS
  equal-width bins over [0, 1]); ECE = sum over bins of (rows in bin / n) * |accuracy - mean top probability|.
  0 for a calibrated judge; a judge right 80% of the time when it says 0.8 is calibrated there.
- Brier score: mean over rows of sum_k (p_k - [human label = k])^2 over the three labels; 0 is perfect,
  2/3 is what always saying (1/3, 1/3, 1/3) scores.
- Reliability table: per bin, its rows, mean top probability and accuracy.
- Accuracy against coverage: rows sorted by top probability, most confident first; at each coverage (share
  of rows answered) the 3-class accuracy of the answered ones. A judge whose probabilities mean something
  gets more accurate as it answers less.
- Tie sweep over probabilities: a tie is predicted when the top label's probability is at or below t, else
  the top label; every t in {0} and the observed top probabilities is tried and the best 3-class accuracy is
  reported with its t (as VideoAlign sweeps score gaps, and as optimistic: t is picked on these rows).
Accuracy here is 3-class (a predicted tie is right only on a human tie), the top label's argmax as the label.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vrthinker.probabilities import KEYS, argmax_label

BINS = 10
COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


@dataclass(frozen=True)
class Bin:
    """One reliability bin: top probabilities in [low, high), its rows, their mean top probability and accuracy."""

    low: float
    high: float
    n: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Calibration:
    """One dimension's calibration figures (None where no row counts)."""

    n: int
    ece: float | None
    brier: float | None
    reliability: tuple[Bin, ...]
    coverage: tuple[tuple[float, int, float | None], ...]  # (coverage, rows answered, accuracy)
    tie_threshold: float | None
    tie_accuracy: float | None

    def summary(self) -> dict:
        """The figures `judge eval --json` gives under `calibration`."""
        return {"ece": _r(self.ece), "brier": _r(self.brier), "n": self.n}

    def to_dict(self) -> dict:
        return {**self.summary(),
                "reliability": [{"low": b.low, "high": b.high, "n": b.n, "confidence": _r(b.confidence),
                                 "accuracy": _r(b.accuracy)} for b in self.reliability],
                "coverage": [{"coverage": c, "answered": k, "accuracy": _r(acc)} for c, k, acc in self.coverage],
                "tie_sweep": {"threshold": _r(self.tie_threshold), "accuracy": _r(self.tie_accuracy)}}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def _rows(human: Sequence[Mapping[str, int | None]], probabilities: Sequence[Mapping | None], dim: str):
    """(distributions [n, 3] in KEYS order, human labels [n]) of the rows that count for `dim`."""
    p, y = [], []
    for h, probs in zip(human, probabilities):
        if h.get(dim) is None or not probs or not probs.get(dim):
            continue
        p.append([float(probs[dim][k]) for k in KEYS])
        y.append(int(h[dim]))
    return np.array(p, dtype=float).reshape(-1, 3), np.array(y, dtype=int)


def calibrate(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> Calibration:
    """The figures for distributions `p` ([n, 3] over "1", "2", "0") against human labels `y` (1, 2 or 0)."""
    n = len(y)
    if n == 0:
        return Calibration(0, None, None, (), (), None, None)
    onehot = np.stack([(y == int(k)).astype(float) for k in KEYS], axis=1)
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    pred = np.array([argmax_label(dict(zip(KEYS, row))) for row in p])
    top = p.max(axis=1)
    right = (pred == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.floor(top * bins + 1e-9).astype(int), 0, bins - 1)  # 0.6 in [0.6, 0.7), 1.0 in the last
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        k = int(m.sum())
        conf = float(top[m].mean()) if k else None
        acc = float(right[m].mean()) if k else None
        if k:
            ece += k / n * abs(acc - conf)
        table.append(Bin(round(float(edges[b]), 6), round(float(edges[b + 1]), 6), k, conf, acc))
    order = np.argsort(-top, kind="stable")
    coverage = []
    for c in COVERAGES:
        k = max(1, int(round(c * n)))
        coverage.append((c, k, float(right[order[:k]].mean())))
    best_t, best = None, -1.0
    for t in np.unique(np.concatenate([[0.0], top])):
        acc = float(np.mean(np.where(top <= t, 0, pred) == y))
        if acc > best:
            best_t, best = float(t), acc
    return Calibration(n, ece, brier, tuple(table), tuple(coverage), best_t, best)


def calibration(human: Sequence[Mapping[str, int | None]], probabilities: Sequence[Mapping | None],
                dimensions: Sequence[str]) -> dict[str, Calibration]:
    """Per dimension: its Calibration over the rows with a human label and the judge's probabilities."""
    return {d: calibrate(*_rows(human, probabilities, d)) for d in dimensions}


def has_probabilities(probabilities: Sequence[Mapping | None]) -> bool:
    return any(p for p in probabilities)
