"""Measure a judge on a video preference benchmark (VideoGen-RewardBench, GenAI-Bench, MJ-Bench-Video).

`judge eval --benchmark NAME --data DIR [--orders both] [--limit N] [--db PATH] [--json] [model flags]`
"""
from __future__ import annotations

import argparse
import json
import math

EPILOG = """\
DIR is the local copy of the benchmark (nothing is downloaded):
  videogen-rewardbench  the VideoGen-RewardBench folder: videogen-rewardbench.csv and videos/ (videos.zip)
  genai-bench           GenAI-Bench: video_generation/test-*.parquet (or a .jsonl/.json/.csv export), with
                        the videos under DIR/videos/ named as in their URLs
  mjbench-video         MJ-Bench-Video: test.json and videos/test/*.mp4
Pairs whose video is not in the local copy are listed and left out (they are not given to the judge).

Coverage comes first: judged pairs / given pairs. A given pair whose judgment failed (an undecodable video,
a server error, a conversation that ended without an answer: token or turn limit, no answer, a malformed
tool call) counts as wrong in every metric, as the field scores an unparseable answer; the reasons are
listed with their counts. Accuracy over the judged pairs alone is reported beside it, labelled as such.

Metrics, per dimension the benchmark labels (TA, VQ, MQ, OA), with bootstrap 95% intervals:
  w/o ties  accuracy over pairs humans did not call a tie (a predicted tie is wrong)
  w/ ties   3-class accuracy over all labelled pairs; for score judges (--backend metrics) the
            Ties-Matter threshold sweep, reported with its threshold
  a missing prediction (no answer) counts as wrong and is reported separately; the table shows "–"
            for a dimension the judge labelled on no pair (e.g. TA for --backend metrics)
  with --orders both: position consistency, the share of labels both orders agree on
  with label probabilities (a judge that reads them): per dimension ECE and Brier score, a reliability
            table, accuracy at falling coverage (surest calls first) and the tie threshold swept over
            the top label's probability (--json: calibration {dim: {ece, brier, n}}, calibration_detail)

Every ordered judgment goes through the judgment store, the same file 'judge batch' uses (--db PATH, else
$VRTHINKER_DB, else ./judgments.sqlite): a re-run resumes, and judgments already made by 'judge batch' with
the same model are reused.

Exit status: 0 every given pair judged; 3 evaluated, but some pairs failed (reasons and counts printed);
2 bad input or usage."""


def _benchmarks():
    """The `eval` package (benchmarks, metrics, the judged join) lives beside `vrthinker` in the source tree."""
    try:
        from vrthinker_eval import benchmarks, judged, metrics
    except ImportError as e:
        from vrthinker.errors import JudgeError

        raise JudgeError(f"'judge eval' needs the eval/ package of the vrthinker source tree ({e}); run it "
                         "from a checkout (pip install -e .)") from None
    return benchmarks, metrics, judged


def configure(p: argparse.ArgumentParser) -> None:
    from vrthinker.cliutil import add_model_args

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--benchmark", required=True, choices=list(_benchmarks()[0].BENCHMARKS),
                   help="which benchmark")
    p.add_argument("--data", required=True, metavar="DIR", help="the benchmark's local copy (a folder or its "
                   "annotation file)")
    p.add_argument("--orders", choices=["one", "both"], default="one",
                   help="both: judge each pair in both orders, combine them (disagreement = tie) and report "
                        "position consistency; one (default): only (video1, video2)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N pairs whose videos are present (a quick check)")
    from vrthinker.commands.batch import add_db_argument

    add_db_argument(p, ": a re-run resumes, and judgments 'judge batch' made with the same model are reused")
    p.add_argument("--json", action="store_true", help="print one JSON object with every metric")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                   help="bootstrap resamples for the 95%% intervals (0: none; default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add_model_args(p)


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _cell(m, ci: bool = True) -> str:
    """A percentage with its interval; "–" when nothing counts or the judge labelled none of the rows."""
    if m is None or m.value is None or getattr(m, "missing", 0) == m.n:
        return "–"
    interval = f" [{_pct(m.ci[0])}, {_pct(m.ci[1])}]" if ci and m.ci else ""
    return f"{_pct(m.value)}{interval}"


def markdown_table(title: str, report, orders: str, judged_only=None) -> str:
    """The paper-style row: per dimension accuracy w/o and w/ ties (95% CI), n, and position consistency.

    `report` counts every given pair (a failed one as wrong); `judged_only`, when some pairs failed, adds a
    second row over the judged pairs alone, labelled as such."""
    dims = list(report.dimensions)
    head = ["benchmark"]
    for d in dims:
        head += [f"{d} w/o ties", f"{d} w/ ties"]
    head.append("n")
    if orders == "both":
        head.append("pos. consistency")

    def row(name: str, rep) -> str:
        cells = [name]
        for d in dims:
            r = rep.dimensions[d]
            cells += [_cell(r.without_ties), _cell(r.reported_with_ties)]
        cells.append(str(rep.examples))
        if orders == "both":
            cells.append(_cell(rep.consistency))
        return "| " + " | ".join(cells) + " |"

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
             row(title, report)]
    if judged_only is not None:
        lines.append(row(f"{title} (judged pairs only)", judged_only))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the command


