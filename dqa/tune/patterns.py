"""Failure patterns: what the videos a person rejected have in common against the ones they chose.

Each selection pairs a chosen and a rejected video. Every measure of both (the weight-free measures of
dqa.measures.video, whatever raw values its result holds, cached per content in `video_measures`; and any
`dqa score` value stored for the video) is compared selection by selection: on how many selections the
rejected video measured higher, on how many lower (equal ones do not count), and a two-sided sign test on
those. A pattern is a (group, measure) where the rejected video differs the same way on at least
MIN_SUPPORT selections and the sign test holds after a Bonferroni correction over every (group, measure)
tested (p x tests < ALPHA), so random choices report nothing. Groups: all selections, each dimension, and
each prompt (its text, case and spaces folded) with enough selections of its own.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from vrthinker.errors import VideoError
from vrthinker.store import Store
from vrthinker.verdict import DIMENSIONS

from dqa.tune.selections import Selection

MIN_SUPPORT = 8  # selections a pattern needs (the rejected video differing its way), at the least
ALPHA = 0.05  # family-wise: p x tests must be below it


@dataclass(frozen=True)
class Pattern:
    dimension: str  # "all" or one of DIMENSIONS
    prompt_group: str  # "all" or a prompt
    measure: str
    direction: str  # "higher" | "lower": the rejected video against the chosen one
    ratio: float | None  # mean over rejected / mean over chosen (None where the values are not all positive)
    support: int  # selections where the rejected video differed in `direction`
    n: int  # selections where the two differed at all
    p_value: float  # two-sided sign test, uncorrected
    median_difference: float  # median of rejected - chosen over the n selections

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dimension, self.prompt_group, self.measure, self.direction)

    def describe(self) -> str:
        scope = ("" if self.dimension == "all" else f"{self.dimension} ") + "selections"
        if self.prompt_group != "all":
            scope += f" of {self.prompt_group!r}"
        how = (f"{self.ratio:.2f}x the chosen ones'" if self.ratio is not None and abs(self.ratio - 1) >= 0.05
               else f"{self.median_difference:+.3g} against the chosen ones (median)")
        return (f"rejected videos: {self.measure} {self.direction}, {how} ({self.support} of {self.n} {scope}; "
                f"sign test p={self.p_value:.2g})")

    def to_dict(self) -> dict:
        return {**asdict(self), "text": self.describe()}


@dataclass(frozen=True)
class Report:
    patterns: tuple[Pattern, ...]
    selections: int  # selections whose two videos were measured
    tests: int  # (group, measure) pairs with enough selections to test
    skipped: tuple[tuple[int, str], ...] = ()
    note: str = ""  # why nothing could be found, when the data is too thin

    def to_dict(self) -> dict:
        return {"patterns": [p.to_dict() for p in self.patterns], "selections": self.selections,
                "tests": self.tests, "min_support": MIN_SUPPORT, "alpha": ALPHA, "note": self.note,
                "skipped": [{"selection_id": i, "why": w} for i, w in self.skipped]}


def sign_test(support: int, n: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven among n fair coin flips."""
    if n == 0:
        return 1.0
    k = max(support, n - support)
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n)


def _finite(m) -> dict[str, float]:
    out = {}
    for k, v in dict(m).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[str(k)] = f
    return out


def video_measures(store: Store, sha: str, path: str,
                   measure: Callable[[str], object] | None = None) -> dict[str, float]:
    """The raw weight-free measures of a video (cached by content and measures version), with its `dqa score`
    values as "score:<component>". Raises VideoError for a video that cannot be measured."""
    from dqa.measures import video as mv

    version = str(getattr(mv, "MEASURES_VERSION", ""))
    row = store.db.execute("SELECT measures FROM video_measures WHERE video_sha=? AND version=?",
                           (sha, version)).fetchone()
    if row:
        raw = json.loads(row[0])
    else:
        result = (measure or mv.measure_video)(path)
        raw = _finite(getattr(result, "measures", {}) or {})
        with store.transaction():
            store.db.execute("INSERT OR REPLACE INTO video_measures VALUES (?,?,?,?)",
                             (sha, version, json.dumps(raw), time.time()))
    scores = store.db.execute("SELECT component, value FROM dqa_scores WHERE video_sha=? AND value IS NOT NULL "
                              "ORDER BY created", (sha,)).fetchall()
    raw.update({f"score:{c}": float(v) for c, v in scores})
    return raw


