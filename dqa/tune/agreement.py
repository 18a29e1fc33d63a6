"""How often the judge agrees with a person's held-out selections, per dimension, with and without an adapter.

Held-out selections: with an adapter, every usable selection it did not train on (its data.jsonl marks
train/val; the validation ones and anything newer count); without one, every usable selection. The judge
runs its whole conversation (tool calls included) and its final label on the selection's dimension is
compared with the person's choice; a missing label counts as disagreement. Models are loaded one at a time.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vrthinker.errors import UsageError
from vrthinker.verdict import DIMENSIONS

from dqa.tune.selections import Selection, usable


def trained_ids(adapter: str | Path) -> set[int]:
    path = Path(adapter) / "data.jsonl"
    if not path.is_file():
        raise UsageError(f"{adapter}: no data.jsonl (not an adapter made by 'dqa tune')")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return {r["selection_id"] for r in rows if r.get("split") == "train"}


def held_out(store, adapter: str | Path | None = None) -> list[Selection]:
    sels, _ = usable(store)
    if adapter is None:
        return sels
    seen = trained_ids(adapter)
    return [s for s in sels if s.id not in seen]


def judge_agreement(judge: Any, selections: Sequence[Selection],
                    progress: Callable[[str], None] | None = None) -> dict[str, dict[str, int]]:
    """{dimension: {"n", "agree", "missing"}} plus "all", from `judge.compare` on each selection."""
    out = {d: {"n": 0, "agree": 0, "missing": 0} for d in (*DIMENSIONS, "all")}
    for s in selections:
        v = judge.compare(s.video_a, s.video_b, s.prompt)
        said = v.labels.get(s.dimension)
        for key in (s.dimension, "all"):
            out[key]["n"] += 1
            out[key]["agree"] += said == s.label
            out[key]["missing"] += said is None
        if progress:
            progress(f"selection #{s.id}: judge {said}, person {s.label}")
    return out


def compare_with_adapter(load: Callable[[str | None], Any], selections: Sequence[Selection], adapter: str | None,
                         progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """{"base": counts, "adapter": counts or None}; `load(adapter_or_None)` gives a judge, used then dropped."""
    from dqa.tune.train import free

    result: dict[str, Any] = {"base": None, "adapter": None}
    for name, a in (("base", None), ("adapter", adapter)):
        if name == "adapter" and not adapter:
            continue
        judge = load(a)
        result[name] = judge_agreement(judge, selections, progress)
        judge = None
        free()
    return result
