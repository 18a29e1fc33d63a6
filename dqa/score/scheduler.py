"""Run scoring workers one at a time under a memory budget (the DQA "sequential worker" pattern).

Every video passes through one worker before the next worker loads, so N videos x K workers cost K model
loads, not N x K. Before anything loads, each worker's declared footprint is checked against the budget
and a worker that cannot fit is refused. After each worker unloads, memory is checked to be back at its
baseline: `torch.cuda.memory_allocated` of the worker's own device(s) on a GPU (where the device's real free
memory is also checked before loading); on the CPU, that every model object the worker held has
been freed (weak references dead). Peak memory and seconds per phase are recorded.
"""
from __future__ import annotations

import gc
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from vrthinker.errors import JudgeError, ModelLoadError, VideoError
from vrthinker.media.decode import VideoCache

from dqa.workers.base import Score, ScoreError, Worker

GB = 1e9
# the one sample each video is decoded into and every worker is handed (workers needing every frame at native
# size read the file again themselves, see dqa.vbench.frames)
MAX_SIDE = 512  # VBench's frames go to 224-512 px models; 512 keeps MUSIQ's own size (long side <= 512)
MAX_FRAMES = 192  # 8 s at 24 fps kept consecutive; longer videos are sampled uniformly (named in notes)
BASELINE_SLACK_BYTES = 8 * 2**20  # allocator rounding: memory within 8 MiB of the baseline counts as returned


@dataclass(frozen=True)
class Item:
    """One video to score and its prompt; `key` identifies it in a store (default: the path)."""

    path: str
    prompt: str = ""
    key: str = ""


@dataclass(frozen=True)
class Failure:
    """Why a component is missing for a video: a reason word and one line for people."""

    component: str
    reason: str
    message: str

    def to_dict(self) -> dict:
        return {"reason": self.reason, "message": self.message}


@dataclass(frozen=True)
class Phase:
    """One worker's turn: load and scoring seconds, videos scored, memory before/peak/after (GB on a GPU,
    resident-set GB on the CPU), and whether its models were freed after unloading."""

    worker: str
    footprint_gb: float
    videos: int
    load_s: float = 0.0
    score_s: float = 0.0
    device: str = "cpu"
    baseline_gb: float | None = None
    peak_gb: float | None = None
    after_gb: float | None = None
    freed: bool | None = None
    error: str | None = None
    models: int = 0  # torch modules the worker held while loaded (0: a weight-free worker)

    def to_dict(self) -> dict:
        r = lambda x: None if x is None else round(x, 4)
        return {"worker": self.worker, "footprint_gb": r(self.footprint_gb), "videos": self.videos,
                "load_s": r(self.load_s), "score_s": r(self.score_s), "device": self.device,
                "baseline_gb": r(self.baseline_gb), "peak_gb": r(self.peak_gb), "after_gb": r(self.after_gb),
                "freed": self.freed, "error": self.error, "models": self.models}


@dataclass
class Report:
    """What a run did: phases in order, refused workers, model loads, and per-video results."""

    phases: list[Phase] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    results: dict[int, dict[str, Score | Failure]] = field(default_factory=dict)
    decodes: int = 0

    @property
    def loads(self) -> int:
        return sum(1 for p in self.phases if p.models)  # phases that loaded at least one model


class _Devices:
    """The CUDA device(s) a worker runs on, measured together: "cuda:N" is device N; a bare "cuda" is every
    visible device (a model placed with device_map="auto" may spread over all of them)."""

    def __init__(self, cuda, device: str):
        import torch

        self.cuda = cuda
        index = torch.device(device).index
        self.devices = [torch.device("cuda", i) for i in ([index] if index is not None
                                                          else range(max(1, cuda.device_count())))]

    def synchronize(self) -> None:
        for d in self.devices:
            self.cuda.synchronize(d)

    def allocated_gb(self) -> float:
        return sum(self.cuda.memory_allocated(d) for d in self.devices) / GB

    def peak_gb(self) -> float:
        return sum(self.cuda.max_memory_allocated(d) for d in self.devices) / GB

    def reset_peak(self) -> None:
        for d in self.devices:
            self.cuda.reset_peak_memory_stats(d)

    def free_gb(self) -> float:
        """Free memory now, as the driver reports it (other processes' use included)."""
        return sum(self.cuda.mem_get_info(d)[0] for d in self.devices) / GB

    def empty_cache(self) -> None:
        self.cuda.empty_cache()


