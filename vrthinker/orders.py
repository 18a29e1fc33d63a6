"""Position debiasing: judge (v1, v2) and (v2, v1), map the second back, and keep what both agree on."""
from __future__ import annotations

from .verdict import DIMENSIONS, Verdict

_SWAP = {0: 0, 1: 2, 2: 1, None: None}


def swap(labels) -> dict[str, int | None]:
    """Labels of a (v2, v1) judgment expressed for (v1, v2)."""
    return {d: _SWAP[labels.get(d)] for d in DIMENSIONS}


def combine(forward: Verdict, reverse: Verdict) -> Verdict:
    """One verdict from both orders, per dimension.

    Agreeing labels stand; disagreeing ones become a tie listed as `inconsistent`; a label that only
    one order produced is kept and listed as `single_order`; missing in both stays missing.
    """
    back = swap(reverse.labels)
    labels: dict[str, int | None] = {}
    inconsistent, single, agree = [], [], 0
    for d in DIMENSIONS:
        a, b = forward.labels.get(d), back[d]
        if a is not None and b is not None:
            labels[d] = a if a == b else 0
            if a == b:
                agree += 1
            else:
                inconsistent.append(d)
        else:
            labels[d] = a if a is not None else b
            if labels[d] is not None:
                single.append(d)
    both = agree + len(inconsistent)
    missing = [d for d in DIMENSIONS if labels[d] is None]
    reason, detail = None, ""
    if missing:
        reason = forward.reason or reverse.reason or "partial_answer"
        detail = "; ".join(f"{name}: {v.reason} ({v.detail})" for name, v in
                           (("forward", forward), ("reverse", reverse)) if v.reason)
    extra = dict(forward.extra)
    extra.update(orders="both", inconsistent=inconsistent, single_order=single,
                 consistency=(agree / both) if both else None)
    timings = {k: round(forward.timings.get(k, 0) + reverse.timings.get(k, 0), 4)
               for k in set(forward.timings) | set(reverse.timings)}
    return Verdict(labels=labels, reason=reason, detail=detail, reasoning=forward.reasoning,
                   turns=forward.turns, videos=forward.videos, prompt=forward.prompt,
                   model_id=forward.model_id, protocol=forward.protocol, backend=forward.backend,
                   timings=timings, extra=extra, per_order=(forward, reverse))
