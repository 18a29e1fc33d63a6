"""`judge V1 V2 --prompt P`: a thin command line over `vrthinker.Judge`.

Exit status (every command of the project): 0 done (a dimension the backend cannot give by design, such as TA
from the weight-free judge, is reported, not a failure); 3 ran, but some judgment failed or ended incomplete (the
reasons are printed, what was judged is stored); 2 bad input or usage; 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vrthinker.cliutil import (EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, NAMES, add_model_args, check_model_args, error,
                      guarded, load_judge, quiet_libraries)
from vrthinker.errors import JudgeError
from vrthinker.verdict import DIMENSIONS, LABEL_NAMES, REASONS, Verdict

__all__ = ["main", "compare_parser", "render_verdict", "exit_code", "SUBCOMMANDS", "EXIT_OK", "EXIT_USAGE",
           "EXIT_INCOMPLETE", "NAMES", "add_model_args", "error", "guarded", "load_judge", "quiet_libraries"]

# `judge SUBCOMMAND ...`: each module has `configure(parser)` and `run(args) -> exit status`, imported
# only when its subcommand is used. Anything else is `judge V1 V2 --prompt P`.
SUBCOMMANDS = {
    "batch": "vrthinker.commands.batch",
    "eval": "vrthinker.commands.eval",
    "export": "vrthinker.commands.export",
    "rank": "vrthinker.commands.rank",
    "pairs": "vrthinker.commands.pairs",
    "report": "vrthinker.commands.report",
}


def summary(module: str) -> str:
    """The first line of a module's docstring, read from its source (nothing is imported)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    try:
        doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) if spec else None
    except (OSError, SyntaxError, TypeError):
        doc = None
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's wrapping everywhere but the epilog, whose lines (one per subcommand) are kept as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def commands_epilog() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary(mod)}" for name, mod in sorted(SUBCOMMANDS.items())]
    return ("other commands (judge COMMAND --help for their flags):\n" + "\n".join(lines) +
            "\n\nExit status: 0 done (TA that the weight-free judge cannot give is not a failure); 3 some "
            "judgment failed or ended incomplete (reasons printed, the rest stored); 2 bad input or usage; "
            "130 interrupted.")


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="judge", description="Compare two videos generated from one prompt: which is better on "
        "Text Alignment, Visual Quality, Motion Quality and Overall.",
        epilog=commands_epilog(), formatter_class=_HelpFormatter)
    p.add_argument("video1", help="first video file")
    p.add_argument("video2", help="second video file")
    p.add_argument("--prompt", required=True, help="the text prompt both videos were generated from")
    p.add_argument("--json", action="store_true", help="print one JSON verdict instead of a table")
    p.add_argument("--orders", choices=["one", "both"], default="one",
                   help="both: also judge (video2, video1) and keep only labels both orders agree on")
    p.add_argument("--trace", metavar="FILE", help="write every turn (rendered text, images, reply, cost) as JSON")
    from vrthinker.store import default_path

    p.add_argument("--db", default=default_path(), metavar="PATH",
                   help="the judgment store this comparison is kept in, as judge batch keeps its pairs (default: "
                        "$VRTHINKER_DB if set, else ./judgments.sqlite)")
    p.add_argument("--combine", choices=["labels", "probabilities"], default="labels",
                   help="with --orders both: labels (default: disagreeing orders give a tie) or probabilities "
                        "(each label is the argmax of both orders' label probabilities averaged)")
    add_model_args(p)
    return p


def exit_code(v: Verdict) -> int:
    if v.reason == "bad_video":
        return EXIT_USAGE
    return EXIT_OK if v.as_designed else EXIT_INCOMPLETE


