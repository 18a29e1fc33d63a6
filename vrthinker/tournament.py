"""Rank groups of candidate videos through the judgment store: manifests, checks, store-backed comparisons.

`vrthinker.rank` fits and schedules for any `compare(a, b)`; this module gives it one that goes through
the judgment store (a judgment stored before is reused, a new one is judged and stored) and saves the
rankings it produces. `judge rank` parses flags, calls `rank_group` per group and prints.
A group is known by content: its job hashes the prompt and its videos' content hashes (in any order, from
any folder), and the store gets each candidate's absolute path and content hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vrthinker import jsonl
from vrthinker.errors import JudgeError, UsageError
from vrthinker.rank import Ranking, rank
from vrthinker.verdict import BY_DESIGN, DIMENSIONS


@dataclass(frozen=True)
class Group:
    """One ranking task: candidates generated from one prompt."""

    prompt: str
    candidates: tuple[str, ...]
    id: str | None = None


@dataclass(frozen=True)
class GroupResult:
    """A group's ranking and how its comparisons were had: judged now, reused from the store, incomplete."""

    ranking: Ranking
    judged: int
    reused: int
    incomplete: int


def _manifest_items(path: str, text: str) -> list:
    """The groups of a manifest: one JSON document (a group or a list of them), else JSON Lines."""
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except ValueError:
        return [value for _, value in jsonl.records(path, text=text, objects=False)]


def load_manifest(path: str) -> list[Group]:
    """Groups from a JSONL or JSON manifest; relative candidate paths are taken from the manifest's folder."""
    src = Path(path)
    groups = []
    for k, g in enumerate(_manifest_items(path, jsonl.read_text(src)), 1):
        if not isinstance(g, dict) or not isinstance(g.get("candidates"), list):
            raise JudgeError(f"{path}: group {k} needs a \"prompt\" and a \"candidates\" list of paths")
        cands = tuple(str(c if Path(c).is_absolute() else src.parent / c) for c in g["candidates"])
        groups.append(Group(prompt=str(g.get("prompt") or ""), candidates=cands,
                            id=None if g.get("id") is None else str(g["id"])))
    if not groups:
        raise JudgeError(f"{path}: the manifest holds no groups")
    return groups


def check(group: Group, name: str) -> None:
    """User mistakes in one group, each as one clear line: empty prompt, too few, repeated or missing files."""
    if not group.prompt.strip():
        raise UsageError(f"{name}: the prompt is empty: pass the text the videos were generated from")
    if len(group.candidates) < 2:
        raise UsageError(f"{name}: ranking needs at least 2 videos, got {len(group.candidates)}")
    seen = set()
    for c in group.candidates:
        if c in seen:
            raise UsageError(f"{name}: {c} is listed twice")
        seen.add(c)
        if not Path(c).is_file():
            raise JudgeError(f"{c}: file not found")


class StoreCompare:
    """`compare(a, b)` for one group, through the judgment store: a judgment stored before (same videos by
    content, prompt and judge identity) is reused, a new one is judged and stored (`batch.run_batch`)."""

    def __init__(self, judge, store, ident, orders: str, job: str, prompt: str, concurrency: int = 1,
                 names: dict[str, str] | None = None):
        self.judge, self.store, self.ident = judge, store, ident
        self.orders, self.job, self.prompt = orders, job, prompt
        self.names = names or {}  # candidate -> the short name its comparisons' ids show
        self.concurrency = concurrency  # conversations in flight, also for one pair (its two orders together)
        self.judged = self.reused = self.incomplete = 0

    def __call__(self, a: str, b: str) -> dict:
        return self.many([(a, b)], self.concurrency)[0]

    def item_id(self, a: str, b: str) -> str:
        """A comparison's id in the store, as `judge export` and `judge pairs` show it: "a.mp4 vs b.mp4"."""
        return f"{self.names.get(a) or os.path.basename(a)} vs {self.names.get(b) or os.path.basename(b)}"

    def many(self, pairs, concurrency: int = 1) -> list[dict]:
        """Labels for each (a, b), in order; with a served judge `concurrency` of them are judged at once.
        A pair that could not be judged raises JudgeError once the others are stored."""
        from vrthinker.batch import PairRow, run_batch

        start = self.judged + self.reused
        full = [(os.path.abspath(a), os.path.abspath(b)) for a, b in pairs]
        rows = [PairRow(item_id=self.item_id(a0, b0), video1=a, video2=b, prompt=self.prompt, line=start + k + 1,
                        position=start + k) for k, ((a0, b0), (a, b)) in enumerate(zip(pairs, full))]
        seen: dict[str, Any] = {}
        run_batch(self.judge, rows, self.store, job=self.job, orders=self.orders, ident=self.ident,
                  on_item=lambda out: seen.__setitem__(out.item_id, out), concurrency=concurrency)
        outs = [seen[r.item_id] for r in rows]
        for (a, b), out in zip(pairs, outs):
            if out.status == "bad":
                raise JudgeError(out.detail or f"{a} / {b}: {out.reason}")
        for out in outs:
            if out.status == "reused":
                self.reused += 1
            else:
                self.judged += 1
            if out.reason not in BY_DESIGN and any(out.labels.get(d) is None for d in DIMENSIONS):
                self.incomplete += 1  # a label the backend cannot give by design (TA, weight-free) is no failure
        # with the label probabilities where the judge read them: rank() then counts expected win fractions
        return [{**out.labels, **({"probabilities": out.probabilities} if out.probabilities else {})} for out in outs]


