"""Judge every pair in a .jsonl or .csv file with one loaded model; results go to SQLite and a re-run resumes.

`judge batch PAIRS --db judgments.sqlite [--orders both|one] [--job NAME] [model flags]`
"""
from __future__ import annotations

import argparse
from pathlib import Path

EXIT_OK, EXIT_INCOMPLETE = 0, 3  # 3: a row failed or ended incomplete (the rest is stored; a rerun resumes)

EPILOG = """\
PAIRS: one row per pair with fields video1, video2, prompt and an optional id (default: the row number).
Relative video paths are taken against the PAIRS file's folder, else the current directory.

Every ordered judgment is stored under a key made of both videos' content hashes, the prompt and the judge's
whole configuration (model id and revision or a local checkpoint's fingerprint, adapter, quantization, dtype,
device, --max-turns, --max-new-tokens, decoding settings, protocol profile and backend), stored beside it
(see 'judge export'): a re-run skips what is done, a changed judge or video is judged again. Killing the
process loses at most the pair in flight.
Rows with a missing, unreadable or undecodable video are recorded as bad (see 'judge export --include-bad')
and the batch goes on. The last line sums the run up: judged=N reused=M failed=K (K: bad rows).

Exit status: 0 every row judged; 3 finished, but some rows are bad; 2 bad input or usage."""


def add_db_argument(p: argparse.ArgumentParser, help_extra: str = "") -> None:
    """--db, shared by batch, export, pairs and report."""
    from vrthinker.store import DB_ENV, DEFAULT_DB, default_path

    p.add_argument("--db", default=default_path(), metavar="PATH",
                   help=f"SQLite judgment database (default: ${DB_ENV} if set, else ./{DEFAULT_DB}){help_extra}")


def configure(p: argparse.ArgumentParser) -> None:
    from vrthinker.cli import add_model_args

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("pairs", metavar="PAIRS", help="a .jsonl or .csv file of pairs (video1, video2, prompt, id)")
    add_db_argument(p)
    p.add_argument("--job", default=None,
                   help="name of this batch in the database (default: the PAIRS file name without extension)")
    p.add_argument("--orders", choices=["one", "both"], default="both",
                   help="both (default, for batches): judge each pair in both orders and keep what both agree "
                        "on, so stored data is free of position bias and the run reports its position "
                        "consistency; one: only (video1, video2), half the cost")
    add_model_args(p)


def run(a: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from vrthinker.batch import identify, read_pairs, run_batch
    from vrthinker.cli import load_judge, quiet_libraries
    from vrthinker.cliutil import BATCH_CONCURRENCY, on_interrupt
    from vrthinker.store import Store
    from vrthinker.commands import progress_bar

    rows = read_pairs(a.pairs)  # a malformed file fails before the model loads
    job = a.job or Path(a.pairs).stem
    console = Console(stderr=True)
    with Store(a.db) as store:
        quiet_libraries()
        judge = load_judge(a)
        ident = identify(judge, adapter=a.adapter, store=store)
        with progress_bar(console) as progress:
            task = progress.add_task(f"judging {job}", total=len(rows), status="")
            tally = {"judged": 0, "reused": 0, "bad": 0}
            on_interrupt(lambda: f"{tally['judged'] + tally['reused']} of {len(rows)} pairs are saved in {a.db}; "
                                 "run the same command again to resume (saved pairs are not judged again)")

            def step(out) -> None:
                tally[out.status] += 1
                progress.update(task, advance=1, status=f"{tally['judged']} judged, {tally['reused']} reused, "
                                                        f"{tally['bad']} bad")

            s = run_batch(judge, rows, store, job=job, orders=a.orders, ident=ident, on_item=step,
                          concurrency=a.concurrency or BATCH_CONCURRENCY)
    t = Table(title=f"batch {job}: {s.items} rows in {s.seconds:.1f}s", title_justify="left")
    for name in ("judged", "reused from cache", "bad", "incomplete", "judgments written"):
        t.add_column(name, justify="right")
    t.add_row(str(s.judged), str(s.reused), str(s.bad), str(s.incomplete), str(s.judgments_written))
    out = Console(soft_wrap=True)
    out.print(t)
    if a.orders == "both":
        if s.consistency is None:
            out.print("position consistency: n/a (no dimension labelled in both orders)")
        else:
            dims = ", ".join(f"{d} {ag / c:.0%}" for d, (ag, c) in s.per_dimension.items() if c)
            out.print(f"position consistency: {s.consistency:.1%} of {s.compared} dimension judgments agree "
                      f"in both orders ({dims})")
    out.print(f"model: {ident.model_id}{'@' + ident.revision if ident.revision else ''}  "
              f"protocol: {ident.protocol}  backend: {ident.backend}  database: {a.db}")
    for b in s.bad_rows[:10]:
        out.print(f"[yellow]bad row {b.item_id}:[/] {b.reason} - {b.detail}", highlight=False)
    if len(s.bad_rows) > 10:
        out.print(f"... and {len(s.bad_rows) - 10} more bad rows (judge export --include-bad)")
    out.print(f"batch {job}: judged={s.judged} reused={s.reused} failed={s.bad} incomplete={s.incomplete} "
              f"written={s.judgments_written} seconds={s.seconds:.1f}", highlight=False)
    return EXIT_INCOMPLETE if s.bad or s.incomplete else EXIT_OK