def render_verdict(v: Verdict, console) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from rich.markup import escape

    source = v.extra.get("profile_source")  # which conversation the model got, and why: above the labels
    t = Table(title=escape(f"{Path(v.videos[0]).name}  vs  {Path(v.videos[1]).name}\nprofile: {v.protocol}"
                           + (f" ({source})" if source else "")), title_justify="left")
    t.add_column("dimension")
    t.add_column("label", justify="center")
    t.add_column("winner")
    probs = v.probabilities or {}
    if probs:  # the label's own probability (both orders averaged with --orders both)
        t.add_column("P", justify="right")
    for d in DIMENSIONS:
        lab = v.labels.get(d)
        winner = "[dim]missing[/]" if lab is None else LABEL_NAMES[lab]
        p = "" if lab is None or d not in probs else f"{float(probs[d][str(lab)]):.2f}"
        t.add_row(f"{d}  {NAMES[d]}", "-" if lab is None else str(lab), winner, *((p or "-",) if probs else ()))
    console.print(t)
    if v.extra.get("no_probabilities"):
        console.print(f"label probabilities: none ({escape(str(v.extra['no_probabilities']))})", highlight=False)
    console.print(f"prompt: {v.prompt}")
    if v.frames_requested:
        asked = "; ".join(f"turn {t.index + 1}: {list(t.requested)}" for t in v.turns if t.action == "tool_call")
        console.print(f"frames requested: {asked}")
    elif v.turns:
        console.print("frames requested: none (judged on the initial frames)")
    else:  # a judge with no conversation (the weight-free one) measures the whole videos
        frames = [((v.extra.get("scores") or {}).get(k) or {}).get("frames") for k in ("video1", "video2")]
        seen = " and ".join(str(f) for f in frames if f) or "all"
        console.print(f"frames: measured over the whole videos ({seen} frames), no frame requests")
    console.print(f"model: {v.model_id}  protocol: {v.protocol}  backend: {v.backend}  "
                  f"turns: {len(v.turns)}  time: {v.timings.get('total_s', 0):.1f}s")
    if v.per_order:
        c = v.extra.get("consistency")
        console.print(f"orders: both; position consistency {'n/a' if c is None else f'{c:.0%}'}; "
                      f"inconsistent (set to tie): {', '.join(v.extra.get('inconsistent') or []) or 'none'}")
        if v.extra.get("tv_distance") is not None:  # the soft figure: how far apart the two orders' distributions
            console.print(f"orders' label probabilities: mean total-variation distance {v.extra['tv_distance']:.3f}"
                          f"; labels by {v.extra.get('combine', 'labels')}", highlight=False)
    if v.reasoning:
        console.print(Panel(v.reasoning[-1500:], title="final reasoning", title_align="left"))
    if v.reason:
        console.print(f"[yellow]incomplete: {v.reason}[/] - {v.detail or REASONS.get(v.reason, '')}")


def _subcommand(name: str, argv: list[str]) -> int:
    import importlib

    try:
        module = importlib.import_module(SUBCOMMANDS[name])
    except ModuleNotFoundError as e:
        raise JudgeError(f"'judge {name}' is not available in this version ({e.name})") from None
    p = argparse.ArgumentParser(prog=f"judge {name}", description=(module.__doc__ or "").strip().splitlines()[0])
    module.configure(p)
    return module.run(p.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return guarded(lambda: _subcommand(argv[0], argv[1:]))
    return guarded(lambda: _compare(argv))


def _compare(argv: list[str]) -> int:
    from rich.console import Console

    from vrthinker.judge import DEFAULT_MODEL

    a = compare_parser().parse_args(argv)
    for path in (a.video1, a.video2):
        if not Path(path).is_file():
            raise JudgeError(f"{path}: file not found")
    if not a.prompt.strip():
        raise JudgeError("--prompt is empty: pass the text the videos were generated from")
    check_model_args(a)  # a flag this backend does not use: one line now, before any decoding
    if a.combine != "labels" and (a.orders != "both" or a.backend == "metrics"):
        raise JudgeError("--combine probabilities needs --orders both and a judge that reads label probabilities "
                         "(not --backend metrics)")
    quiet_libraries()
    grids = None
    if a.backend == "hf":  # decode first: a bad video (or an unknown checkpoint) should not cost a model load;
        from vrthinker.judge import load_videos  # a served or scripted judge names its profile once loaded
        from vrthinker.protocol import resolve

        grids = load_videos(resolve(a.model or DEFAULT_MODEL, a.protocol)[0], a.video1, a.video2)
    judge = load_judge(a)
    extra = {"grids": grids} if grids else {}
    if a.combine != "labels":
        extra["combine_rule"] = a.combine
    v = judge.compare(a.video1, a.video2, a.prompt, orders=a.orders, **extra)
    if a.trace:
        Path(a.trace).write_text(json.dumps(v.to_dict(trace=True), indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    if v.reason == "bad_video":  # bad input: its one line, not a table of labels that were never judged
        error(v.detail)
        return exit_code(v)
    if v.reason != "server_error" and not v.extra.get("refused"):
        from vrthinker.batch import record_compare
        from vrthinker.store import Store

        with Store(a.db) as store:  # every command that judges keeps its results in the one default store
            record_compare(store, judge, v, adapter=a.adapter)
    out = Console()
    if a.json:
        print(json.dumps(v.to_dict(), ensure_ascii=False))
    else:
        render_verdict(v, out)
    return exit_code(v)


if __name__ == "__main__":
    sys.exit(main())
