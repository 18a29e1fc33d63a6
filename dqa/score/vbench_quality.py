"""VBench's own scoring of its quality dimensions: min-max normalisation, dimension weights, Quality Score.

The numbers are VBench's (scripts/constant.py: NORMALIZE_DIC, DIM_WEIGHT, QUALITY_LIST) and so is the
arithmetic (scripts/cal_final_score.py): normalised = (value - Min) / (Max - Min), weighted by DIM_WEIGHT
(dynamic_degree 0.5, the rest 1), Quality Score = sum of weighted normalised values / sum of their weights.
VBench scores a missing dimension as 0; here the Quality Score is taken over the dimensions present (the
weights renormalised), and the missing ones are named, so one unmeasured dimension does not read as a
failure. Nothing is clipped, as in VBench: a raw value under Min normalises below 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# VBench's quality dimensions in its QUALITY_LIST order, with (Min, Max) from NORMALIZE_DIC and DIM_WEIGHT
QUALITY_DIMS = ("subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
                "aesthetic_quality", "imaging_quality", "dynamic_degree")
NORMALIZE = {"subject_consistency": (0.1462, 1.0), "background_consistency": (0.2615, 1.0),
             "temporal_flickering": (0.6293, 1.0), "motion_smoothness": (0.706, 0.9975),
             "dynamic_degree": (0.0, 1.0), "aesthetic_quality": (0.0, 1.0), "imaging_quality": (0.0, 1.0)}
DIM_WEIGHT = {"subject_consistency": 1.0, "background_consistency": 1.0, "temporal_flickering": 1.0,
              "motion_smoothness": 1.0, "aesthetic_quality": 1.0, "imaging_quality": 1.0, "dynamic_degree": 0.5}


def normalize(dim: str, value: float) -> float:
    """VBench's min-max normalisation of one quality dimension's raw value (not weighted, not clipped)."""
    lo, hi = NORMALIZE[dim]
    return (float(value) - lo) / (hi - lo)


@dataclass(frozen=True)
class QualityScore:
    """VBench's Quality Score over the dimensions present; `normalized` per dimension (unweighted)."""

    score: float | None
    normalized: Mapping[str, float]
    weights: Mapping[str, float]
    missing: tuple[str, ...]

    def to_dict(self) -> dict:
        r = lambda x: None if x is None else round(x, 6)  # noqa: E731
        return {"quality_score": r(self.score), "normalized": {k: r(v) for k, v in self.normalized.items()},
                "weights": dict(self.weights), "missing": list(self.missing)}


def quality_score(values: Mapping[str, float]) -> QualityScore:
    """Quality Score of raw VBench values (keys: VBench dimension names; others are ignored)."""
    present = [d for d in QUALITY_DIMS if d in values and values[d] is not None]
    norm = {d: normalize(d, values[d]) for d in present}
    weights = {d: DIM_WEIGHT[d] for d in present}
    score = sum(norm[d] * weights[d] for d in present) / sum(weights.values()) if present else None
    return QualityScore(score, norm, weights, tuple(d for d in QUALITY_DIMS if d not in present))
