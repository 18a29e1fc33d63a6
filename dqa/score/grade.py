"""Grade synthesis: a deterministic weighted mean of channel scores, mapped to bands A..F and an action.

Channels group components: `semantic`, `spatial`, `preference`, `visionreward` are one component each;
`benchmark` is VBench's Quality Score over the VBench dimensions present (each unit is the dimension's VBench
value, min-max normalised and weighted as VBench's scripts/constant.py does: dqa.score.vbench_quality), clipped to
[0, 1]; `measures` is of the weight-free VQ/MQ.
Weights come from a TOML file (default dqa/data/grade.toml, the white paper's) and CLI overrides. A channel
named in `[caps]` bounds the score from above (default: `measures`, so damage the weight-free measures see
cannot be averaged away by channels blind to it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from vrthinker.errors import UsageError

from dqa.score.vbench_quality import NORMALIZE, normalize

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

DEFAULT_FILE = Path(__file__).parents[1] / "data" / "grade.toml"
GROUPED = ("benchmark", "measures")  # channels made of several components (their own TOML tables)


@dataclass(frozen=True)
class Band:
    min: float
    grade: str
    action: str


@dataclass(frozen=True)
class GradeConfig:
    weights: Mapping[str, float]
    groups: Mapping[str, Mapping[str, float]]
    bands: tuple[Band, ...]
    source: str = ""
    # per grouped channel, how members combine: "mean" (weighted arithmetic) or "geometric" (weighted
    # geometric: one bad member pulls the channel down instead of being averaged away)
    combine: Mapping[str, str] = field(default_factory=dict)
    # channels whose score caps the final score (score = min(weighted mean, each capping channel present))
    caps: tuple[str, ...] = ()

    def channel_of(self, component: str) -> str | None:
        if component in self.weights and component not in GROUPED:
            return component
        for ch, members in self.groups.items():
            if component in members:
                return ch
        return None


@dataclass(frozen=True)
class Grade:
    """`score` in [0, 1] (None when no channel was available), its band, and what went into it."""

    score: float | None
    grade: str
    action: str
    channels: Mapping[str, float]
    weights_used: Mapping[str, float]  # renormalised over the channels present
    missing: tuple[str, ...] = field(default=())
    capped_by: str | None = None  # the capping channel that lowered the score, if one did

    def to_dict(self) -> dict:
        r = lambda x: None if x is None else round(x, 6)
        return {"score": r(self.score), "grade": self.grade, "action": self.action,
                "channels": {k: r(v) for k, v in self.channels.items()},
                "weights_used": {k: r(v) for k, v in self.weights_used.items()}, "missing": list(self.missing),
                "capped_by": self.capped_by}


def _number(where: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise UsageError(f"{where}: a weight must be a finite number >= 0, got {v!r}")
    return float(v)


def load_config(path: str | Path | None = None, overrides: Mapping[str, float] | None = None) -> GradeConfig:
    """Read the grade TOML (default: the white paper's); `overrides` set weights as 'channel' or
    'group.component' (e.g. {'spatial': 0.3, 'benchmark.dynamic_degree': 0})."""
    p = Path(path) if path else DEFAULT_FILE
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"weights file not found: {p}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{p}: not valid TOML ({e})") from None
    base = tomllib.loads(DEFAULT_FILE.read_text())
    weights = {k: _number(f"{p} [weights] {k}", v) for k, v in data.get("weights", base["weights"]).items()}
    groups = {g: {k: _number(f"{p} [{g}] {k}", v) for k, v in data.get(g, base[g]).items()} for g in GROUPED}
    for key, v in (overrides or {}).items():
        v = _number(f"--weight {key}", v)
        if "." in key:
            g, comp = key.split(".", 1)
            if g not in groups:
                raise UsageError(f"--weight {key}: {g!r} is not a grouped channel ({', '.join(GROUPED)})")
            if comp not in groups[g]:
                raise UsageError(f"--weight {key}: {comp!r} is not in {g} ({', '.join(groups[g])})")
            groups[g][comp] = v
        elif key in weights:
            weights[key] = v
        else:
            raise UsageError(f"--weight {key}: unknown channel (known: {', '.join(weights)})")
    bands_raw = data.get("bands", base["bands"])
    try:
        bands = tuple(sorted((Band(float(b["min"]), str(b["grade"]), str(b["action"])) for b in bands_raw),
                             key=lambda b: -b.min))
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{p}: each [[bands]] entry needs min, grade and action") from None
    if not bands or bands[-1].min > 0:
        raise UsageError(f"{p}: the lowest band must start at min = 0 so every score gets a grade")
    if not any(weights.values()):
        raise UsageError("every channel weight is 0: nothing to grade")
    combine = {**base.get("combine", {}), **data.get("combine", {})}
    for g, how in combine.items():
        if g not in GROUPED or how not in ("mean", "geometric"):
            raise UsageError(f"{p}: [combine] {g} = {how!r}: a grouped channel ({', '.join(GROUPED)}) "
                             "combined by 'mean' or 'geometric'")
    caps_raw = data.get("caps", base.get("caps", {}))
    for ch, on in caps_raw.items():
        if ch not in weights or not isinstance(on, bool):
            raise UsageError(f"{p}: [caps] {ch} = {on!r}: a channel ({', '.join(weights)}) = true or false")
    return GradeConfig(weights, groups, bands, str(p), combine, tuple(ch for ch, on in caps_raw.items() if on))


def channel_scores(units: Mapping[str, float], config: GradeConfig) -> dict[str, float]:
    """Channel scores from component units in [0, 1]; a group is the weighted mean of members present."""
    out: dict[str, float] = {}
    for ch in config.weights:
        if ch in config.groups:
            members = {c: w for c, w in config.groups[ch].items() if c in units and w > 0}
            if members and ch == "benchmark":  # VBench's arithmetic: min-max normalised, weighted mean, clipped
                vals = {c: normalize(c, units[c]) if c in NORMALIZE else units[c] for c in members}
                out[ch] = min(1.0, max(0.0, sum(vals[c] * w for c, w in members.items()) / sum(members.values())))
            elif members and config.combine.get(ch) == "geometric":
                logs = sum(math.log(max(units[c], 1e-6)) * w for c, w in members.items())
                out[ch] = math.exp(logs / sum(members.values()))
            elif members:
                out[ch] = sum(units[c] * w for c, w in members.items()) / sum(members.values())
        elif ch in units:
            out[ch] = units[ch]
    return out


def band(score: float, config: GradeConfig) -> Band:
    for b in config.bands:
        if score >= b.min:
            return b
    return config.bands[-1]


def synthesize(units: Mapping[str, float], config: GradeConfig) -> Grade:
    """Grade from component units; channels without any component are named in `missing` and the
    remaining weights renormalised to sum to 1. A capping channel present (weight > 0) whose score is below
    the weighted mean replaces it (`capped_by` names it)."""
    channels = channel_scores(units, config)
    active = {ch: w for ch, w in config.weights.items() if w > 0}
    present = {ch: w for ch, w in active.items() if ch in channels}
    missing = tuple(ch for ch in active if ch not in channels)
    if not present:
        return Grade(None, "-", "none", channels, {}, missing)
    total = sum(present.values())
    used = {ch: w / total for ch, w in present.items()}
    score = min(1.0, max(0.0, sum(channels[ch] * w for ch, w in used.items())))
    capped_by = None
    for ch in config.caps:
        if ch in used and channels[ch] < score:
            score, capped_by = channels[ch], ch
    b = band(score, config)
    return Grade(score, b.grade, b.action, channels, used, missing, capped_by)
