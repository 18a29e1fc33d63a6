"""`dqa score`: absolute per-component scores and a grade for each video, as a table or JSON.

  dqa score VIDEO... --prompt P [--components C,...] [--vram-budget GB] [--json]
  dqa score --manifest FILE.jsonl [--db DB] ...     (rows: {"video": PATH, "prompt": TEXT}; resumable)
  dqa score ... --components visionreward,semantic --backend openai --server URL   (the VLM on a server)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vrthinker import jsonl
from vrthinker.errors import UsageError

from dqa.score.scheduler import Item

EXIT_OK, EXIT_INCOMPLETE = 0, 3


def add_parser(sub) -> None:
    from vrthinker.cliutil import add_client_args

    s = sub.add_parser("score", help="absolute scores per component (VBench, spatial, checklist, ...) and a grade",
                       description="Score each video on the components asked (default: the weight-free "
                                   "'offline' set: vq, mq, temporal_flickering) and grade it A..F.")
    s.add_argument("videos", nargs="*", metavar="VIDEO")
    s.add_argument("--prompt", default="", help="the text prompt the videos were made from")
    s.add_argument("--manifest", default=None, metavar="FILE.jsonl",
                   help='one {"video": PATH, "prompt": TEXT} per line (paths relative to the file)')
    s.add_argument("--components", action="append", default=None, metavar="C[,C...]",
                   help="all, offline (default), vbench, measures, or component names: vq, mq, "
                        "temporal_flickering, motion_smoothness, subject_consistency, background_consistency, "
                        "dynamic_degree, aesthetic_quality, imaging_quality, spatial, visionreward, semantic, "
                        "preference")
    s.add_argument("--vram-budget", type=float, default=24.0, metavar="GB",
                   help="memory budget for one worker at a time (default 24)")
    s.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    s.add_argument("--db", default=None, help="store results in this SQLite file and skip what it holds "
                                              "(default: $VRTHINKER_DB or judgments.sqlite, the store every "
                                              "command that judges uses)")
    s.add_argument("--weights", default=None, metavar="FILE.toml", help="grade weights and bands (default: the "
                                                                       "DQA white paper's, dqa/data/grade.toml)")
    s.add_argument("--weight", action="append", default=[], metavar="NAME=W",
                   help="override one weight: a channel (spatial=0.3) or benchmark.DIM / measures.vq")
    s.add_argument("--model", default=None, metavar="ID_OR_DIR",
                   help="the Qwen2.5-VL judge for visionreward/semantic/preference (default: the judge's)")
    s.add_argument("--models", action="append", default=[], metavar="ROLE=ID_OR_DIR",
                   help="override a worker model by role: dino, clip_b32, clip_l14, aesthetic_head, musiq, raft, "
                        "proxy_clip, vfm (hub id, local dir or file)")
    s.add_argument("--adapter", default=None, metavar="DIR", help="a DPO LoRA adapter: enables 'preference'")
    s.add_argument("--quantize", choices=["4bit", "8bit"], default=None, help="load the VLM with bitsandbytes")
    s.add_argument("--dtype", default=None, help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32")
    s.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    s.add_argument("--quiet", action="store_true", help="no per-phase log lines on stderr")
    sv = s.add_argument_group("the VLM on a server (visionreward, semantic)")
    sv.add_argument("--backend", choices=["hf", "openai"], default="hf",
                    help="openai: ask an OpenAI-compatible server that returns logprobs (vLLM, SGLang)")
    sv.add_argument("--server", action="append", default=None, metavar="URL",
                    help="the server, e.g. http://127.0.0.1:8000/v1 (repeat to share the work)")
    sv.add_argument("--served-model", default=None, metavar="NAME", help="default: the server's only model")
    sv.add_argument("--api-key", default=None, metavar="KEY", help="bearer token (default: env VRTHINKER_API_KEY)")
    add_client_args(sv)  # --timeout, --turn-deadline, --connect-timeout, --client-cache-mb, as `judge` has them


def _pairs(values, flag: str) -> dict:
    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k.strip() or not val.strip():
            raise UsageError(f"{flag} {v!r}: expected NAME=VALUE")
        out[k.strip()] = val.strip()
    return out


def read_manifest(path: str) -> list[Item]:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UsageError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read manifest {path}: {e}") from None
    items = []
    for n, row in jsonl.records(path, text=text, objects=False):
        video = row.get("video") or row.get("path") if isinstance(row, dict) else None
        if not isinstance(video, str) or not video.strip():
            raise UsageError(f"{path} line {n}: needs a \"video\" path")
        prompt = row.get("prompt", "")
        if not isinstance(prompt, str):
            raise UsageError(f"{path} line {n}: \"prompt\" must be text")
        vp = Path(video).expanduser()
        items.append(Item(str(vp if vp.is_absolute() else p.parent / vp), prompt))
    if not items:
        raise UsageError(f"{path}: no rows")
    return items


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def print_tables(run, console) -> None:
    from rich.table import Table

    from dqa.score.scoring import VBENCH_DIMS

    for start in range(0, len(run.videos), 4):
        chunk = run.videos[start:start + 4]
        t = Table(title="dqa score" + (f" ({start + 1}-{start + len(chunk)} of {len(run.videos)})"
                                       if len(run.videos) > 4 else ""), title_justify="left")
        t.add_column("component")
        for v in chunk:
            t.add_column(Path(v.path).name, justify="right", overflow="fold")
        for c in run.components:
            label = c + (" (VBench)" if c in VBENCH_DIMS else "")
            cells = []
            for v in chunk:
                if c in v.components:
                    cells.append(_fmt(v.components[c].value))
                else:
                    cells.append(f"[dim]- {v.missing[c].reason}[/]")
            t.add_row(label, *cells)
        t.add_section()
        for ch in ("measures", "benchmark", "semantic", "spatial", "visionreward", "preference"):
            if any(ch in v.grade.channels for v in chunk):
                t.add_row(f"[italic]{ch}[/]", *[_fmt(v.grade.channels[ch]) if ch in v.grade.channels else "-"
                                                for v in chunk])
        t.add_row("[bold]score[/]", *[_fmt(v.grade.score) if v.grade.score is not None else "-" for v in chunk])
        t.add_row("[bold]grade[/]", *[f"[bold]{v.grade.grade}[/] {v.grade.action}" for v in chunk])
        console.print(t)
    for v in run.videos:
        for c, f in v.missing.items():
            console.print(f"[yellow]{v.path}[/]: {c} missing ({f.reason}): {f.message}", soft_wrap=True)
        if v.grade.score is not None and v.grade.missing:
            console.print(f"[dim]{Path(v.path).name}: grade renormalised without "
                          f"{', '.join(v.grade.missing)}[/]", soft_wrap=True)
    for _worker, why in run.refused:
        console.print(f"[red]refused[/] {why}", soft_wrap=True)
    console.print(f"[dim]{len(run.videos)} video(s), {run.loads} model load(s), {run.decodes} decode(s), "
                  f"{run.seconds:.1f} s[/]")


def run(a: argparse.Namespace) -> int:
    from rich.console import Console

    from vrthinker.cliutil import CLIENT_OPTIONS, MODEL_FLAGS, quiet_libraries
    from vrthinker.store import default_path

    from dqa.score.grade import load_config
    from dqa.score.scoring import score
    from dqa.workers import registry

    quiet_libraries()
    if a.manifest and a.videos:
        raise UsageError("give videos or --manifest, not both")
    if a.manifest:
        items = read_manifest(a.manifest)
    elif a.videos:
        items = [Item(v, a.prompt) for v in a.videos]
    else:
        raise UsageError("no videos: give VIDEO... or --manifest FILE.jsonl")
    weights = load_config(a.weights, {k: _float(k, v) for k, v in _pairs(a.weight, "--weight").items()})
    models = _pairs(a.models, "--models")
    roles = sorted({r for cls in registry().values() for r in cls.default_models}) if models else []
    for role in models:
        if role not in roles:
            raise UsageError(f"--models {role}=...: unknown role; known: {', '.join(roles)}")
    if a.model:
        models["vlm"] = a.model
    options = {k: v for k, v in dict(quantize=a.quantize, dtype=a.dtype, adapter=a.adapter).items() if v}
    if a.backend == "openai":
        if not a.server:
            raise UsageError("--backend openai needs --server URL (e.g. http://127.0.0.1:8000/v1)")
        options["served"] = {"server": a.server, "served_model": a.served_model, "api_key": a.api_key,
                             **{k: getattr(a, k) for k in CLIENT_OPTIONS}}
    else:
        given = [MODEL_FLAGS[k] for k in ("server", "served_model", *CLIENT_OPTIONS) if getattr(a, k) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with --backend openai")
    if a.videos:  # named on the command line, a missing or undecodable video is usage: one line, exit 2, as
        from vrthinker.media.decode import probe  # `judge` does (a manifest's bad rows are reported, exit 3)

        for v in a.videos:
            probe(v)
    err = Console(stderr=True)
    log = None if a.quiet else (lambda s: err.print(f"[dim]{s}[/]", soft_wrap=True, highlight=False))
    db = a.db or default_path()
    with _progress(err, enabled=not a.quiet and err.is_terminal) as progress:
        result = score(items, components=a.components, budget_gb=a.vram_budget, device=a.device, models=models,
                       weights=weights, db=db, log=log, progress=progress, **options)
    if a.json:
        json.dump(result.to_dict(), sys.stdout, indent=1, default=str)
        print()
    else:
        print_tables(result, Console(highlight=False))
    return EXIT_OK if result.complete and not result.refused else EXIT_INCOMPLETE


class _progress:
    """A rich progress bar per worker on a terminal (stderr), nothing otherwise."""

    def __init__(self, console, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=True)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.bar is None:
            return None
        self.bar.start()
        return self.update

    def update(self, worker: str, done: int, total: int) -> None:
        if worker not in self.tasks:
            self.tasks[worker] = self.bar.add_task(worker, total=total)
        self.bar.update(self.tasks[worker], completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _float(k: str, v: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise UsageError(f"--weight {k}={v}: not a number") from None