JOB_WORDS = 4  # words of the prompt a ranking's job is named by


def job_name(group: Group, hashes: Sequence[str]) -> str:
    """The store's job for a group: its id, else the prompt's first words and a short hash of the prompt and
    its videos' content hashes (sorted: the same videos from another folder, or listed in another order, are
    the same group): "rank:a-robot-rides-a-afe9703a53fe". The hash alone keys it; the words are for people."""
    if group.id:
        return f"rank:{group.id}"
    digest = hashlib.sha256(json.dumps([group.prompt.strip(), *sorted(hashes)]).encode()).hexdigest()[:12]
    words = re.findall(r"[^\W_]+", group.prompt.lower())[:JOB_WORDS]
    return f"rank:{'-'.join(w[:16] for w in words)}-{digest}" if words else f"rank:{digest}"


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """Each path's shortest trailing part that no other path of the group ends with: "b.mp4", or "one/b.mp4"
    where two folders hold a b.mp4 (ids a person can read, still one per candidate)."""
    parts = {p: Path(os.path.abspath(p)).parts for p in paths}
    names = {}
    for p, mine in parts.items():
        for n in range(1, len(mine) + 1):
            tail = mine[-n:]
            if all(q == p or parts[q][-n:] != tail for q in parts):
                break
        names[p] = "/".join(tail)
    return names


def content_hashes(store: Any, group: Group, name: str = "rank") -> dict[str, str]:
    """Each candidate's content hash (the store's cache); two candidates with one content are refused."""
    hashes: dict[str, str] = {}
    seen: dict[str, str] = {}
    for c in group.candidates:
        h = store.file_hash(c)
        if h in seen:
            raise UsageError(f"{name}: {seen[h]} and {c} are the same video (same content)")
        seen[h] = c
        hashes[c] = h
    return hashes


def rank_group(judge: Any, store: Any, ident: Any, group: Group, *, orders: str = "one",
               budget: int | None = None, schedule: str = "adaptive", seed: int = 0,
               concurrency: int = 1) -> GroupResult:
    """Rank one group through the store and save its ranking per dimension (replacing an earlier one).

    With a served judge (`backend.concurrent`) and `concurrency` > 1, each round's pairs are judged with that
    many in flight; the pairs and the ranking are the ones judging them one by one gives."""
    hashes = content_hashes(store, group, group.id or "rank")
    job, prompt = job_name(group, list(hashes.values())), group.prompt.strip()
    compare = StoreCompare(judge, store, ident, orders, job, prompt, concurrency, short_names(group.candidates))
    served = concurrency > 1 and getattr(getattr(judge, "backend", None), "concurrent", False)
    many = (lambda pairs: compare.many(pairs, concurrency)) if served else None
    # with both orders each judgment already covers both positions: one per pair is all there is
    r = rank(list(group.candidates), compare, budget=budget, schedule=schedule, seed=seed,
             max_per_pair=1 if orders == "both" else 2, compare_many=many)
    absolute = {c: os.path.abspath(c) for c in group.candidates}  # stored by absolute path and content
    for d in r.dimensions:
        rows = [{"candidate": absolute[s.candidate], "score": s.score, "stderr": s.stderr,
                 "comparisons": s.wins + s.losses + s.ties} for s in r.standings[d]]
        cov = {absolute[a]: {absolute[b]: v for b, v in row.items()} for a, row in r.covariance[d].items()}
        store.put_ranking(job, prompt, d, rows, model_id=ident.model_id,
                          hashes={absolute[c]: h for c, h in hashes.items()}, covariance=cov)
    for d in r.unranked:  # a dimension the judge gave no label on keeps no older table either
        store.put_ranking(job, prompt, d, [], model_id=ident.model_id)
    return GroupResult(r, compare.judged, compare.reused, compare.incomplete)
