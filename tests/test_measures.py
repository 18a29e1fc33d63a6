"""Weight-free DQA measures and the MetricsJudge on synthetic H.264 clips with known defects.

Clean clips of three scene kinds (seeds not used by scripts/bench_metrics.py) are damaged by every defect
at medium and strong strength; the damaged dimension must score lower, and the judge must prefer the clean
clip on that dimension and on OA in both orders.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from dqa.measures.video import MQ_WEIGHTS, VQ_FAULTS, VQ_WEIGHTS, measure_frames, measure_video
from vrthinker_eval.defects import DEFECT_DIMENSION, DEFECTS, apply_defect
from vrthinker_eval.synth import render_scene, write_corrupt, write_video
from dqa.measures.pairwise import MetricsJudge
from vrthinker.errors import VideoError
from video_helpers import sequential_rgb

W, H, T = 320, 192, 48
SCENES = (("shapes", 21), ("pan", 22), ("text", 23))
STRENGTHS = ("medium", "strong")


@pytest.fixture(scope="module")
def judge() -> MetricsJudge:
    return MetricsJudge(cache_size=256)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> dict:
    """{scene: (clean_path, {(defect, strength): damaged_path})}, all written as H.264."""
    root = tmp_path_factory.mktemp("defects")
    out = {}
    for kind, seed in SCENES:
        clean = render_scene(kind, W, H, T, seed)
        damaged = {(name, s): write_video(root / f"{kind}_{name}_{s}.mp4", apply_defect(clean, name, s, seed))
                   for name in DEFECTS for s in STRENGTHS}
        out[kind] = (write_video(root / f"{kind}_clean.mp4", clean), damaged)
    return out


def test_clean_scores_are_sane(suite, judge):
    for kind, (clean, _) in suite.items():
        m = judge.measure(clean)
        assert set(m.scores) == set(VQ_WEIGHTS) | set(VQ_FAULTS) | set(MQ_WEIGHTS)
        assert all(0.0 <= v <= 1.0 for v in m.scores.values())
        assert 0.7 < m.vq <= 1.0 and 0.7 < m.mq <= 1.0, (kind, m.scores)
        assert m.seconds > 0 and not m.notes


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_defect_lowers_its_dimension(suite, judge, defect):
    dim = DEFECT_DIMENSION[defect]
    for kind, (clean, damaged) in suite.items():
        c = judge.measure(clean)
        for s in STRENGTHS:
            d = judge.measure(damaged[(defect, s)])
            if defect == "washed_out":  # contrast and colour are style-weighted in absolute VQ (fog, night, flat
                # fills are clean): the scores themselves drop, and the pairwise evidence decides (next test)
                assert d.scores["contrast"] < c.scores["contrast"], (kind, s)
                assert d.scores["colourfulness"] < c.scores["colourfulness"], (kind, s)
                continue
            key = dim.lower()
            assert getattr(d, key) < getattr(c, key), (kind, defect, s, getattr(c, key), getattr(d, key))


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_judge_prefers_clean_both_orders(suite, judge, defect):
    dim = DEFECT_DIMENSION[defect]
    for kind, (clean, damaged) in suite.items():
        for s in STRENGTHS:
            bad = damaged[(defect, s)]
            for first, want in ((clean, 1), (bad, 2)):
                v = judge.compare(first, bad if first == clean else clean, "a synthetic scene")
                assert v.labels[dim] == want, (kind, defect, s, v.reasoning)
                assert v.labels["OA"] == want, (kind, defect, s, v.reasoning)


def test_verdict_fields(suite, judge):
    clean, damaged = suite["pan"]
    v = judge.compare(clean, damaged[("blur", "strong")], "a landscape")
    assert v.labels["TA"] is None and v.reason == "needs_vlm" and not v.complete
    assert v.detail == "Text Alignment needs a vision-language model"
    assert v.model_id == "weight-free-metrics" and v.protocol == "metrics/1" and v.backend == "metrics"
    assert v.videos == (str(clean), str(damaged[("blur", "strong")])) and v.prompt == "a landscape"
    assert set(v.extra["scores"]) == {"video1", "video2"} and v.extra["scores"]["video1"]["vq"] > 0
    assert v.timings["total_s"] >= 0
    d = v.to_dict()  # JSON-able
    assert d["labels"]["VQ"] == 1


def test_identical_videos_tie(suite, judge):
    clean, _ = suite["shapes"]
    v = judge.compare(clean, clean)
    assert v.labels == {"TA": None, "VQ": 0, "MQ": 0, "OA": 0}


def test_static_clip_is_a_still_image_posing_as_a_video(tmp_path):
    """A frozen clip: no motion to judge (smoothness, shake, holds, order are 1), but dynamics is near 0 and
    pulls MQ down (it used to sit at a neutral 0.5, and the offline grade accepted a still image)."""
    still = np.repeat(render_scene("shapes", 128, 96, 1, 5), 12, axis=0)
    m = measure_video(write_video(tmp_path / "still.mp4", still))
    assert any(n.startswith("static") for n in m.notes)
    assert m.measures["still_fraction"] > 0.85  # the encoder's first P-frame may still settle a little
    assert all(m.scores[k] == 1.0 for k in MQ_WEIGHTS if k != "dynamics")
    for k in ("accel_ratio", "jitter", "frozen_fraction", "order_violations"):
        assert math.isnan(m.measures[k]), k
    assert m.scores["dynamics"] < 0.06 and m.worst["mq"] == "dynamics" and m.mq < 0.2
    assert 0.0 < m.vq <= 1.0
    assert m.to_dict()["measures"]["accel_ratio"] is None


def test_corrupt_and_short_videos(tmp_path, suite):
    clean, _ = suite["text"]
    judge = MetricsJudge()
    for kind in ("random", "truncated", "empty"):
        bad = write_corrupt(tmp_path / f"{kind}.mp4", kind, src=clean)
        v = judge.compare(clean, bad, "p")
        assert v.reason == "bad_video" and all(x is None for x in v.labels.values()), kind
        assert v.backend == "metrics" and v.videos[1] == str(bad)
    v = judge.compare(tmp_path / "missing.mp4", clean, "p")
    assert v.reason == "bad_video" and "missing.mp4" in v.detail
    two = write_video(tmp_path / "two.mp4", render_scene("pan", 64, 48, 2, 0))
    with pytest.raises(VideoError):
        measure_video(two)
    with pytest.raises(VideoError):
        measure_frames(np.zeros((2, 16, 16, 3), np.uint8))


def test_defects_api():
    frames = render_scene("orbit", 64, 48, 16, 0)
    for name in DEFECTS:
        a = apply_defect(frames, name, "medium", seed=1)
        assert a.shape == frames.shape and a.dtype == np.uint8
        assert np.array_equal(a, apply_defect(frames, name, 2 / 3, seed=1))  # deterministic, names = floats
        assert not np.array_equal(a, frames)
    with pytest.raises(ValueError):
        apply_defect(frames, "nope", 0.5)
    with pytest.raises(ValueError):
        apply_defect(frames, "blur", 0.0)
    assert MetricsJudge.from_pretrained("ignored", tie_margin=0.05).tie_margin == 0.05


def test_metrics_judge_config_names_what_shapes_its_verdicts():
    import json

    from dqa.measures.video import MEASURES_VERSION

    a = MetricsJudge(tie_margin=0.02).config()
    assert json.loads(json.dumps(a)) == a
    assert a["measures_version"] == MEASURES_VERSION and a["tie_margin"] == 0.02
    assert MetricsJudge(tie_margin=0.05).config() != a
    assert MetricsJudge(max_side=256).config() != a
    assert MetricsJudge(cache_size=1).config() == a  # speed only


def test_metrics_judge_lives_in_dqa_and_is_registered_by_name():
    from vrthinker.judge import Judge

    assert type(Judge.from_pretrained(backend="metrics")) is MetricsJudge
    assert MetricsJudge.__module__ == "dqa.measures.pairwise"


def test_long_video_reads_only_what_it_measures_and_measures_the_same(tmp_path, monkeypatch):
    """A video longer than MAX_FRAMES: measure_video converts only used_positions (plus the detail frames),
    yet every raw measure equals measure_frames over all of its frames."""
    import cv2

    from dqa.measures import video as M

    clip = render_scene("pan", 160, 96, 150, seed=5)
    path = write_video(tmp_path / "long.mp4", clip)
    every = sequential_rgb(path)
    full = measure_frames(np.stack(every))
    used = M.used_positions(len(every))
    assert len(used) < len(every)  # the point: fewer frames converted than decoded
    converted = []
    real_convert = M.cv2.cvtColor

    def counting(img, code, *a, **k):
        if code == cv2.COLOR_BGR2RGB:
            converted.append(1)
        return real_convert(img, code, *a, **k)

    monkeypatch.setattr(M.cv2, "cvtColor", counting)
    sparse = measure_video(path)
    assert len(converted) <= len(used) + M.DETAIL_FRAMES
    assert sparse.frames == full.frames == len(every)
    for k, v in full.measures.items():
        w = sparse.measures[k]
        assert (math.isnan(v) and math.isnan(w)) or w == pytest.approx(v, rel=1e-5, abs=1e-7), k
