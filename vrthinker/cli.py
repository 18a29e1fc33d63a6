"""`judge V1 V2 --prompt P`: a thin command line over `vrthinker.Judge`.

Exit status: 0 all four labels; 3 judged but incomplete (the reason is printed); 2 bad input or usage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import JudgeError
from .verdict import DIMENSIONS, LABEL_NAMES, REASONS, Verdict

EXIT_OK, EXIT_USAGE, EXIT_INCOMPLETE = 0, 2, 3
NAMES = {"TA": "Text Alignment", "VQ": "Visual Quality", "MQ": "Motion Quality", "OA": "Overall"}


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that loads a judge."""
    from .judge import DEFAULT_MODEL, backend_names

    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="ID_OR_DIR",
                   help=f"hub id or local checkpoint dir (default {DEFAULT_MODEL})")
    g.add_argument("--backend", default="hf", choices=backend_names(),
                   help="hf: the Qwen2.5-VL judge; metrics: weight-free VQ/MQ; scripted: replies from a JSON file")
    g.add_argument("--protocol", default=None,
                   help="conversation profile when the checkpoint declares none (card, training)")
    g.add_argument("--max-turns", type=int, default=None,
                   help="assistant turns at most (profile default: card 6, training 4)")
    g.add_argument("--max-new-tokens", type=int, default=None,
                   help="new tokens per turn at most (profile default: 2048)")
    g.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--dtype", default=None, help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32")
    g.add_argument("--quantize", choices=["4bit", "8bit"], default=None, help="load weights with bitsandbytes")
    g.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of --model")
    g.add_argument("--adapter", default=None, metavar="DIR", help="a LoRA adapter dir to apply (needs peft)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow code from the checkpoint repo to run (off unless you ask)")


def load_judge(a: argparse.Namespace):
    from .judge import Judge

    kw = {k: v for k, v in dict(device=a.device, dtype=a.dtype, quantize=a.quantize, revision=a.revision,
                                adapter=a.adapter, trust_remote_code=a.trust_remote_code or None).items()
          if v is not None}
    return Judge.from_pretrained(a.model, backend=a.backend, protocol=a.protocol, max_turns=a.max_turns,
                                 max_new_tokens=a.max_new_tokens, **kw)


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="judge", description="Compare two videos generated from one prompt: which is better on "
        "Text Alignment, Visual Quality, Motion Quality and Overall.",
        epilog="Exit status: 0 all four labels; 3 judged but incomplete; 2 bad input or usage.")
    p.add_argument("video1", help="first video file")
    p.add_argument("video2", help="second video file")
    p.add_argument("--prompt", required=True, help="the text prompt both videos were generated from")
    p.add_argument("--json", action="store_true", help="print one JSON verdict instead of a table")
    p.add_argument("--orders", choices=["one", "both"], default="one",
                   help="both: also judge (video2, video1) and keep only labels both orders agree on")
    p.add_argument("--trace", metavar="FILE", help="write every turn (rendered text, images, reply, cost) as JSON")
    add_model_args(p)
    return p


def quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # corrupt files: our one-line error, not ffmpeg's
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


def error(message: str, prog: str = "judge") -> None:
    """One plain line on stderr (never wrapped, never a traceback)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)


def guarded(run, prog: str = "judge") -> int:
    """Run a command; a user mistake or Ctrl-C becomes one line and an exit status, not a traceback."""
    try:
        return run()
    except JudgeError as e:
        error(str(e), prog)
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted", prog)
        return 130
    except BrokenPipeError:  # `... --json | head`
        sys.stderr.close()
        return EXIT_OK


def exit_code(v: Verdict) -> int:
    if v.reason == "bad_video":
        return EXIT_USAGE
    return EXIT_OK if v.complete else EXIT_INCOMPLETE


def render_verdict(v: Verdict, console) -> None:
    from rich.panel import Panel
    from rich.table import Table

    t = Table(title=f"{Path(v.videos[0]).name}  vs  {Path(v.videos[1]).name}", title_justify="left")
    t.add_column("dimension")
    t.add_column("label", justify="center")
    t.add_column("winner")
    for d in DIMENSIONS:
        lab = v.labels.get(d)
        winner = "[dim]missing[/]" if lab is None else LABEL_NAMES[lab]
        t.add_row(f"{d}  {NAMES[d]}", "-" if lab is None else str(lab), winner)
    console.print(t)
    console.print(f"prompt: {v.prompt}")
    if v.frames_requested:
        asked = "; ".join(f"turn {t.index + 1}: {list(t.requested)}" for t in v.turns if t.action == "tool_call")
        console.print(f"frames requested: {asked}")
    else:
        console.print("frames requested: none (judged on the initial frames)")
    console.print(f"model: {v.model_id}  protocol: {v.protocol}  backend: {v.backend}  "
                  f"turns: {len(v.turns)}  time: {v.timings.get('total_s', 0):.1f}s")
    if v.per_order:
        c = v.extra.get("consistency")
        console.print(f"orders: both; position consistency {'n/a' if c is None else f'{c:.0%}'}; "
                      f"inconsistent (set to tie): {', '.join(v.extra.get('inconsistent') or []) or 'none'}")
    if v.reasoning:
        console.print(Panel(v.reasoning[-1500:], title="final reasoning", title_align="left"))
    if v.reason:
        console.print(f"[yellow]incomplete: {v.reason}[/] - {v.detail or REASONS.get(v.reason, '')}")


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

    from .judge import BACKENDS, DEFAULT_MODEL

    a = compare_parser().parse_args(argv)
    for path in (a.video1, a.video2):
        if not Path(path).is_file():
            raise JudgeError(f"{path}: file not found")
    if not a.prompt.strip():
        raise JudgeError("--prompt is empty: pass the text the videos were generated from")
    quiet_libraries()
    grids = None
    if a.backend in BACKENDS:  # decode first: a bad video should not cost a model load
        from .judge import load_videos
        from .protocol import resolve

        grids = load_videos(resolve(a.model or DEFAULT_MODEL, a.protocol)[0], a.video1, a.video2)
    judge = load_judge(a)
    v = judge.compare(a.video1, a.video2, a.prompt, orders=a.orders, **({"grids": grids} if grids else {}))
    if a.trace:
        Path(a.trace).write_text(json.dumps(v.to_dict(trace=True), indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    out = Console()
    if a.json:
        print(json.dumps(v.to_dict(), ensure_ascii=False))
    else:
        render_verdict(v, out)
    if v.reason == "bad_video":
        error(v.detail)
    return exit_code(v)


if __name__ == "__main__":
    sys.exit(main())
