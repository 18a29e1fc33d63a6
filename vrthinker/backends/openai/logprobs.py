"""Label probabilities from a server's logprobs: P("1"), P("2"), P("0") at each digit token of a reply.

A chat completion asked with `logprobs: true, top_logprobs: 20` gives, per generated token, its text, its
logprob and the 20 likeliest tokens there. A digit 0, 1 or 2 may stand alone ("1"), after a space (" 1"),
joined to its "=" ("=1") or to other non-digit text: the three label tokens at that position are the
alternatives with the same text around the digit. A label token outside the top 20 counts as 0 (it had less
than the 20th), so `mass` is then a lower bound. A reply whose tokens cannot be placed in its text, or a
server that sends no logprobs, gives no figure at all (None, with why), never an invented one.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from vrthinker.probabilities import KEYS, renormalise

TOP_LOGPROBS = 20  # what a turn asks for (OpenAI's maximum; vLLM's default --max-logprobs allows it)
_DIGIT = re.compile(r"^(\D*)([012])(\D*)$")


def request_fields() -> dict:
    """The body fields that ask a server for the logprobs read here."""
    return {"logprobs": True, "top_logprobs": TOP_LOGPROBS}


def _offsets(text: str, content: Sequence[Mapping[str, Any]]) -> list[int] | None:
    """Each token's start in `text`: by the tokens' texts where they add up to it, else by their bytes."""
    tokens = [str(c.get("token", "")) for c in content]
    if "".join(tokens) == text:
        starts, at = [], 0
        for t in tokens:
            starts.append(at)
            at += len(t)
        return starts
    if all(isinstance(c.get("bytes"), list) for c in content):
        raw = text.encode("utf-8")
        if bytes(b for c in content for b in c["bytes"]) != raw:
            return None
        starts, at = [], 0
        for c in content:
            starts.append(len(raw[:at].decode("utf-8", errors="ignore")))
            at += len(c["bytes"])
        return starts
    return None


def read_digits(text: str, logprobs: Mapping[str, Any] | None
                ) -> tuple[dict[int, tuple[dict[str, float], float]] | None, str]:
    """({offset of the digit in `text`: (its {"1", "2", "0"} distribution, their mass)}, "") from a choice's
    `logprobs`, or (None, why) when there is nothing to read."""
    content = (logprobs or {}).get("content") if isinstance(logprobs, Mapping) else None
    if not content:
        return None, "the server sent no logprobs for this reply"
    starts = _offsets(text, content)
    if starts is None:
        return None, "the server's logprob tokens do not add up to the reply's text"
    out: dict[int, tuple[dict[str, float], float]] = {}
    for c, start in zip(content, starts):
        m = _DIGIT.match(str(c.get("token", "")))
        if not m:
            continue
        before, after = m[1], m[3]
        raw = {k: 0.0 for k in KEYS}
        for alt in list(c.get("top_logprobs") or []) + [c]:
            a = _DIGIT.match(str(alt.get("token", "")))
            lp = alt.get("logprob")
            if a and a[1] == before and a[3] == after and isinstance(lp, (int, float)) and lp > -math.inf:
                raw[a[2]] = max(raw[a[2]], math.exp(lp))
        out[start + len(before)] = renormalise(raw)
    return out, ""
