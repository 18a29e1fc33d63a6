"""The content-diverse suite (vrthinker_eval.scenes) and what the weight-free measures make of it: clean content of
held-out kinds graded accept, frozen and mostly still copies refine or worse, a slow pan not flagged, CRF 45
blocking on smooth content seen by the pairwise judge, a still-scene prompt not marked down for stillness.
Seeds differ from the benchmark's (seed 0), and the size is smaller (tests stay quick)."""
from __future__ import annotations

import numpy as np
import pytest

from dqa.measures.pairwise import MetricsJudge
from dqa.measures.video import asks_for_still, measure_video
from dqa.score.grade import load_config, synthesize
from vrthinker_eval import scenes

W, H, T, SEED = 320, 176, 40, 5


def grade(m):
    return synthesize({"vq": m.vq, "mq": m.mq}, load_config())


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """{(family, kind): path} for a few families (held-out ones included), clean and damaged."""
    root = tmp_path_factory.mktemp("scenes")
    out = {}
    for fam in ("objects_gradient", "flat", "fog", "night", "slow", "cartoon"):
        clean = scenes.render(fam, W, H, T, SEED)
        out[(fam, "clean")] = scenes.write(clean, root / f"{fam}.mp4")
        for kind in ("frozen", "mostly_still", "x264_crf45"):
            out[(fam, kind)] = scenes.write(scenes.damage(clean, kind, 0.6, SEED), root / f"{fam}_{kind}.mp4")
    return out


@pytest.fixture(scope="module")
def judge():
    return MetricsJudge(cache_size=256)


def test_split_is_fixed_whole_and_large_enough():
    assert set(scenes.CAL_FAMILIES) | set(scenes.HELD_FAMILIES) == set(scenes.FAMILIES)
    assert not set(scenes.CAL_FAMILIES) & set(scenes.HELD_FAMILIES)
    assert set(scenes.CAL_KINDS) | set(scenes.HELD_KINDS) == set(scenes.KINDS)
    assert not set(scenes.CAL_KINDS) & set(scenes.HELD_KINDS)
    assert len(scenes.HELD_FAMILIES) >= 0.4 * len(scenes.FAMILIES)
    assert len(scenes.HELD_KINDS) >= 0.4 * len(scenes.KINDS)
    assert scenes.split_of("pan", "blur") == "calibration" and scenes.split_of("fog", "blur") == "held-out"
    assert scenes.split_of("pan", "av1_low") == "held-out"


def test_every_family_renders_and_every_kind_damages():
    for fam in scenes.FAMILIES:
        a = scenes.render(fam, 96, 64, 8, 1)
        assert a.shape == (8, 64, 96, 3) and a.dtype == np.uint8
        assert np.array_equal(a, scenes.render(fam, 96, 64, 8, 1))  # deterministic
        assert np.abs(np.diff(a.astype(np.int16), axis=0)).mean() > 0.01, fam  # it moves
    clean = scenes.render("shapes", 96, 64, 12, 1)
    for kind in scenes.KINDS:
        bad = scenes.damage(clean, kind, 0.8, 1)
        assert bad.shape == clean.shape and not np.array_equal(bad, clean), kind
    with pytest.raises(ValueError):
        scenes.damage(clean, "nope")
    with pytest.raises(ValueError):
        scenes.render("nope")


def test_clean_content_of_every_kind_is_accepted(clips, judge):
    for fam in ("objects_gradient", "flat", "fog", "night", "slow", "cartoon"):
        m = judge.measure(clips[(fam, "clean")])
        g = grade(m)
        assert g.action == "accept", (fam, m.vq, m.mq, m.worst, g.score)
        assert m.vq > 0.5, (fam, m.scores)  # never saturated at 0 (it was 0.0003 on soft gradients)


def test_frozen_and_mostly_still_copies_are_refine_or_worse(clips, judge):
    for fam in ("objects_gradient", "fog", "slow", "cartoon"):
        for kind in ("frozen", "mostly_still"):
            m = judge.measure(clips[(fam, kind)])
            g = grade(m)
            assert g.action in ("refine", "reject"), (fam, kind, m.mq, m.scores["dynamics"], g.score)
            assert m.worst["mq"] in ("dynamics", "frozen")


def test_slow_motion_is_not_flagged(clips, judge):
    m = judge.measure(clips[("slow", "clean")])  # a pan of under half a pixel per frame
    assert m.measures["still_fraction"] < 0.1 and m.scores["dynamics"] > 0.95, m.measures


def test_judge_prefers_clean_over_frozen_and_crf45_both_orders(clips, judge):
    for fam in ("objects_gradient", "flat", "fog", "night"):
        for kind, dim in (("frozen", "MQ"), ("x264_crf45", "VQ")):
            clean, bad = clips[(fam, "clean")], clips[(fam, kind)]
            for first, second, want in ((clean, bad, 1), (bad, clean, 2)):
                v = judge.compare(first, second, "a scene")
                assert v.labels[dim] == want and v.labels["OA"] == want, (fam, kind, v.reasoning)
                assert v.extra["evidence"][dim.lower()] * (1 if want == 1 else -1) > 0


def test_a_still_scene_prompt_does_not_count_stillness(clips):
    from dqa.score.scoring import score

    frozen = clips[("fog", "frozen")]
    moving = score([frozen], prompt="fog rolling over the hills").videos[0]
    still = score([frozen], prompt="a still photo of a foggy valley, static shot").videos[0]
    assert asks_for_still("a still photo of a foggy valley") and not asks_for_still("fog rolling over the hills")
    assert still.components["mq"].value > moving.components["mq"].value
    assert still.components["mq"].details["still_prompt"] is True
    assert moving.grade.action in ("refine", "reject")
    assert measure_video(frozen).mq == pytest.approx(moving.components["mq"].value)
