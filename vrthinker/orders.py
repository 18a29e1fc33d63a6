"""Position debiasing: judge (v1, v2) and (v2, v1), map the second back, and keep what both agree on."""
from __future__ import annotations

from vrthinker.probabilities import argmax_label, combine_orders
from vrthinker.verdict import DIMENSIONS, Verdict

_SWAP = {0: 0, 1: 2, 2: 1, None: None}


def swap(labels) -> dict[str, int | None]:
    """Labels of a (v2, v1) judgment expressed for (v1, v2)."""
    return {d: _SWAP[labels.get(d)] for d in DIMENSIONS}


def agreement(forward_labels, reverse_labels) -> dict[str, bool]:
    """Per dimension labelled in both orders: whether the reverse, mapped back, agrees with the forward."""
    back = swap(reverse_labels)
    return {d: forward_labels.get(d) == back[d] for d in DIMENSIONS
            if forward_labels.get(d) is not None and back[d] is not None}


COMBINE_RULES = ("labels", "probabilities")


def combine(forward: Verdict, reverse: Verdict, rule: str = "labels") -> Verdict:
    """One verdict from both orders, per dimension.

    Agreeing labels stand; disagreeing ones become a tie listed as `inconsistent`; a label that only
    one order produced is kept and listed as `single_order`; missing in both stays missing.
    Where both orders carry label probabilities, the verdict's are their position-debiased average (the
    reverse mapped back), and `extra["tv_distance"]` is the mean total-variation distance between the
    orders (0: the same distributions). `rule="probabilities"` makes each such dimension's label the
    argmax of that average; the other dimensions keep the label rule.
    """
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {rule!r}; choose from {', '.join(COMBINE_RULES)}")
    back = swap(reverse.labels)
    agrees = agreement(forward.labels, reverse.labels)
    inconsistent = [d for d, ok in agrees.items() if not ok]
    labels: dict[str, int | None] = {}
    single = []
    for d in DIMENSIONS:
        a, b = forward.labels.get(d), back[d]
        if d in agrees:
            labels[d] = a if agrees[d] else 0
        else:
            labels[d] = a if a is not None else b
            if labels[d] is not None:
                single.append(d)
    probs, tv = combine_orders(forward.probabilities, reverse.probabilities)
    if rule == "probabilities":
        for d, p in (probs or {}).items():
            labels[d] = argmax_label(p)
    mass = {d: sum(ms) / len(ms) for d in DIMENSIONS
            if (ms := [m[d] for m in (forward.mass, reverse.mass) if m and d in m])} or None
    agree, both = sum(agrees.values()), len(agrees)
    missing = [d for d in DIMENSIONS if labels[d] is None]
    reason, detail = None, ""
    if missing:
        reason = forward.reason or reverse.reason or "partial_answer"
        detail = "; ".join(f"{name}: {v.reason} ({v.detail})" for name, v in
                           (("forward", forward), ("reverse", reverse)) if v.reason)
    extra = dict(forward.extra)
    extra.update(orders="both", inconsistent=inconsistent, single_order=single,
                 consistency=(agree / both) if both else None)
    if probs is not None:  # only where probabilities were read: other verdicts stay as they were
        extra.update(tv_distance=tv, combine=rule)
    timings = {k: round(forward.timings.get(k, 0) + reverse.timings.get(k, 0), 4)
               for k in set(forward.timings) | set(reverse.timings)}
    return Verdict(labels=labels, reason=reason, detail=detail, reasoning=forward.reasoning,
                   turns=forward.turns, videos=forward.videos, prompt=forward.prompt,
                   model_id=forward.model_id, protocol=forward.protocol, backend=forward.backend,
                   timings=timings, extra=extra, per_order=(forward, reverse), probabilities=probs, mass=mass)
