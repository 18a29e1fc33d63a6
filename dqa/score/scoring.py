"""Absolute scores of videos: pick workers for the components asked, run them under the memory budget,
grade each video. The library face of `dqa score` (a notebook calls `score([...], prompt=...)` the same way).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from vrthinker.errors import UsageError
from vrthinker.media.decode import VideoCache

from dqa.score.grade import Grade, GradeConfig, load_config, synthesize
from dqa.measures.video import MQ_WEIGHTS, asks_for_still, mq_of
from dqa.score.vbench_quality import quality_score
from dqa.score.scheduler import Failure, Item, Phase, Scheduler
from dqa.workers import WORKERS
from dqa.workers.base import Score, Worker

# VBench's names, in VBench's own order
VBENCH_DIMS = ("subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
               "dynamic_degree", "aesthetic_quality", "imaging_quality")
OFFLINE_DEFAULT = ("vq", "mq", "temporal_flickering")  # needs no model: what `dqa score` does by default
GROUPS = {"vbench": VBENCH_DIMS, "measures": ("vq", "mq"), "offline": OFFLINE_DEFAULT}


def catalogue() -> dict[str, str]:
    """component -> the worker that makes it."""
    out = {}
    for name in WORKERS:  # from the table: no worker module is imported to list what they make
        for c in WORKERS.info(name)["components"]:
            out.setdefault(c, name)
    return out


def resolve_components(spec: Iterable[str] | None, extra: Iterable[Worker] = ()) -> tuple[str, ...]:
    """Expand names ('all', 'offline', 'vbench', 'measures', or component names; comma lists allowed);
    `extra` workers (not registered) add their components to the known ones."""
    known = {**catalogue(), **{c: w.name for w in extra for c in w.components}}
    names = [n.strip() for s in (spec or ["offline"]) for n in str(s).split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        expanded = tuple(known) if n == "all" else GROUPS.get(n, (n,))
        for c in expanded:
            if c not in known:
                raise UsageError(f"unknown component {c!r}; known: all, offline, vbench, measures, "
                                 + ", ".join(sorted(known)))
            if c not in out:
                out.append(c)
    if not out:
        raise UsageError("no components asked for")
    return tuple(out)


def build_workers(components: Sequence[str], device: str = "cpu", models: Mapping[str, str] | None = None,
                  **options: Any) -> list[Worker]:
    """One worker per needed worker class (weight-free ones first, then the smallest footprint first)."""
    known = catalogue()
    names = list(dict.fromkeys(known[c] for c in components))
    workers = [WORKERS.load(n)(device=device, models=models, **options) for n in names]  # imported only now
    return sorted(workers, key=lambda w: (w.footprint_gb() > 0, w.footprint_gb()))


@dataclass(frozen=True)
class VideoResult:
    """One video's components (VBench names on VBench's scale), what is missing and why, and its grade."""

    path: str
    prompt: str
    components: Mapping[str, Score]
    missing: Mapping[str, Failure]
    grade: Grade

    def to_dict(self) -> dict:
        return {"video": self.path, "prompt": self.prompt,
                "components": {k: v.to_dict() for k, v in self.components.items()},
                "vbench": {k: self.components[k].value for k in VBENCH_DIMS if k in self.components},
                "vbench_scoring": quality_score({k: self.components[k].value for k in VBENCH_DIMS
                                                 if k in self.components}).to_dict(),
                "missing": {k: f.to_dict() for k, f in self.missing.items()},
                "grade": self.grade.to_dict()}


@dataclass(frozen=True)
class ScoreRun:
    videos: tuple[VideoResult, ...]
    phases: tuple[Phase, ...]
    refused: tuple[tuple[str, str], ...]
    components: tuple[str, ...]
    loads: int
    decodes: int
    seconds: float
    weights: GradeConfig = field(repr=False, default=None)

    @property
    def complete(self) -> bool:
        return all(not v.missing for v in self.videos)

    def to_dict(self) -> dict:
        return {"components": list(self.components), "videos": [v.to_dict() for v in self.videos],
                "phases": [p.to_dict() for p in self.phases],
                "refused": [{"worker": w, "message": m} for w, m in self.refused],
                "model_loads": self.loads, "decodes": self.decodes, "seconds": round(self.seconds, 3),
                "weights": {"file": self.weights.source, "weights": dict(self.weights.weights),
                            **{g: dict(m) for g, m in self.weights.groups.items()}} if self.weights else None}


def score(videos: Sequence[str | Path | Item], prompt: str = "", components: Iterable[str] | None = None, *,
          budget_gb: float = 24.0, device: str | None = None, models: Mapping[str, str] | None = None,
          weights: GradeConfig | None = None, db: str | None = None, cache: VideoCache | None = None,
          workers: Sequence[Worker] | None = None, log: Callable[[str], None] | None = None,
          progress: Callable[[str, int, int], None] | None = None, **options: Any) -> ScoreRun:
    """Score `videos` (paths, or Items with their own prompts) on `components` (default: the weight-free
    'offline' set). With `db`, results persist in SQLite and a rerun skips what is stored."""
    from vrthinker.loading import pick_device

    t0 = time.perf_counter()
    items = [v if isinstance(v, Item) else Item(str(v), prompt) for v in videos]
    if not items:
        raise UsageError("no videos to score")
    comps = resolve_components(components, workers or ())
    weights = weights or load_config()
    if workers is None:
        workers = build_workers(comps, device=pick_device(device), models=models, **options)
    store = None
    if db:
        from dqa.score.store import ScoreStore

        store = ScoreStore(db)
    try:
        sched = Scheduler(workers, budget_gb=budget_gb, cache=cache, wanted=comps, log=log, progress=progress,
                          done=(lambda it, w: store.done(it, w, sched.components(w))) if store else None,
                          sink=store.put if store else None)
        report = sched.run(items)
        per_video: list[dict[str, Score | Failure]] = []
        for i, it in enumerate(items):
            got = dict(report.results.get(i, {}))
            if store:
                for w in workers:
                    for k, v in store.get(it, w).items():
                        if k in comps:
                            got.setdefault(k, v)
            per_video.append(got)
    finally:
        if store:
            store.close()
    results = []
    for it, got in zip(items, per_video):
        scores = {c: got[c] for c in comps if isinstance(got.get(c), Score)}
        if "mq" in scores and asks_for_still(it.prompt):
            scores["mq"] = _still_mq(scores["mq"])
        missing = {c: got[c] if isinstance(got.get(c), Failure) else _absent(c, workers) for c in comps
                   if c not in scores}
        grade = synthesize({k: s.unit for k, s in scores.items()}, weights)
        results.append(VideoResult(it.path, it.prompt, scores, missing, grade))
    return ScoreRun(tuple(results), tuple(report.phases), tuple(report.refused), comps, report.loads,
                    report.decodes, time.perf_counter() - t0, weights)


def _still_mq(s: Score) -> Score:
    """MQ for a prompt that asks for a still scene: the same motion scores, dynamics not counted (a still
    video is what was asked for; held frames, shake and jerks still count)."""
    parts = dict(s.details.get("scores") or {})
    if "dynamics" not in parts or not all(k in parts and parts[k] is not None for k in MQ_WEIGHTS):
        return s
    mq, worst = mq_of({**parts, "dynamics": 1.0})
    return Score(s.name, mq, mq, {**s.details, "pulled_down_by": worst, "still_prompt": True,
                                  "notes": [*s.details.get("notes", []), "the prompt asks for a still scene: "
                                            "dynamics not counted"]})


HINTS = {"preference": "needs a DPO adapter: pass --adapter DIR (made by dqa tune)"}


def _absent(component: str, workers: Sequence[Worker]) -> Failure:
    """Why no worker produced `component`: not offered in this configuration, or no result at all."""
    if not any(component in w.components for w in workers):
        return Failure(component, "not_configured", HINTS.get(component, "no worker offers it as configured"))
    return Failure(component, "not_scored", "no worker produced it (see the log)")
