"""Rank N videos generated from one prompt on TA, VQ, MQ and OA from adaptively chosen pairwise judgments.

    judge rank --prompt P a.mp4 b.mp4 c.mp4 ... [--budget N] [--json]
    judge rank --manifest groups.jsonl [--json]

A manifest is JSON Lines (one group per line) or JSON (one group or a list of groups); a group is
`{"prompt": ..., "candidates": [paths...], "id": optional}`, relative paths resolved from the manifest's folder.
Every judgment goes through the judgment store (`vrthinker.store`): with --db PATH (or $VRTHINKER_DB) a
judgment stored by any earlier run of the same judge is reused and the rankings are saved; without, the
store lives in memory for this run. Exit status: 0 ranked; 2 bad input or usage.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import JudgeError, UsageError
from ..rank import SCHEDULES, Ranking, default_budget, rank
from ..verdict import DIMENSIONS


@dataclass(frozen=True)
class Group:
    """One ranking task: candidates generated from one prompt."""

    prompt: str
    candidates: tuple[str, ...]
    id: str | None = None


def configure(p: argparse.ArgumentParser) -> None:
    from ..cli import add_model_args

    p.add_argument("videos", nargs="*", help="candidate video files (all from --prompt)")
    p.add_argument("--prompt", help="the text prompt the videos were generated from")
    p.add_argument("--manifest", metavar="FILE",
                   help='groups to rank, JSONL or JSON: {"prompt": ..., "candidates": [paths], "id": ...}')
    p.add_argument("--db", metavar="PATH", default=None,
                   help="SQLite judgment store (default $VRTHINKER_DB, else in memory for this run): stored "
                        "judgments are reused, new ones and the rankings are saved")
    p.add_argument("--budget", type=int, default=None,
                   help="comparisons per group at most (default: ceil(N log2 N) adaptive, N(N-1)/2 round robin)")
    p.add_argument("--schedule", choices=SCHEDULES, default="adaptive",
                   help="adaptive: Swiss rounds then most-informative pairs; round_robin: every pair once")
    p.add_argument("--orders", choices=["one", "both"], default="one",
                   help="both: every comparison also judges (b, a) and keeps the labels both orders agree on")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairing (same seed, same pairs)")
    p.add_argument("--json", action="store_true", help="print one JSON object per group instead of tables")
    add_model_args(p)


def load_manifest(path: str) -> list[Group]:
    """Groups from a JSONL or JSON manifest; relative candidate paths are taken from the manifest's folder."""
    src = Path(path)
    try:
        text = src.read_text(encoding="utf-8")
    except OSError as e:
        raise JudgeError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except ValueError:
        items = []
        for k, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as e:
                    raise JudgeError(f"{path}:{k}: not JSON ({e.msg})") from None
    groups = []
    for k, g in enumerate(items, 1):
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

    def __init__(self, judge, store, ident, orders: str, job: str, prompt: str):
        self.judge, self.store, self.ident = judge, store, ident
        self.orders, self.job, self.prompt = orders, job, prompt
        self.judged = self.reused = self.incomplete = 0

    def __call__(self, a: str, b: str) -> dict:
        from ..batch import PairRow, run_batch

        position = self.judged + self.reused
        row = PairRow(item_id=f"{a}\t{b}", video1=os.path.abspath(a), video2=os.path.abspath(b),
                      prompt=self.prompt, line=position + 1, position=position)
        seen = []
        run_batch(self.judge, [row], self.store, job=self.job, orders=self.orders, ident=self.ident,
                  on_item=seen.append)
        out = seen[0]
        if out.status == "bad":
            raise JudgeError(out.detail or f"{a} / {b}: {out.reason}")
        if out.status == "reused":
            self.reused += 1
        else:
            self.judged += 1
        if any(out.labels.get(d) is None for d in DIMENSIONS):
            self.incomplete += 1
        return dict(out.labels)


def job_name(group: Group) -> str:
    """The store's job for a group: its id, else a short hash of its prompt and candidates."""
    if group.id:
        return f"rank:{group.id}"
    digest = hashlib.sha256(json.dumps([group.prompt, *group.candidates]).encode()).hexdigest()[:12]
    return f"rank:{digest}"


def render(group: Group, r: Ranking, stats: dict, console) -> None:
    from rich.table import Table

    from ..cli import NAMES

    head = f"[bold]{group.id + ': ' if group.id else ''}{group.prompt}[/]"
    console.print(head)
    for d in r.dimensions:
        t = Table(title=f"{d}  {NAMES.get(d, d)}", title_justify="left")
        for col, just in (("rank", "right"), ("candidate", "left"), ("score", "right"), ("± stderr", "right"),
                          ("95% interval", "right"), ("W-L-T", "right")):
            t.add_column(col, justify=just)
        for k, s in enumerate(r.standings[d], 1):
            lo, hi = s.interval
            t.add_row(str(k), Path(s.candidate).name, f"{s.score:+.2f}", f"{s.stderr:.2f}",
                      f"[{lo:+.2f}, {hi:+.2f}]", f"{s.wins}-{s.losses}-{s.ties}")
        console.print(t)
    console.print(f"comparisons: {r.comparisons} of budget {r.budget} ({r.schedule}, pairing on {r.by}; "
                  f"round robin would take {len(r.candidates) * (len(r.candidates) - 1) // 2}); "
                  f"judged: {stats['judged']}, reused from the store: {stats['reused']}, "
                  f"incomplete verdicts: {stats['incomplete']}")
    console.print("score: Bradley-Terry log-odds against a typical candidate (ties count half a win each way); "
                  "± stderr from the Fisher information at the fit")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..batch import identify
    from ..cli import load_judge, quiet_libraries
    from ..store import DB_ENV, Store

    if args.manifest and (args.videos or args.prompt):
        raise UsageError("give either videos with --prompt or --manifest, not both")
    if args.manifest:
        groups = load_manifest(args.manifest)
    else:
        if args.prompt is None:
            raise UsageError("--prompt is required with videos (or pass --manifest FILE)")
        groups = [Group(prompt=args.prompt, candidates=tuple(args.videos))]
    names = [g.id or (f"group {k}" if args.manifest else "rank") for k, g in enumerate(groups, 1)]
    for g, name in zip(groups, names):
        check(g, name)
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget must be at least 1, got {args.budget}")
    quiet_libraries()
    judge = load_judge(args)
    ident = identify(judge, adapter=args.adapter)
    db = args.db or os.environ.get(DB_ENV) or ":memory:"  # in memory: judgments reused within this run only
    console = Console()
    with Store(db) as store:
        for g in groups:
            prompt = g.prompt.strip()
            compare = StoreCompare(judge, store, ident, args.orders, job_name(g), prompt)
            # with both orders each judgment already covers both positions: one per pair is all there is
            r = rank(list(g.candidates), compare, budget=args.budget, schedule=args.schedule, seed=args.seed,
                     max_per_pair=1 if args.orders == "both" else 2)
            for d in r.dimensions:
                store.put_ranking(job_name(g), prompt, d, r.standings[d], model_id=ident.model_id)
            stats = {"judged": compare.judged, "reused": compare.reused, "incomplete": compare.incomplete,
                     "orders": args.orders, "db": None if db == ":memory:" else db}
            if args.json:
                out = {"id": g.id, "prompt": g.prompt, **r.to_dict(), **stats,
                       "default_budget": default_budget(len(g.candidates), args.schedule)}
                print(json.dumps(out, ensure_ascii=False), flush=True)
            else:
                render(g, r, stats, console)
    return 0