def _group_name(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def find(store: Store, selections: Sequence[Selection], *, measure: Callable[[str], object] | None = None,
         progress: Callable[[str], None] | None = None) -> Report:
    """Failure patterns over `selections` (see the module doc)."""
    pairs: list[tuple[Selection, dict, dict]] = []
    skipped: list[tuple[int, str]] = []
    for s in selections:
        rejected = (s.hash_b, s.video_b) if s.chosen == "a" else (s.hash_a, s.video_a)
        chosen = (s.hash_a, s.video_a) if s.chosen == "a" else (s.hash_b, s.video_b)
        try:
            pairs.append((s, video_measures(store, *rejected, measure), video_measures(store, *chosen, measure)))
        except (VideoError, OSError) as e:
            skipped.append((s.id, f"video: {e}"))
        if progress and len(pairs) % 20 == 0 and pairs:
            progress(f"measured {len(pairs)} selection(s)")
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {("all", "all"): []}
    for s, r, c in pairs:
        groups[("all", "all")].append((r, c))
        if s.dimension in DIMENSIONS:
            groups.setdefault((s.dimension, "all"), []).append((r, c))
        groups.setdefault(("all", _group_name(s.prompt)), []).append((r, c))
    found: list[tuple[Pattern, float]] = []
    tests = 0
    for (dim, prompt), items in groups.items():
        if len(items) < MIN_SUPPORT:
            continue
        names = sorted(set.intersection(*(set(r) & set(c) for r, c in items)))
        for name in names:
            rs, cs = [r[name] for r, _ in items], [c[name] for _, c in items]
            diffs = [a - b for a, b in zip(rs, cs) if abs(a - b) > 1e-9 * max(1.0, abs(a), abs(b))]
            n, up = len(diffs), sum(d > 0 for d in diffs)
            if n < MIN_SUPPORT:
                continue
            tests += 1
            support = max(up, n - up)
            if support < MIN_SUPPORT:
                continue
            p = sign_test(up, n)
            ratio = (sum(rs) / sum(cs)) if min(rs + cs) > 0 else None
            diffs.sort()
            median = diffs[n // 2] if n % 2 else (diffs[n // 2 - 1] + diffs[n // 2]) / 2
            found.append((Pattern(dim, prompt, name, "higher" if up * 2 > n else "lower",
                                  None if ratio is None else round(ratio, 4), support, n, p, median), p))
    patterns = tuple(sorted((pat for pat, p in found if p * max(tests, 1) < ALPHA),
                            key=lambda x: (x.p_value, x.dimension != "all", x.prompt_group, -_effect(x), x.measure)))
    note = ""
    if tests == 0:
        note = (f"too thin: {len(pairs)} selection(s) with both videos measured; a pattern needs at least "
                f"{MIN_SUPPORT} in one group")
    return Report(patterns, len(pairs), tests, tuple(skipped), note)


def _effect(p: Pattern) -> float:
    """How far apart rejected and chosen are (a ratio's distance from 1 on a log scale), for ordering."""
    return abs(math.log(p.ratio)) if p.ratio else 0.0


def new_patterns(current: Sequence[Pattern | dict], previous: Sequence[Pattern | dict]) -> list:
    """The patterns of `current` that `previous` (a run's stored patterns, as dicts or Patterns) lacked."""
    def key(p):
        return p.key if isinstance(p, Pattern) else (p["dimension"], p["prompt_group"], p["measure"], p["direction"])

    seen = {key(p) for p in previous}
    return [p for p in current if key(p) not in seen]