def _cuda(device: str) -> _Devices | None:
    if not str(device).startswith("cuda"):
        return None
    import torch

    return _Devices(torch.cuda, str(device)) if torch.cuda.is_available() else None


def _rss_gb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GB
    except (OSError, ValueError, IndexError):
        return None


def _module_refs(obj: Any, depth: int = 3) -> list[weakref.ref]:
    """Weak references to every torch module reachable from a worker's attributes (a few levels deep); none
    without torch (the light core's weight-free workers hold no modules)."""
    try:
        import torch
    except ModuleNotFoundError:
        return []

    refs, seen = [], set()

    def walk(o, d):
        if o is None or id(o) in seen or d < 0 or isinstance(o, (str, bytes, int, float, bool)):
            return
        seen.add(id(o))
        if isinstance(o, torch.nn.Module):
            refs.append(weakref.ref(o))
            return
        if isinstance(o, dict):
            for v in o.values():
                walk(v, d - 1)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v, d - 1)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            for v in vars(o).values():
                walk(v, d - 1)

    walk(obj, depth)
    return refs


class Scheduler:
    """Runs `workers` in order over items. `wanted` limits each worker's components (default: all).

    `done(item, worker)` says a (video, worker) result is already stored (resume: a worker with nothing
    left to do is not loaded); `sink(item, worker, scores, failures)` receives each result as it is made.
    """

    def __init__(self, workers: Sequence[Worker], budget_gb: float = 24.0, cache: VideoCache | None = None,
                 wanted: Iterable[str] | None = None,
                 done: Callable[[Item, Worker], bool] | None = None,
                 sink: Callable[[Item, Worker, list[Score], list[Failure]], None] | None = None,
                 log: Callable[[str], None] | None = None,
                 progress: Callable[[str, int, int], None] | None = None):
        if budget_gb <= 0:
            raise JudgeError(f"--vram-budget must be > 0 GB, got {budget_gb}")
        self.workers = list(workers)
        self.budget_gb = budget_gb
        self.cache = cache or VideoCache()
        self.wanted = set(wanted) if wanted is not None else None
        self.done = done or (lambda item, worker: False)
        self.sink = sink or (lambda *a: None)
        self.log = log or (lambda s: None)
        self.progress = progress or (lambda *a: None)

    def components(self, worker: Worker) -> tuple[str, ...]:
        return tuple(c for c in worker.components if self.wanted is None or c in self.wanted)

    def plan(self) -> tuple[list[Worker], list[tuple[Worker, str]]]:
        """(workers that fit, [(refused worker, why)]) — decided before anything is loaded."""
        ok, refused = [], []
        for w in self.workers:
            need = w.footprint_gb()
            if need > self.budget_gb:
                refused.append((w, f"worker {w.name} needs {need:.1f} GB but the budget is {self.budget_gb:g} GB "
                                   "(--vram-budget); use a smaller or quantized model, or raise the budget"))
            else:
                ok.append(w)
        return ok, refused

    def run(self, items: Sequence[Item]) -> Report:
        report = Report()
        runnable, refused = self.plan()
        for w, why in refused:
            report.refused.append((w.name, why))
            self.log(f"refused: {why}")
            for i, item in enumerate(items):
                self._record(report, i, item, w, [], [Failure(c, "over_budget", why) for c in self.components(w)])
        decodes0 = self.cache.decodes
        for w in runnable:
            report.phases.append(self._phase(w, items, report))
        report.decodes = self.cache.decodes - decodes0
        return report

    def _record(self, report: Report, i: int, item: Item, w: Worker, scores: list[Score],
                failures: list[Failure]) -> None:
        keep = set(self.components(w))
        scores = [s for s in scores if s.name in keep]
        failures = [f for f in failures if f.component in keep]
        slot = report.results.setdefault(i, {})
        for s in scores:
            slot[s.name] = s
        for f in failures:
            slot[f.component] = f
        self.sink(item, w, scores, failures)

    def _phase(self, w: Worker, items: Sequence[Item], report: Report) -> Phase:
        comps = self.components(w)
        todo = [(i, it) for i, it in enumerate(items) if not self.done(it, w)]
        footprint = w.footprint_gb()
        if not todo or not comps:
            return Phase(w.name, footprint, 0, device=w.device)
        cuda = _cuda(w.device)
        if cuda is not None:
            cuda.synchronize()
            free = cuda.free_gb()
            if footprint > free:  # the budget is declared; the device may hold less (other processes, leftovers)
                why = (f"worker {w.name} needs {footprint:.1f} GB but {w.device} has {free:.1f} GB free (budget "
                       f"{self.budget_gb:g} GB); free memory on the device or use a smaller or quantized model")
                report.refused.append((w.name, why))
                self.log(f"refused: {why}")
                for i, it in todo:
                    self._record(report, i, it, w, [], [Failure(c, "over_budget", why) for c in comps])
                return Phase(w.name, footprint, 0, device=w.device, error=why)
            baseline = cuda.allocated_gb()
            cuda.reset_peak()
        else:
            baseline = _rss_gb()
        t0 = time.perf_counter()
        try:
            w.load()
        except (KeyboardInterrupt, SystemExit):
            w.unload()
            raise
        except Exception as e:  # ModelLoadError, or a loader failing its own way (out of memory, bad file)
            w.unload()  # drop whatever was half loaded
            gc.collect()
            if cuda is not None:
                cuda.empty_cache()
            msg = str(e) if isinstance(e, ModelLoadError) else f"{type(e).__name__}: {e}".splitlines()[0]
            self.log(f"{w.name}: {msg}")
            for i, it in todo:
                self._record(report, i, it, w, [], [Failure(c, "model_unavailable", msg) for c in comps])
            return Phase(w.name, footprint, 0, device=w.device, baseline_gb=baseline, error=msg)
        load_s = time.perf_counter() - t0
        refs = _module_refs(w)
        t1 = time.perf_counter()
        peak_cpu = baseline
        scored = 0
        try:
            for n, (i, it) in enumerate(todo):
                self.progress(w.name, n, len(todo))
                scores, failures = self._score_one(w, it, comps)
                scored += bool(scores)
                self._record(report, i, it, w, scores, failures)
                if cuda is None:
                    rss = _rss_gb()
                    peak_cpu = max(peak_cpu or 0.0, rss or 0.0)
            self.progress(w.name, len(todo), len(todo))
        finally:
            score_s = time.perf_counter() - t1
            w.unload()
            gc.collect()
            if cuda is not None:
                cuda.synchronize()
                cuda.empty_cache()
        freed = all(r() is None for r in refs)
        if cuda is not None:
            peak = cuda.peak_gb()
            after = cuda.allocated_gb()
            freed = freed and (after - baseline) * GB <= BASELINE_SLACK_BYTES
        else:
            peak, after = peak_cpu, _rss_gb()
        phase = Phase(w.name, footprint, scored, load_s, score_s, w.device, baseline, peak, after, freed,
                      models=len(refs))
        unit = "GB" if cuda is not None else "GB RSS"
        self.log(f"{w.name}: {scored}/{len(todo)} video(s), load {load_s:.1f} s, scoring {score_s:.1f} s, "
                 f"memory {_fmt(baseline)} -> peak {_fmt(peak)} -> {_fmt(after)} {unit}"
                 + ("" if freed else " (NOT back to baseline: models still referenced)"))
        return phase

    def _score_one(self, w: Worker, item: Item, comps: Sequence[str]) -> tuple[list[Score], list[Failure]]:
        fail = lambda reason, msg: ([], [Failure(c, reason, msg) for c in comps])
        if w.needs_prompt and not item.prompt.strip():
            return fail("empty_prompt", "this component compares the video with its prompt, and the prompt is empty")
        try:
            video = self.cache.sample(item.path, MAX_FRAMES, MAX_SIDE)
        except VideoError as e:
            return fail("bad_video", e.cause)
        try:
            scores = list(w.score(video, item.prompt))
        except ScoreError as e:
            return fail(e.reason, str(e))
        except VideoError as e:
            return fail("bad_video", e.cause)
        except (KeyboardInterrupt, SystemExit):
            raise
        except MemoryError:  # e.g. every frame of a very long 4K clip: this video only, the batch goes on
            gc.collect()
            return fail("too_large", "ran out of memory on this video (very long or very large?)")
        except Exception as e:  # a bug or a model failure on this video: record it, keep the batch going
            return fail("failed", f"{type(e).__name__}: {e}".splitlines()[0])
        got = {s.name for s in scores}
        skipped = [Failure(c, "not_scored", f"{w.name} gave no {c} for this video") for c in comps if c not in got]
        return scores, skipped


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"
