"""`dqa`: absolute scores and a grade per video, A/B choices and the tuner, and both as services for pipelines.

  dqa select --db DB --prompt P --a A.mp4 --b B.mp4 --chosen a [--dimension OA] [--user U] [--time T]
  dqa import-selections FILE.jsonl --db DB
  dqa tune --db DB --model ID_OR_DIR --out ADAPTER_DIR [--max-steps N] [--min-new N] [--max-turns N]
           [--max-length TOKENS] [--samples K] [--temperature T] [--seed N] [--allow-label-swap] [--device cpu]
  dqa tune --db DB --history [--json]
  dqa patterns --db DB [--since RUN] [--json]
  dqa agreement --db DB --model ID_OR_DIR [--adapter DIR]
  dqa score VIDEO... --prompt P [--components C,...] [--vram-budget GB] [--json] | --manifest FILE.jsonl
  dqa serve --media-root DIR [--host H] [--port N] [--db DB] [--token T] [model flags]  (HTTP service)
  dqa mcp --media-root DIR [--transport stdio|http] [--port N] [--db DB] [--token T] [model flags]  (MCP tools)

Exit status: 0 done (a skipped tune run included); 2 a usage mistake (one line on stderr);
3 select/import recorded nothing new (duplicates only); score: a component missing for some video.
"""
from __future__ import annotations

import argparse
import sys

from vrthinker.cliutil import error as cli_error
from vrthinker.cliutil import guarded
from vrthinker.errors import JudgeError, UsageError

EXIT_OK, EXIT_USAGE, EXIT_NOTHING = 0, 2, 3


