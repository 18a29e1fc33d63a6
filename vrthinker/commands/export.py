"""Write the judged pairs of a judgment database as JSON lines, one per pair.

`judge export --db judgments.sqlite [--out FILE] [--job NAME] [--include-bad]`
"""
from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
Each line: id, job, status, video1, video2, prompt, orders, labels (for video1 vs video2: 1 = video1
better, 2 = video2 better, 0 = tie, null = missing; both orders combined when judged in both),
reason, detail, reasoning, consistency (share of dimensions where both orders agree), inconsistent and
single_order (dimensions), backend, model_id, revision, adapter, protocol, config (the judge's whole
configuration, the one its judgments are keyed by; null for judgments stored before it was kept), and
per_order: each ordered judgment with its key, the videos as shown, its labels as the model gave them
(1 = the video shown first) and the frames it requested."""


def configure(p: argparse.ArgumentParser) -> None:
    from vrthinker.commands.batch import add_db_argument

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_db_argument(p)
    p.add_argument("--out", default="-", metavar="FILE", help="output .jsonl file (default or '-': stdout)")
    p.add_argument("--job", default=None, help="only this batch (default: all)")
    p.add_argument("--include-bad", action="store_true", help="also write bad rows (status 'bad', with reason)")


def run(a: argparse.Namespace) -> int:
    from rich.console import Console

    from vrthinker.batch import judged_items
    from vrthinker.store import Store

    with Store(a.db, readonly=True) as store:
        lines = [json.dumps(j.to_dict(), ensure_ascii=False) for j in judged_items(store, a.job, a.include_bad)]
    text = "".join(line + "\n" for line in lines)
    if a.out in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text)
        Console(stderr=True).print(f"wrote {len(lines)} pairs to {a.out}", highlight=False)
    return 0