def run(a: argparse.Namespace) -> int:
    from rich.console import Console

    from vrthinker.batch import identify
    from vrthinker.cliutil import BATCH_CONCURRENCY, EXIT_INCOMPLETE, EXIT_OK, load_judge, quiet_libraries
    from vrthinker.errors import UsageError
    from vrthinker.store import Store
    from vrthinker.commands import progress_bar

    if a.bootstrap < 0:
        raise UsageError(f"--bootstrap must be 0 or more, got {a.bootstrap}")
    benchmarks, metrics, judged = _benchmarks()
    bench = benchmarks.BENCHMARKS[a.benchmark]
    loaded = bench.load(a.data, a.limit)  # a bad data dir fails before the model loads
    if not loaded.examples:
        why = f"; first: {loaded.skipped[0][0]}: {loaded.skipped[0][1]}" if loaded.skipped else ""
        raise UsageError(f"{a.data}: no usable {bench.title} pairs ({len(loaded.skipped)} skipped{why})")
    from vrthinker.cliutil import on_interrupt

    db = a.db  # the store judge batch uses by default: a crash after hours of judging loses nothing
    err = Console(stderr=True)
    with Store(db) as store:
        quiet_libraries()
        judge = load_judge(a)
        ident = identify(judge, adapter=a.adapter)
        with progress_bar(err) as progress:
            task = progress.add_task(f"{bench.name}", total=len(loaded.examples), status="")
            tally = {"judged": 0, "reused": 0, "bad": 0}
            on_interrupt(lambda: f"{tally['judged'] + tally['reused']} of {len(loaded.examples)} pairs are saved "
                                 f"in {db}; run the same command again to resume (saved pairs are not judged again)")

            def step(out) -> None:
                tally[out.status] += 1
                progress.update(task, advance=1, status=f"{tally['judged']} judged, {tally['reused']} reused, "
                                                        f"{tally['bad']} bad")

            joined = judged.judge_benchmark(judge, loaded, store, job=f"eval/{bench.name}", orders=a.orders,
                                            ident=ident, on_item=step,
                                            concurrency=a.concurrency or BATCH_CONCURRENCY)
    def report_of(j):
        return metrics.evaluate(j.human, j.predicted, dimensions=bench.dimensions,
                                forward=j.forward if a.orders == "both" else None,
                                reverse=j.reverse if a.orders == "both" else None,
                                scores=j.scores if any(s for s in j.scores) else None,
                                bootstrap=a.bootstrap, seed=a.seed)

    report = report_of(joined)  # every given pair: a failed one counts as wrong
    judged_report = report  # over the judged pairs alone: the same unless some failed
    if joined.failed:
        judged_report = report_of(joined.judged_only()) if any(joined.judged) else None
    table = markdown_table(bench.title, report, a.orders, judged_report if joined.failed else None)
    skipped = [{"id": i, "reason": why} for i, why in loaded.skipped]
    failures = [{"id": i, "reason": why, "detail": detail} for i, why, detail in joined.failed]
    given, judged_n = len(joined.examples), sum(joined.judged)
    calib = _calibration(joined, bench.dimensions)  # {} when the judge read no label probabilities
    source = getattr(judge, "profile_source", "") or ""
    if a.json:
        print(json.dumps({
            "benchmark": bench.name, "title": bench.title, "data": str(a.data), "source": loaded.source,
            "orders": a.orders, "limit": a.limit, "db": None if db == ":memory:" else db,
            "model": {"model_id": ident.model_id, "revision": ident.revision, "protocol": ident.protocol,
                      "profile_source": source, "backend": ident.backend, "adapter": ident.adapter},
            "given": given, "judged": judged_n, "coverage": joined.coverage, "failed": joined.reasons(),
            "evaluated": given, "failures": failures, "skipped": skipped, "metrics": report.to_dict(),
            "metrics_judged_only": judged_report.to_dict() if judged_report is not None else None,
            "calibration": {d: c.summary() for d, c in calib.items()} or None,
            "calibration_detail": {d: c.to_dict() for d, c in calib.items()} or None,
            "table": table,
        }, ensure_ascii=False))
        return EXIT_INCOMPLETE if joined.failed else EXIT_OK
    out = Console()
    out.print(coverage_line(given, judged_n, joined.reasons()), highlight=False)
    _print_details(out, bench, report, a.orders, skipped, failures, ident, db, loaded.source, source)
    if calib:
        _print_calibration(out, calib)
    print(table)
    return EXIT_INCOMPLETE if joined.failed else EXIT_OK


