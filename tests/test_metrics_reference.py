"""The with-ties accuracy against VideoAlign's: `calc_accuracy_with_ties` (KwaiVGI/VideoAlign, calc_accuracy.py;
the figure VideoGen-RewardBench reports as "with_ties"), restated below in our own words as a slow, obvious
reference, and a property test that our figure (eval/metrics.py) always equals it."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrthinker_eval.metrics import tie_sweep

# VideoAlign's rule, restated: sort the pairs by |model difference| (a stable sort, so equal differences keep
# their input order); start with no predicted tie; then, pair by pair in that order, make that one pair a
# predicted tie and score every pair (a human tie is right only when predicted a tie, a human preference only
# when not predicted a tie and the difference has its sign). The figure is the best score over those steps: the
# state before the first step is never scored (no threshold below every difference), and pairs with equal
# differences become ties one at a time. An empty list scores 0, as VideoAlign's error path returns.
def calc_accuracy_with_ties(h, m):
    n = len(h)
    if n == 0:
        return 0
    tie = [False] * n
    best = float("-inf")
    for i in sorted(range(n), key=lambda k: abs(m[k])):
        tie[i] = True
        right = sum((tie[k] if h[k] == 0 else (not tie[k] and h[k] * m[k] > 0)) for k in range(n))
        best = max(best, right / n)
    return best


TO_OURS = {1: 1, -1: 2, 0: 0}  # VideoAlign's human label (1: A preferred, -1: B, 0: tie) -> ours


def ours(h, m) -> float:
    return tie_sweep([TO_OURS[x] for x in h], m, bootstrap=0).value


# differences drawn from a few values (so equal |differences|, zeros and sign flips are common) or any float
small = st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 0.25, -0.25])
wide = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
rows = st.lists(st.tuples(st.sampled_from([1, -1, 0]), st.one_of(small, wide)), min_size=1, max_size=60)


@settings(max_examples=400, deadline=None)
@given(rows)
def test_with_ties_accuracy_is_videoaligns(data):
    h, m = [x for x, _ in data], [y for _, y in data]
    assert ours(h, m) == calc_accuracy_with_ties(h, m)


def test_random_trials_agree_and_bootstrap_resamples_are_swept_the_same_way():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 40)
        h = [rng.choice([1, -1, 0]) for _ in range(n)]
        m = [round(rng.gauss(0, 1), rng.choice([0, 1, 3])) for _ in range(n)]
        assert ours(h, m) == calc_accuracy_with_ties(h, m)
    # the interval comes from the same sweep over each resample: inside [0, 1] and around the figure
    h = [rng.choice([1, -1, 0]) for _ in range(200)]
    m = [rng.gauss(0.3 * x, 1) for x in h]
    r = tie_sweep([TO_OURS[x] for x in h], m, bootstrap=200, seed=1)
    assert r.value == calc_accuracy_with_ties(h, m) and 0 <= r.ci[0] <= r.value <= r.ci[1] <= 1


def test_no_threshold_below_the_smallest_difference():
    """VideoAlign never tries 'no predicted tie' unless some |difference| is 0 (the old sweep also tried 0)."""
    h, m = [1, -1, 1], [1.0, -3.0, 2.0]  # with no tie predicted all 3 are right; VideoAlign starts at |d| = 1
    assert calc_accuracy_with_ties(h, m) == pytest.approx(2 / 3)
    r = tie_sweep([TO_OURS[x] for x in h], m, bootstrap=0)
    assert r.value == calc_accuracy_with_ties(h, m) and r.threshold == 1.0 and r.correct == 2