def error(message: str) -> None:
    cli_error(message, "dqa")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        error(message)
        raise SystemExit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    from vrthinker.cliutil import add_model_args
    from vrthinker.store import default_path

    p = _Parser(prog="dqa", description="Score videos (VBench dimensions, grounding, checklist, weight-free "
                "measures, a grade), record a person's A/B choices and tune the judge on them, and serve both to "
                "pipelines (HTTP, MCP).",
                epilog="Exit status: 0 done; 3 ran, but some video or judgment failed (reasons printed, the rest "
                "stored) or select/import recorded nothing new; 2 bad input or usage; 130 interrupted.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("select", help="record one A/B choice")
    s.add_argument("--db", default=default_path())
    s.add_argument("--prompt", required=True)
    s.add_argument("--a", required=True, metavar="A.mp4")
    s.add_argument("--b", required=True, metavar="B.mp4")
    s.add_argument("--chosen", required=True, choices=["a", "b"])
    s.add_argument("--dimension", default="OA", help="TA, VQ, MQ or OA (default OA)")
    s.add_argument("--user", default="")
    s.add_argument("--time", default=None, help="when the choice was made (ISO 8601; default now)")

    i = sub.add_parser("import-selections", help="record choices from a JSONL file")
    i.add_argument("file")
    i.add_argument("--db", default=default_path())

    t = sub.add_parser("tune", help="train a LoRA adapter with DPO on the selections (sleeptime rule)")
    t.add_argument("--db", default=default_path())
    t.add_argument("--out", metavar="ADAPTER_DIR", help="where the adapter goes (required unless --history)")
    t.add_argument("--max-steps", type=int, default=50)
    t.add_argument("--min-new", type=int, default=1, help="train only when this many new selections arrived")
    t.add_argument("--learning-rate", type=float, default=5e-5)
    t.add_argument("--beta", type=float, default=0.1)
    t.add_argument("--lora-r", type=int, default=16)
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--patience", type=int, default=2)
    t.add_argument("--eval-steps", type=int, default=None)
    t.add_argument("--max-length", type=int, default=None, metavar="TOKENS",
                   help="cut conversations where a judge with this context limit stops serving tool calls "
                        "(default: the profile's max_context_tokens, else 16384)")
    t.add_argument("--samples", type=int, default=4, metavar="K",
                   help="conversations per selection, the greedy one included (default 4)")
    t.add_argument("--temperature", type=float, default=0.7, help="of the sampled conversations (default 0.7)")
    t.add_argument("--seed", type=int, default=0, help="the samples and the trainer follow it (default 0)")
    t.add_argument("--allow-label-swap", action="store_true",
                   help="where no sample reaches a label, build the row the old way (marked synthetic)")
    t.add_argument("--history", action="store_true", help="print every run: steps, losses, agreement, patterns")
    t.add_argument("--json", action="store_true", help="with --history: the same as JSON")
    add_model_args(t)

    pa = sub.add_parser("patterns", help="what the rejected videos have in common against the chosen ones")
    pa.add_argument("--db", default=default_path())
    pa.add_argument("--since", type=int, default=None, metavar="RUN",
                    help="only selections recorded after tune run RUN's last one")
    pa.add_argument("--json", action="store_true")

    from dqa.score.cli import add_parser as add_score

    add_score(sub)

    from dqa.serve.command import add_parser as add_serve

    add_serve(sub)

    from dqa.mcp.command import add_parser as add_mcp

    add_mcp(sub)

    a = sub.add_parser("agreement", help="how often the judge agrees with held-out selections, per dimension")
    a.add_argument("--db", default=default_path())
    add_model_args(a)
    return p


def _print_outcomes(outcomes) -> int:
    for o in outcomes:
        print(o.describe())
    return EXIT_OK if any(o.status != "duplicate" for o in outcomes) else EXIT_NOTHING


def _select(a) -> int:
    from dqa.tune.selections import add, normalize, open_store

    rec = normalize(a.prompt, a.a, a.b, a.chosen, a.dimension, a.user, a.time)
    with open_store(a.db) as store:
        return _print_outcomes(add(store, [rec]))


def _import(a) -> int:
    from dqa.tune.selections import add, open_store, read_jsonl

    records, lines = read_jsonl(a.file)
    with open_store(a.db) as store:
        outcomes = add(store, records, source=str(a.file), lines=lines)
    code = _print_outcomes([o for o in outcomes if o.status != "recorded"])
    n = {k: sum(o.status == k for o in outcomes) for k in ("recorded", "duplicate", "contradiction")}
    print(f"{n['recorded'] + n['contradiction']} recorded, {n['duplicate']} duplicates skipped, "
          f"{n['contradiction']} contradictions")
    return code if outcomes and not (n["recorded"] + n["contradiction"]) else EXIT_OK


def _tune(a) -> int:
    from rich.console import Console
    from rich.table import Table

    from vrthinker.cliutil import quiet_libraries
    from vrthinker.judge import DEFAULT_MODEL

    from dqa.tune.train import TuneSettings, tune

    if a.history:
        return _history(a)
    if a.json:
        raise UsageError("--json goes with --history (a training run prints its table)")
    if not a.out:
        raise UsageError("the following arguments are required: --out")
    if a.backend != "hf":
        raise JudgeError("dqa tune trains the hf (Qwen2.5-VL) judge; --backend must be hf")
    quiet_libraries()
    console = Console(stderr=True)
    settings = TuneSettings(max_steps=a.max_steps, learning_rate=a.learning_rate, beta=a.beta, lora_r=a.lora_r,
                            lora_alpha=2 * a.lora_r, val_fraction=a.val_fraction, patience=a.patience,
                            eval_steps=a.eval_steps, max_length=a.max_length, samples=a.samples,
                            temperature=a.temperature, seed=a.seed, allow_label_swap=a.allow_label_swap)
    r = tune(a.db, a.model or DEFAULT_MODEL, a.out, settings=settings, min_new=a.min_new, device=a.device,
             dtype=a.dtype, revision=a.revision, protocol=a.protocol, max_new_tokens=a.max_new_tokens,
             quantize=a.quantize, adapter=a.adapter, max_turns=a.max_turns,
             log=lambda s: console.print(f"[dim]{s}[/]"))
    if r.status == "skipped":
        print(f"nothing to do: {r.detail}")
        return EXIT_OK
    t = Table(title=f"tune run #{r.run_id}: {r.adapter}", title_justify="left")
    t.add_column("what")
    t.add_column("value", justify="right")
    fmt = lambda x: "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))
    conf = r.model_confidence or {}
    for k, v in (("pairs train / val", f"{r.n_train} / {r.n_val}"), ("steps", r.steps),
                 ("last train loss", r.train_loss), ("best val loss", r.val_loss),
                 ("validation questions", r.val_questions),
                 ("agreement before (val)", r.agreement_before), ("agreement after (val)", r.agreement_after),
                 ("selections per kind", ", ".join(f"{k} {v}" for k, v in r.kinds.items()) or "-"),
                 ("model confidence", _confidence(conf)),
                 ("skipped selections", len(r.skipped)), ("contradicted (left out)", len(r.contradicted)),
                 ("rows per ending", ", ".join(f"{k} {v}" for k, v in r.endings.items()) or "-"),
                 ("longest row (tokens)", r.longest_tokens), ("estimated peak (GB)", r.estimated_peak_gb),
                 ("measured peak (GB)", r.measured_peak_gb), ("seconds per step", r.seconds_per_step)):
        t.add_row(k, fmt(v))
    Console().print(t)
    for sid, kind, why in r.why:
        if kind != "sampled":
            print(f"selection #{sid}: {kind}: {why}")
    if r.new_patterns:
        print(f"{len(r.new_patterns)} new failure pattern(s):")
        for p in r.new_patterns:
            print(f"  {p['text']}")
    elif r.patterns_note:
        print(f"failure patterns: {r.patterns_note}")
    else:
        print("no new failure patterns")
    return EXIT_OK


def _confidence(conf: dict) -> str:
    if not conf:
        return "-"
    text = f"{conf['agreement']:.0%} of the last {conf['n']} validation selection(s)"
    if conf.get("mean_probability") is not None:
        text += f", mean P(person's label) {conf['mean_probability']:.2f}"
    return text


def _history(a) -> int:
    import json

    from dqa.tune.selections import open_store
    from dqa.tune.train import history

    with open_store(a.db) as store:
        rows = history(store)
    if a.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no tune runs yet")
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    for r in rows:
        n_val = r["val_questions"] if r["val_questions"] is not None else r["n_val"]
        pats = "; ".join(p["text"] for p in r["new_patterns"]) or "none"
        print(f"run #{r['run_id']} {r['status']}: steps {r['steps']}, train loss {fmt(r['train_loss'])}, "
              f"val loss {fmt(r['val_loss'])}, agreement {fmt(r['agreement_before'])} -> "
              f"{fmt(r['agreement_after'])} on {n_val} validation question(s), new patterns: {pats}")
    return EXIT_OK


def _patterns(a) -> int:
    import json

    from dqa.tune.api import patterns_report

    report = patterns_report(a.db, a.since)
    if a.json:
        print(json.dumps(report.to_dict(), indent=2))
        return EXIT_OK
    print(f"{report.selections} selection(s) measured, {report.tests} (group, measure) test(s)")
    for sid, why in report.skipped:
        print(f"selection #{sid} left out: {why}")
    if report.note:
        print(report.note)
    elif not report.patterns:
        print("no pattern: the rejected videos differ from the chosen ones no more than chance would")
    for p in report.patterns:
        print(p.describe())
    return EXIT_OK


def _agreement(a) -> int:
    from rich.console import Console
    from rich.table import Table

    from vrthinker.cliutil import load_judge, quiet_libraries
    from vrthinker.verdict import DIMENSIONS

    from dqa.tune.agreement import compare_with_adapter, held_out
    from dqa.tune.selections import open_store

    quiet_libraries()
    with open_store(a.db) as store:
        sels = held_out(store, a.adapter)
    if not sels:
        raise JudgeError("no held-out selections to measure agreement on")
    adapter = a.adapter

    def load(ad):
        a.adapter = ad
        return load_judge(a)

    res = compare_with_adapter(load, sels, adapter)
    t = Table(title=f"agreement with {len(sels)} held-out selection(s)", title_justify="left")
    for c in ("dimension", "n", "base", "with adapter"):
        t.add_column(c, justify="left" if c == "dimension" else "right")
    pct = lambda c: "-" if c is None or not c["n"] else f"{c['agree'] / c['n']:.0%} ({c['agree']}/{c['n']})"
    for d in (*DIMENSIONS, "all"):
        base = res["base"][d]
        if base["n"]:
            t.add_row(d, str(base["n"]), pct(base), pct(res["adapter"][d]) if res["adapter"] else "-")
    Console().print(t)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from dqa.mcp.command import run as _mcp
    from dqa.score.cli import run as _score
    from dqa.serve.command import run as _serve

    commands = {"select": _select, "import-selections": _import, "tune": _tune, "agreement": _agreement,
                "score": _score, "serve": _serve, "mcp": _mcp,
                "patterns": _patterns}

    def run() -> int:
        try:
            a = parser().parse_args(argv)
        except SystemExit as e:
            return int(e.code or 0)
        return commands[a.command](a)

    return guarded(run, "dqa")


if __name__ == "__main__":
    sys.exit(main())