def _calibration(joined, dimensions) -> dict:
    """Per dimension: how the judge's label probabilities bear out (vrthinker_eval.calibration); {} without them."""
    from vrthinker_eval import calibration

    probs = getattr(joined, "probabilities", ())
    return calibration.calibration(joined.human, probs, dimensions) if calibration.has_probabilities(probs) else {}


def _print_calibration(out, calib: dict) -> None:
    """The calibration table: ECE, Brier, accuracy at 50% coverage and the probability tie sweep, per dimension;
    then each dimension's reliability rows."""
    from rich.table import Table

    t = Table(title="label probabilities (3-class, top label)", title_justify="left")
    for name in ("dim", "n", "ECE", "Brier", "acc @100%", "acc @50%", "tie sweep (t)"):
        t.add_column(name, justify="right")
    for d, c in calib.items():
        cov = {k: acc for k, _, acc in c.coverage}
        sweep = "–" if c.tie_accuracy is None else f"{_pct(c.tie_accuracy)} ({c.tie_threshold:.3f})"
        t.add_row(d, str(c.n), "–" if c.ece is None else f"{c.ece:.3f}", "–" if c.brier is None else f"{c.brier:.3f}",
                  _pct(cov.get(1.0)), _pct(cov.get(0.5)), sweep)
    out.print(t)
    for d, c in calib.items():
        rows = ", ".join(f"[{b.low:.1f},{b.high:.1f}) {b.n}: {b.confidence:.2f}->{b.accuracy:.2f}"
                         for b in c.reliability if b.n)
        out.print(f"reliability {d} (top probability bin, rows: said -> right): {rows or '–'}", highlight=False)


def coverage_line(given: int, judged: int, reasons: dict[str, int]) -> str:
    """The first line of a run: judged / given, and why the others failed (reason and count)."""
    line = f"coverage: {judged} of {given} pairs judged ({100 * judged / given:.1f}%)" if given else "coverage: -"
    if reasons:
        line += "; failed (counted wrong): " + ", ".join(f"{k} {v}" for k, v in reasons.items())
    return line


def _print_details(out, bench, report, orders: str, skipped, failures, ident, db: str, source: str,
                   profile_source: str = "") -> None:
    from rich.table import Table

    t = Table(title=f"{bench.title}: {report.examples} pairs given, a failed one counted wrong", title_justify="left")
    for name in ("dim", "labelled", "ties", "w/o ties (n, missing)", "w/ ties 3-class", "w/ ties sweep (eps)",
                 *(("consistency",) if orders == "both" else ())):
        t.add_column(name, justify="right")
    for d, r in report.dimensions.items():
        w = r.without_ties
        sweep = "–" if r.tie_sweep is None or r.tie_sweep.value is None else \
            f"{_cell(r.tie_sweep, False)} ({r.tie_sweep.threshold:.4g})"
        cells = [d, str(r.labelled), str(r.ties), f"{_cell(w, False)} ({w.n}, {w.missing})",
                 _cell(r.with_ties, False), sweep]
        if orders == "both":
            c = r.consistency
            cells.append(f"{_cell(c, False)} (n={c.n})" if c else "–")
        t.add_row(*cells)
    out.print(t)
    for d, r in report.dimensions.items():
        rows = ", ".join(f"{name}: {'/'.join(map(str, c))}"
                         for name, c in zip(("video1", "video2", "tie"), r.confusion.counts))
        out.print(f"confusion {d} (human -> predicted video1/video2/tie/missing): {rows}", highlight=False)
    out.print(f"model: {ident.model_id}{'@' + ident.revision if ident.revision else ''}  protocol: "
              f"{ident.protocol}{f' ({profile_source})' if profile_source else ''}  backend: {ident.backend}  "
              f"orders: {orders}  "
              f"database: {'(in memory)' if db == ':memory:' else db}", highlight=False)
    out.print(f"data: {source}", highlight=False)
    for rows, what in ((failures, "pairs failed (counted wrong in every metric above)"),
                       (skipped, "pairs skipped: not in the local copy (not given to the judge)")):
        if not rows:
            continue
        out.print(f"[yellow]{len(rows)} {what}[/]:")
        for s in rows[:10]:
            detail = f" ({s['detail']})" if s.get("detail") else ""
            out.print(f"  {s['id']}: {s['reason']}{detail}", highlight=False)
        if len(rows) > 10:
            out.print(f"  ... and {len(rows) - 10} more (--json lists all)")
