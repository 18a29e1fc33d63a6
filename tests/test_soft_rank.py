"""Bradley-Terry with soft outcomes: a comparison with label probabilities counts as its expected win fraction."""
from __future__ import annotations

import numpy as np
import pytest

from vrthinker.rank import fit_bt, rank


def test_soft_shares_of_one_zero_and_half_fit_as_the_labels_do():
    hard = [(0, 1, 1), (1, 2, 2), (0, 2, 0), (2, 0, 1)]
    soft = [(0, 1, 1, 1.0), (1, 2, 2, 0.0), (0, 2, 0, 0.5), (2, 0, 1, 1.0)]
    a, b = fit_bt(3, hard), fit_bt(3, soft)
    assert np.allclose(a.scores, b.scores, atol=1e-6) and np.allclose(a.cov, b.cov, atol=1e-6)


def test_a_narrow_win_moves_scores_less_than_a_sure_one():
    sure = fit_bt(2, [(0, 1, 1, 0.99)] * 3)
    narrow = fit_bt(2, [(0, 1, 1, 0.55)] * 3)
    assert sure.scores[0] - sure.scores[1] > 3 * (narrow.scores[0] - narrow.scores[1]) > 0
    assert sure.wins[0, 1] == narrow.wins[0, 1] == 3  # the tallies keep the labels


def _judge(quality):
    """Labels always the better one; probabilities grow with the quality gap (a calibrated-looking judge)."""
    def compare(a, b):
        gap = quality[a] - quality[b]
        p1 = 1 / (1 + np.exp(-gap))
        return {"OA": 1 if gap > 0 else 2, "probabilities": {"OA": {"1": p1, "2": 1 - p1, "0": 0.0}}}
    return compare


def test_rank_uses_the_probabilities_and_keeps_them_in_its_history():
    quality = {"a": 3.0, "b": 0.2, "c": 0.0, "d": -3.0}
    soft = rank(list(quality), _judge(quality), dimensions=("OA",), schedule="round_robin", seed=1)
    hard = rank(list(quality), _judge(quality), dimensions=("OA",), schedule="round_robin", seed=1, soft=False)
    assert soft.order() == hard.order() == ["a", "b", "c", "d"]
    s = {x.candidate: x.score for x in soft.standings["OA"]}
    h = {x.candidate: x.score for x in hard.standings["OA"]}
    # b and c are near equals: the labels say b won outright, the probabilities that it barely did
    assert s["b"] - s["c"] < 0.5 * (h["b"] - h["c"])
    assert all(c.probabilities is not None for c in soft.history)
    assert soft.to_dict()["history"][0]["probabilities"]["OA"]["1"] == pytest.approx(
        soft.history[0].probabilities["OA"]["1"])
