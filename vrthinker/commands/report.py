"""Write one self-contained HTML file to triage with: a summary, a sortable table of pairs, the rankings.

Then per pair the frames the judge looked at, its labels and reasoning. Written as it goes (bounded memory).

`judge report --db judgments.sqlite --out report.html [--job NAME] [--limit N] [--offset N] [--thumb PX]`
"""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    from vrthinker.commands.batch import add_db_argument

    add_db_argument(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output .html file")
    p.add_argument("--job", default=None, help="only this batch or tournament (default: all)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N pairs in the table and in detail (default: all); the summary counts every pair")
    p.add_argument("--offset", type=int, default=0, metavar="N",
                   help="skip the first N pairs: with --limit, one page of a very large batch (default 0)")
    p.add_argument("--thumb", type=int, default=160, metavar="PX",
                   help="a thumbnail's longer side in pixels, aspect kept (default 160)")


def run(a: argparse.Namespace) -> int:
    from rich.console import Console

    from vrthinker.cliutil import quiet_libraries
    from vrthinker.errors import UsageError
    from vrthinker.report import human_size, write_report
    from vrthinker.store import Store

    if a.thumb < 16 or (a.limit is not None and a.limit < 0) or a.offset < 0:
        raise UsageError("--thumb must be at least 16, --limit and --offset at least 0")
    quiet_libraries()
    with Store(a.db, readonly=True) as store:
        s = write_report(store, a.out, job=a.job, limit=a.limit, offset=a.offset, thumb=a.thumb)
    shown = f"{s.items} pairs" if s.items == s.total else f"{s.items} of {s.total} pairs"
    Console(stderr=True).print(f"wrote {a.out} ({human_size(s.size)}): {shown} ({s.bad} bad), {s.images} thumbnails, "
                               f"{s.rankings} rankings", highlight=False)
    return 0
