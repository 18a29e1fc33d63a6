"""Rank N videos generated from one prompt on TA, VQ, MQ and OA from adaptively chosen pairwise judgments.

    judge rank --prompt P a.mp4 b.mp4 c.mp4 ... [--budget N] [--json]
    judge rank --manifest groups.jsonl [--json]

A manifest is JSON Lines (one group per line) or JSON (one group or a list of groups); a group is
`{"prompt": ..., "candidates": [paths...], "id": optional}`, relative paths resolved from the manifest's folder.
Every judgment goes through the judgment store (`vrthinker.store`), the same file `judge batch` uses
(--db PATH, else $VRTHINKER_DB, else ./judgments.sqlite): a judgment stored by any earlier run of the same
judge is reused, and the judgments and rankings are kept as they are made, so a crash loses at most the
comparisons in flight. Exit status: 0 ranked; 2 bad input or usage.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vrthinker.errors import UsageError
from vrthinker.rank import SCHEDULES, Ranking, default_budget
from vrthinker.tournament import Group, check, load_manifest, rank_group


def configure(p: argparse.ArgumentParser) -> None:
    from vrthinker.cliutil import add_model_args

    p.add_argument("videos", nargs="*", help="candidate video files (all from --prompt)")
    p.add_argument("--prompt", help="the text prompt the videos were generated from")
    p.add_argument("--manifest", metavar="FILE",
                   help='groups to rank, JSONL or JSON: {"prompt": ..., "candidates": [paths], "id": ...}')
    from vrthinker.commands.batch import add_db_argument

    add_db_argument(p, ": stored judgments are reused, new ones and the rankings are saved")
    p.add_argument("--budget", type=int, default=None,
                   help="comparisons per group at most (default: ceil(N log2 N) adaptive, N(N-1)/2 round robin; "
                        "adaptive never takes more than round robin's N(N-1)/2)")
    p.add_argument("--schedule", choices=SCHEDULES, default="adaptive",
                   help="adaptive: Swiss rounds then most-informative pairs; round_robin: every pair once")
    p.add_argument("--orders", choices=["one", "both"], default="one",
                   help="both: every comparison also judges (b, a) and keeps the labels both orders agree on")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairing (same seed, same pairs)")
    p.add_argument("--json", action="store_true", help="print one JSON object per group instead of tables")
    add_model_args(p)


def render(group: Group, r: Ranking, stats: dict, console) -> None:
    from rich.table import Table

    from vrthinker.cliutil import NAMES

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
    for d, why in r.unranked.items():
        console.print(f"{d}  {NAMES.get(d, d)}: no ranking: {why}", highlight=False)
    console.print(f"comparisons: {r.comparisons} of budget {r.budget} ({r.schedule}, pairing on {r.by}; "
                  f"round robin would take {len(r.candidates) * (len(r.candidates) - 1) // 2}); "
                  f"judged: {stats['judged']}, reused from the store: {stats['reused']}, "
                  f"incomplete verdicts: {stats['incomplete']}")
    console.print("score: Bradley-Terry log-odds against a typical candidate (ties count half a win each way); "
                  "± stderr from the Fisher information at the fit")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vrthinker.batch import identify
    from vrthinker.cliutil import BATCH_CONCURRENCY, load_judge, on_interrupt, quiet_libraries
    from vrthinker.store import Store

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
    db = args.db  # the store judge batch uses by default: hours of judging survive a crash
    console = Console()
    incomplete = 0
    on_interrupt(lambda: f"the comparisons judged so far are saved in {db}; run the same command again to resume "
                         "(stored judgments are reused, not judged again)")
    with Store(db) as store:
        ident = identify(judge, adapter=args.adapter, store=store)  # checkpoint files hashed through the store
        for g in groups:
            res = rank_group(judge, store, ident, g, orders=args.orders, budget=args.budget,
                             schedule=args.schedule, seed=args.seed,
                             concurrency=args.concurrency or BATCH_CONCURRENCY)
            r = res.ranking
            incomplete += res.incomplete
            stats = {"judged": res.judged, "reused": res.reused, "incomplete": res.incomplete,
                     "orders": args.orders, "db": None if db == ":memory:" else db}
            if args.json:
                out = {"id": g.id, "prompt": g.prompt, **r.to_dict(), **stats,
                       "default_budget": default_budget(len(g.candidates), args.schedule)}
                print(json.dumps(out, ensure_ascii=False), flush=True)
            else:
                render(g, r, stats, console)
    return 3 if incomplete else 0  # the project's one rule: 3 when some judgment failed or ended incomplete
