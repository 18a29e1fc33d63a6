"""Calibration of label probabilities (vrthinker_eval.calibration) and `judge eval`'s calibration output."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vrthinker.cli import main
from vrthinker.judge import Judge
from vrthinker.store import Store
from vrthinker.testing import GivenProbabilities
from vrthinker_eval import benchmarks, judged
from vrthinker_eval.calibration import calibrate, calibration


def test_figures_by_hand():
    # rows: top label right at 0.9, wrong at 0.6, right at 0.6 (a tie called a tie)
    p = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    y = np.array([1, 2, 0])
    c = calibrate(p, y)
    brier = ((0.1 ** 2 + 0.05 ** 2 + 0.05 ** 2) + (0.6 ** 2 + 0.7 ** 2 + 0.1 ** 2)
             + (0.2 ** 2 + 0.2 ** 2 + 0.4 ** 2)) / 3
    assert c.n == 3 and c.brier == pytest.approx(brier)
    # bins: [0.6, 0.7) holds two rows (mean 0.6, one right), [0.9, 1.0] one (0.9, right)
    assert c.ece == pytest.approx(2 / 3 * abs(0.5 - 0.6) + 1 / 3 * abs(1.0 - 0.9))
    bins = {b.low: (b.n, b.accuracy) for b in c.reliability if b.n}
    assert bins == {0.6: (2, 0.5), 0.9: (1, 1.0)}
    assert [(cov, k, acc) for cov, k, acc in c.coverage if cov in (1.0, 0.3)] == [(1.0, 3, pytest.approx(2 / 3)),
                                                                                   (0.3, 1, 1.0)]
    # the sweep: a tie at or below 0.6 gets row 2 wrong... and row 3 right either way; t = 0 (argmax) is best here
    assert c.tie_threshold == 0.0 and c.tie_accuracy == pytest.approx(2 / 3)


def test_tie_sweep_finds_the_threshold_that_turns_unsure_calls_into_ties():
    p = np.array([[0.45, 0.35, 0.2], [0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.85, 0.05]])
    y = np.array([0, 1, 0, 2])
    c = calibrate(p, y)
    assert c.tie_accuracy == 1.0 and 0.45 <= c.tie_threshold < 0.85


def simulated(n: int, seed: int, sharpen: float = 1.0):
    """A judge whose stated distribution p is drawn from a Dirichlet and whose truth is drawn from p**sharpen
    (renormalised): sharpen 1 is calibrated; sharpen > 1 means the judge is under-confident."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.6, 0.6, 0.3], size=n)
    q = p ** sharpen
    q /= q.sum(axis=1, keepdims=True)
    y = np.array([(1, 2, 0)[rng.choice(3, p=row)] for row in q])
    return p, y


def test_a_calibrated_judge_is_recovered_and_a_miscalibrated_one_is_caught():
    good = calibrate(*simulated(20000, 1))
    assert good.ece < 0.015
    for b in good.reliability:
        if b.n > 500:
            assert b.accuracy == pytest.approx(b.confidence, abs=0.03)
    bad = calibrate(*simulated(20000, 1, sharpen=3.0))
    assert bad.ece > 0.08 and bad.brier < good.brier  # its truth is more predictable than it says
    acc = [a for _, _, a in good.coverage]
    assert acc == sorted(acc)  # answering only the surest calls: more accurate as coverage falls


def test_judge_eval_json_gives_calibration_per_dimension(tmp_path, capsys):
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path / "bench"
    items = []
    for i in range(3):
        write_video(root / "videos" / f"a{i}.mp4", render_scene("shapes", 64, 48, 8, seed=i), fps=8)
        write_video(root / "videos" / f"b{i}.mp4", render_scene("pan", 64, 48, 8, seed=i), fps=8)
        items.append({"caption": f"caption {i}", "video_0_path": f"a{i}.mp4", "video_1_path": f"b{i}.mp4",
                      "overall_preference": ("Video 1 better", "Video 2 better", "Same")[i],
                      "category_preference": {"Alignment": "Video 1 better", "Fineness": "Same",
                                              "Coherence & Consistency": "Video 2 better"}})
    (root / "test.json").write_text(json.dumps(items))
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["<Answer>TA=1, VQ=1, MQ=1, OA=1</Answer>"]))
    db = str(tmp_path / "j.sqlite")
    sure = {d: {"1": 0.8, "2": 0.15, "0": 0.05} for d in ("TA", "VQ", "MQ", "OA")}
    judge = Judge.from_pretrained(str(replies), backend="scripted", protocol="card")
    judge.backend = GivenProbabilities(judge.backend, [[sure]])
    bench = benchmarks.BENCHMARKS["mjbench-video"]
    with Store(db) as store:  # judged in-library with probabilities; the command reuses them from the store
        judged.judge_benchmark(judge, bench.load(str(root)), store, job=f"eval/{bench.name}")
    code = main(["eval", "--benchmark", "mjbench-video", "--data", str(root), "--db", db, "--json",
                 "--backend", "scripted", "--model", str(replies), "--protocol", "card", "--bootstrap", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["calibration"]["OA"] == {"ece": pytest.approx(abs(1 / 3 - 0.8)), "brier": pytest.approx(
        ((0.2 ** 2 + 0.15 ** 2 + 0.05 ** 2) + (0.8 ** 2 + 0.85 ** 2 + 0.05 ** 2) + (0.8 ** 2 + 0.15 ** 2 + 0.95 ** 2))
        / 3), "n": 3}
    assert out["calibration"]["TA"]["ece"] == pytest.approx(0.2)  # always right at 0.8
    assert out["calibration_detail"]["OA"]["reliability"][8]["n"] == 3
    code = main(["eval", "--benchmark", "mjbench-video", "--data", str(root), "--db", db,
                 "--backend", "scripted", "--model", str(replies), "--protocol", "card", "--bootstrap", "0"])
    text = capsys.readouterr().out
    assert code == 0 and "label probabilities" in text and "reliability OA" in text


def test_without_probabilities_there_is_no_calibration():
    assert calibration([{"OA": 1}], [None], ("OA",))["OA"].n == 0
