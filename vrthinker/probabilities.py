"""Label probabilities: what the model's distribution at each label digit says, and how both orders combine.

A distribution is {"1": p, "2": p, "0": p} (video 1 better, video 2 better, tie), renormalised over the three
label tokens; `mass` is the share of the whole vocabulary those three held at that position. Both are read
where a backend gives them (in-process: after the checkpoint's logits processors; a server: its logprobs)
and are None where it does not: no figure is ever made up.
"""
from __future__ import annotations

from collections.abc import Mapping

from vrthinker.verdict import DIMENSIONS

KEYS = ("1", "2", "0")
Dist = Mapping[str, float]


def renormalise(raw: Mapping[str, float]) -> tuple[dict[str, float], float]:
    """({"1", "2", "0"} probabilities summing to 1, their total before) from unnormalised probabilities."""
    mass = float(sum(raw.get(k, 0.0) for k in KEYS))
    if mass <= 0:
        return {k: 1 / 3 for k in KEYS}, 0.0
    return {k: float(raw.get(k, 0.0)) / mass for k in KEYS}, mass


def at_positions(positions: Mapping[str, int], digits: Mapping[int, tuple[Dist, float]] | None
                 ) -> tuple[dict[str, dict[str, float]] | None, dict[str, float] | None]:
    """(probabilities, mass) per dimension whose label digit (offset in the reply, `positions`) has a
    distribution in `digits` (offset -> (distribution, mass)); (None, None) when none has."""
    if digits is None:
        return None, None
    found = {d: digits[positions[d]] for d in DIMENSIONS if d in positions and positions[d] in digits}
    if not found:
        return None, None
    return {d: dict(p) for d, (p, _) in found.items()}, {d: float(m) for d, (_, m) in found.items()}


def swap(dist: Dist) -> dict[str, float]:
    """A (v2, v1) distribution expressed for (v1, v2)."""
    return {"1": dist["2"], "2": dist["1"], "0": dist["0"]}


def average(a: Dist, b: Dist) -> dict[str, float]:
    return {k: (a[k] + b[k]) / 2 for k in KEYS}


def total_variation(a: Dist, b: Dist) -> float:
    """Half the L1 distance: 0 for the same distribution, 1 for disjoint ones."""
    return 0.5 * sum(abs(a[k] - b[k]) for k in KEYS)


def argmax_label(dist: Dist) -> int:
    """The most probable label (1, 2 or 0); an exact draw between the top two is a tie (0)."""
    best = max(dist[k] for k in KEYS)
    tops = [k for k in KEYS if dist[k] == best]
    return int(tops[0]) if len(tops) == 1 else 0


def win_fraction(dist: Dist) -> float:
    """The expected share of the comparison video 1 wins: P(1) + P(0) / 2 (a tie is half a win each way)."""
    return float(dist["1"] + 0.5 * dist["0"])


def combine_orders(forward: Mapping[str, Dist] | None, reverse: Mapping[str, Dist] | None
                   ) -> tuple[dict[str, dict[str, float]] | None, float | None]:
    """The position-debiased distribution per dimension (the reverse order mapped back and averaged with the
    forward; a dimension read in one order only keeps that one) and the mean total-variation distance
    between the orders over the dimensions read in both (None: none)."""
    if forward is None and reverse is None:
        return None, None
    f, r = forward or {}, {d: swap(p) for d, p in (reverse or {}).items()}
    out, tvs = {}, []
    for d in DIMENSIONS:
        if d in f and d in r:
            out[d] = average(f[d], r[d])
            tvs.append(total_variation(f[d], r[d]))
        elif d in f or d in r:
            out[d] = dict(f.get(d) or r[d])
    return out or None, (sum(tvs) / len(tvs)) if tvs else None
