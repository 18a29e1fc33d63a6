"""VBench's own scoring (dqa.score.vbench_quality) against an independent statement of VBench's arithmetic.

VBench (Vchitect/VBench, Apache-2.0) publishes, in scripts/constant.py, each quality dimension's Min and Max and
its weight (dynamic degree 0.5, the others 1), and in scripts/cal_final_score.py how they combine: each value is
min-max normalised and weighted, and the Quality Score is the weighted values' sum over the sum of the weights.
The published numbers are restated below as data; the arithmetic is written out here in our own words.
"""
from __future__ import annotations

import pytest

from dqa.score.grade import load_config, synthesize
from dqa.score.vbench_quality import QUALITY_DIMS, quality_score

# ---- VBench's published numbers (scripts/constant.py): weights, and each dimension's Min and Max ----
DIM_WEIGHT = {
    "subject consistency":1,
    "background consistency":1,
    "temporal flickering":1,
    "motion smoothness":1,
    "aesthetic quality":1,
    "imaging quality":1,
    "dynamic degree":0.5,
}
NORMALIZE_DIC = {
    "subject consistency": {"Min": 0.1462, "Max": 1.0},
    "background consistency": {"Min": 0.2615, "Max": 1.0},
    "temporal flickering": {"Min": 0.6293, "Max": 1.0},
    "motion smoothness": {"Min": 0.706, "Max": 0.9975},
    "dynamic degree": {"Min": 0.0, "Max": 1.0},
    "aesthetic quality": {"Min": 0.0, "Max": 1.0},
    "imaging quality": {"Min": 0.0, "Max": 1.0},
}
QUALITY_LIST = [
    "subject consistency",
    "background consistency",
    "temporal flickering",
    "motion smoothness",
    "aesthetic quality",
    "imaging quality",
    "dynamic degree",]


# ---- VBench's arithmetic, restated (no clipping: a value under Min normalises below 0) ----
def vbench_reference(values: dict, present: list[str]) -> float:
    """The Quality Score over the dimensions `present` (VBench's lists restricted to them)."""
    names = [k for k in QUALITY_LIST if k in {d.replace("_", " ") for d in present}]
    given = {k.replace("_", " "): v for k, v in values.items()}
    weighted = [(given[k] - NORMALIZE_DIC[k]["Min"]) / (NORMALIZE_DIC[k]["Max"] - NORMALIZE_DIC[k]["Min"])
                * DIM_WEIGHT[k] for k in names]
    return sum(weighted) / sum(DIM_WEIGHT[k] for k in names)



CASES = [
    # a typical moving clip
    {"subject_consistency": 0.95, "background_consistency": 0.96, "temporal_flickering": 0.97,
     "motion_smoothness": 0.985, "aesthetic_quality": 0.55, "imaging_quality": 0.62, "dynamic_degree": 1.0},
    # a frozen clip: consistency and flicker at 1, no dynamics
    {"subject_consistency": 1.0, "background_consistency": 1.0, "temporal_flickering": 1.0,
     "motion_smoothness": 0.9975, "aesthetic_quality": 0.5, "imaging_quality": 0.6, "dynamic_degree": 0.0},
    # values under VBench's Min normalise below 0 (VBench does not clip)
    {"subject_consistency": 0.1, "background_consistency": 0.2, "temporal_flickering": 0.6,
     "motion_smoothness": 0.7, "aesthetic_quality": 0.2, "imaging_quality": 0.3, "dynamic_degree": 0.0},
]


@pytest.mark.parametrize("values", CASES)
def test_quality_score_matches_vbench_over_all_dimensions(values):
    q = quality_score(values)
    assert q.missing == ()
    assert q.score == pytest.approx(vbench_reference(values, list(QUALITY_DIMS)), abs=1e-12)
    for d, v in values.items():
        lo, hi = NORMALIZE_DIC[d.replace("_", " ")]["Min"], NORMALIZE_DIC[d.replace("_", " ")]["Max"]
        assert q.normalized[d] == pytest.approx((v - lo) / (hi - lo))
    assert q.weights["dynamic_degree"] == 0.5


@pytest.mark.parametrize("present", [["temporal_flickering"], ["temporal_flickering", "dynamic_degree"],
                                     ["subject_consistency", "motion_smoothness", "dynamic_degree", "imaging_quality"]])
def test_quality_score_over_the_dimensions_present_names_the_missing(present):
    values = {d: CASES[0][d] for d in present}
    q = quality_score(values)
    assert q.score == pytest.approx(vbench_reference(values, present), abs=1e-12)
    assert set(q.missing) == set(QUALITY_DIMS) - set(present)
    assert quality_score({}).score is None and set(quality_score({}).missing) == set(QUALITY_DIMS)


@pytest.mark.parametrize("values", CASES[:2])
def test_benchmark_channel_is_vbench_quality_score(values):
    g = synthesize(values, load_config())
    assert g.channels["benchmark"] == pytest.approx(min(1.0, max(0.0, vbench_reference(values, list(values)))))
    # a dimension under VBench's Min cannot lift or sink the channel outside [0, 1]
    low = synthesize(CASES[2], load_config())
    assert low.channels["benchmark"] == 0.0 or 0.0 <= low.channels["benchmark"] <= 1.0


def test_dqa_score_json_gives_vbench_scoring(tmp_path):
    """`dqa score --json` (ScoreRun.to_dict) names VBench's normalised values, Quality Score and missing dims."""
    from dqa.score.scoring import score
    from vrthinker_eval.synth import write_clip

    clip = write_clip(tmp_path / "a.mp4", "pan", 160, 96, seconds=0.5)
    run = score([clip], components=["temporal_flickering"])
    v = run.to_dict()["videos"][0]
    tf = v["vbench"]["temporal_flickering"]
    vs = v["vbench_scoring"]
    assert vs["normalized"] == {"temporal_flickering": pytest.approx((tf - 0.6293) / (1.0 - 0.6293), abs=1e-6)}
    assert vs["quality_score"] == pytest.approx(vbench_reference({"temporal_flickering": tf},
                                                                 ["temporal_flickering"]), abs=1e-6)
    assert set(vs["missing"]) == set(QUALITY_DIMS) - {"temporal_flickering"}
    assert v["grade"]["channels"]["benchmark"] == pytest.approx(min(1.0, vs["quality_score"]), abs=1e-6)
