"""Pairwise evidence (dqa.measures.evidence): log-ratios counted beyond re-encoding noise, summed per dimension."""
from __future__ import annotations

import math

import pytest

from dqa.measures import evidence
from dqa.measures.evidence import CAP, MEASURES, NOISE, compare, label, log_ratio


def clean_raw() -> dict[str, float]:
    """Raw measures of the order a clean clip gives."""
    return {"edge_width": 0.9, "noise_sigma": 0.5, "flicker": 0.1, "blockiness": 0.1, "ringing": 1.5,
            "banding": 0.1, "detail_ratio": 0.7, "combing": 0.0, "echo": 0.01, "clipped": 0.0, "highlights": 0.01,
            "luma_std": 45.0, "colourfulness": 30.0, "still_fraction": 0.0, "frozen_fraction": 0.0, "accel_ratio": 0.2,
            "jitter": 0.0005, "order_violations": 0.0}


def test_identical_measures_tie():
    e = compare(clean_raw(), clean_raw())
    assert e.vq == e.mq == e.oa == 0.0 and label(e.oa, 0.02) == 0 and e.top == {}


def test_differences_inside_the_noise_count_zero():
    a, b = clean_raw(), clean_raw()
    for k, (_, direction, floor) in MEASURES.items():  # every measure moved to 90% of its noise, against video 2
        b[k] = (a[k] + floor) * math.exp(direction * 0.9 * NOISE[k]) - floor
    e = compare(a, b)
    assert e.vq == pytest.approx(0.0) and e.mq == pytest.approx(0.0)


def test_one_large_reliable_difference_decides():
    """Video 2 is four times as noisy; every other measure favours it slightly (just beyond its noise)."""
    a, b = clean_raw(), clean_raw()
    b["noise_sigma"] = 4 * a["noise_sigma"] + 3 * MEASURES["noise_sigma"][2]
    for k, (dim, direction, floor) in MEASURES.items():
        if dim == "VQ" and k != "noise_sigma":
            a[k] = (b[k] + floor) * math.exp(direction * (NOISE[k] + 0.01)) - floor
    e = compare(a, b)
    assert e.top["vq"] == "noise_sigma"
    assert label(e.vq, 0.02) == 1 and label(e.oa, 0.02) == 1
    assert label(compare(b, a).vq, 0.02) == 2  # antisymmetric: the order does not matter


def test_a_measure_both_fail_equally_cancels():
    """Both videos are badly blocky (the same fault); only video 2's extra noise tells them apart."""
    a, b = clean_raw(), clean_raw()
    a["blockiness"] = b["blockiness"] = 2.5
    b["noise_sigma"] = 6.0
    e = compare(a, b)
    assert e.counted["blockiness"] == 0.0 and label(e.vq, 0.02) == 1


def test_side_effects_of_a_fault_are_explained_away():
    """Added noise breaks up blocks and bands and adds fine "detail": the noisy copy looks better on those, by
    more than their noise, but its worse noise explains those gains away (it used to cancel the noise)."""
    a, b = clean_raw(), clean_raw()
    a.update(blockiness=1.0, banding=0.4)  # a smooth gradient's faint blocks and bands, clean
    b.update(noise_sigma=6.0, blockiness=0.2, banding=0.1, detail_ratio=1.4)
    e = compare(a, b)
    assert e.ratios["blockiness"] < -NOISE["blockiness"] and e.ratios["detail_ratio"] < -NOISE["detail_ratio"]
    assert e.counted["blockiness"] == e.counted["banding"] == e.counted["detail_ratio"] == 0.0
    assert e.top["vq"] == "noise_sigma" and label(e.vq, 0.02) == 1
    # without the explaining away the gains would have outweighed the noise
    assert sum(evidence.excess(e.ratios[k], NOISE[k]) for k in MEASURES if MEASURES[k][0] == "VQ") < 0


def test_missing_measures_say_nothing_and_one_measure_is_capped():
    a, b = clean_raw(), clean_raw()
    a["edge_width"] = float("nan")  # no edges to measure in video 1
    b["edge_width"] = 5.0
    b["still_fraction"] = 1.0  # video 2 never moves
    for k in ("accel_ratio", "jitter", "frozen_fraction", "order_violations"):
        b[k] = float("nan")  # a still clip's motion cannot be judged
    e = compare(a, b)
    assert math.isnan(e.ratios["edge_width"]) and e.counted["edge_width"] == 0.0
    assert e.top["mq"] == "still_fraction" and 0 < e.mq <= CAP and label(e.mq, 0.02) == 1


def test_log_ratio_is_scale_free_and_directed():
    assert log_ratio("noise_sigma", 1.0, 2.0) == pytest.approx(-log_ratio("noise_sigma", 2.0, 1.0))
    assert log_ratio("noise_sigma", 1.0, 3.0) > 0  # more noise in video 2: video 1 is better
    assert log_ratio("luma_std", 40.0, 10.0) > 0  # less contrast in video 2: video 1 is better
    # the same ratio at ten times the level gives (nearly) the same log-ratio once above the floor
    assert log_ratio("luma_std", 400.0, 100.0) == pytest.approx(log_ratio("luma_std", 40.0, 10.0), rel=0.1)
    assert set(evidence.NOISE) == set(MEASURES)
