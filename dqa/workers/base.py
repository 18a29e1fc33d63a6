"""The one narrow interface every DQA scorer implements, so the scheduler can run any of them in turn.

A worker declares its memory footprint before loading (the scheduler refuses one larger than the budget),
loads its model(s) once, scores videos one at a time, and unloads so memory returns to its baseline.
Scores come back as `Score`s; a video the worker cannot score raises `ScoreError` with a reason word.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from vrthinker.errors import ModelLoadError

from ..errors import ScoreError  # noqa: F401  (re-exported: workers raise it from here)
from ..video import VideoSample


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
        return {"worker": self.name, "models": dict(self.models), **{k: v for k, v in self.options.items()
                                                                     if isinstance(v, (str, int, float, bool))}}


def source_kwargs(source: str, revision: str | None = None) -> tuple[str, dict]:
    """(path or id, from_pretrained kwargs) for a hub id or a local dir, failing fast when offline.

    Reuses the judge's hub check: an unreachable hub with nothing cached is one clear ModelLoadError
    within seconds instead of minutes of retries.
    """
    from vrthinker.backends.hf import _hub_access, _looks_local

    if _looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model not found: {source}")
        return str(path), {}
    try:
        return source, _hub_access(source, revision)
    except ModelLoadError as e:  # the judge's message names its own flag; dqa takes --models ROLE=DIR
        raise ModelLoadError(str(e).replace("pass --model DIR", "pass a local copy: dqa score --models ROLE=DIR")) \
            from None


def weights_gb(source: str, bytes_per_param: float | None = None, fallback_gb: float = 1.0) -> float:
    """Size of a local checkpoint's weight files in GB, rescaled to `bytes_per_param` from the dtype it is
    stored in (config.json's dtype, else fp32); `fallback_gb` (the declared size of the default model)
    for a hub id, which is not downloaded just to plan."""
    path = Path(source).expanduser()
    if not path.exists():
        return fallback_gb
    files = list(path.glob("*.safetensors")) + list(path.glob("*.bin")) + list(path.glob("*.pth")) \
        if path.is_dir() else [path]
    size = sum(f.stat().st_size for f in files) / 1e9
    if bytes_per_param is not None:
        size *= bytes_per_param / _stored_bytes_per_param(path)
    return size


def _stored_bytes_per_param(path: Path) -> float:
    import json

    try:
        cfg = json.loads((path / "config.json").read_text()) if path.is_dir() else {}
    except (OSError, ValueError):
        cfg = {}
    dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    return 2.0 if dtype in ("bfloat16", "float16") else 4.0
