"""The one narrow interface every DQA scorer implements, so the scheduler can run any of them in turn.

A worker declares its memory footprint before loading (the scheduler refuses one larger than the budget),
loads its model(s) once, scores videos one at a time, and unloads so memory returns to its baseline.
Scores come back as `Score`s; a video the worker cannot score raises `ScoreError` with a reason word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from vrthinker import loading
from vrthinker.media.decode import VideoSample

from dqa.score.errors import ScoreError  # noqa: F401  (re-exported: workers raise it from here)


@dataclass(frozen=True)
class Score:
    """One component of one video. `value` is on the component's own published scale (VBench's for VBench
    dimensions), `unit` is the same judgement mapped to [0, 1] (1 = good) for the grade."""

    name: str
    value: float
    unit: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"value": self.value, "unit": self.unit, **({"details": dict(self.details)} if self.details else {})}


class Worker:
    """Base class: subclasses set `name`, `components`, and implement `footprint_gb`, `_load`, `score`.

    `components` are the keys this worker adds to a video's result (VBench dimension names, "spatial",
    "visionreward", ...). `models` maps a role to the hub id or local dir it loads (overridable).
    """

    name: ClassVar[str] = ""
    components: ClassVar[tuple[str, ...]] = ()
    needs_prompt: ClassVar[bool] = False
    default_models: ClassVar[Mapping[str, str]] = {}
    # bump when a change to the code or its fixed settings (a threshold, a resize) changes the numbers:
    # it is part of config(), so stored scores of the old code are not reused
    version: ClassVar[str] = "1"

    def __init__(self, device: str = "cpu", models: Mapping[str, str] | None = None, **options: Any):
        self.device = device
        self.models = {**self.default_models, **{k: v for k, v in (models or {}).items() if k in self.default_models}}
        self.options = options
        self.loaded = False

    def footprint_gb(self) -> float:
        """Accelerator memory this worker needs while loaded and scoring (weights + working memory), in GB."""
        return 0.0

    def load(self) -> None:
        if not self.loaded:
            self._load()
            self.loaded = True

    def _load(self) -> None:
        """Load model(s); raise ModelLoadError with one clear line when they cannot be had."""

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        raise NotImplementedError

    def unload(self) -> None:
        """Drop every reference to model tensors; the scheduler then collects garbage and checks memory."""
        self.loaded = False

    def config(self) -> dict:
        """What determines this worker's numbers (stored with them, so a changed model is not reused)."""
        return {"worker": self.name, "version": self.version, "models": dict(self.models),
                **{k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool))}}


LOCAL_COPY_HINT = "pass a local copy: dqa score --models ROLE=DIR"


def source_kwargs(source: str, revision: str | None = None) -> tuple[str, dict]:
    """vrthinker.loading.source_kwargs, its offline message naming dqa's flag for a local copy."""
    return loading.source_kwargs(source, revision, hint=LOCAL_COPY_HINT)
