"""Rank N candidates per dimension from pairwise judgments: Bradley-Terry fits (choix) on adaptively chosen pairs.

Pure library: `compare(a, b)` is any callable returning labels per dimension (1 = a better, 2 = b better,
0 = tie, None = missing), so a VLM judge, a cache or a simulation all plug in the same way.

Model. Each dimension gets its own Bradley-Terry fit, `P(i beats j) = sigmoid(s_i - s_j)`, computed by
choix's iterative Luce spectral ranking on a dense win matrix (`choix.lsr_pairwise_dense`, iterated to the
ML fixed point). Ties count as half a win each way. Every candidate also gets one virtual tied comparison
with a virtual reference candidate (score 0): a weak prior that keeps the fit finite when a candidate won
or lost everything, and makes scores "log-odds against a typical candidate".

Uncertainty. `stderr` comes from the Fisher information of that likelihood at the fit (each comparison,
tied or not, contributes `p(1-p)`), inverted with the reference score held at 0. The whole covariance is
kept: `Ranking.p_beats(d, a, b)` is P(a beats b) = E[sigmoid(s_a - s_b)] with s_a - s_b drawn from the fit's
normal approximation, so a gap backed by one comparison counts for less than the same gap backed by ten.

Scheduling ("adaptive"). Swiss rounds first (everyone plays; later rounds pair neighbours in the current
ranking, avoiding repeats), then greedy most-informative pairs until the budget, by default `ceil(N log2 N)`
comparisons, and never more than round robin's N(N-1)/2 (the budget is capped there). "Most informative" is
greedy D-optimal design: the pair whose outcome most shrinks the joint uncertainty, largest
`p(1-p) Var(s_i - s_j)`. While the winner is still open (no candidate is the best with probability
>= TOP_SURE under the fit's normal approximation), TOP_SHARE of these steps weight that gain by
`P(i best) + P(j best)`, so the budget goes where top-1 is decided; once the winner is clear, every step
serves the whole order (a consistent judge then gets sorted, not re-confirmed). A pair is judged at most
twice, once in each order (only once when the budget is every pair once); a candidate goes first about as
often as second, so a judge's position bias mostly cancels.
Pairing follows one dimension (OA by default); every dimension is fitted from the same comparisons, and a
missing label only drops that comparison from that dimension's fit. A dimension with no label in any
comparison (TA from a judge that cannot read the prompt) gets no standings: `Ranking.unranked` says why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import choix
import numpy as np

from vrthinker.errors import UsageError
from vrthinker.probabilities import win_fraction
from vrthinker.verdict import DIMENSIONS

Labels = Mapping[str, "int | None"]
CompareFn = Callable[[str, str], Labels]
# several comparisons at once (a served judge keeps them in flight together), labels in the pairs' order
CompareManyFn = Callable[[Sequence[tuple[str, str]]], Sequence[Labels]]
SCHEDULES = ("adaptive", "round_robin")

PRIOR_TIES = 1.0  # virtual tied comparisons of each candidate against the reference (score 0)
TOP_SHARE = 0.6  # share of the post-Swiss steps that favour pairs with a stake in who is best
TOP_SURE = 0.7  # ...unless the leader already is the best with this probability
TOP_DRAWS = 256  # posterior draws for that probability
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Comparison:
    """One judgment the ranking used: `a` was shown first, `b` second."""

    a: str
    b: str
    labels: Mapping[str, int | None]
    probabilities: Mapping[str, Mapping[str, float]] | None = None  # what compare gave with the labels, if any


@dataclass(frozen=True)
class Standing:
    """One candidate's place on one dimension: BT score (log-odds vs a typical candidate) and its stderr."""

    candidate: str
    score: float
    stderr: float
    wins: int = 0
    losses: int = 0
    ties: int = 0

    @property
    def interval(self) -> tuple[float, float]:
        """Approximate 95% interval of the score (normal approximation)."""
        return (self.score - Z95 * self.stderr, self.score + Z95 * self.stderr)


@dataclass(frozen=True)
class Ranking:
    """Per dimension, candidates best first; plus every comparison made and how they were chosen."""

    candidates: tuple[str, ...]
    dimensions: tuple[str, ...]
    standings: Mapping[str, tuple[Standing, ...]]
    comparisons: int
    history: tuple[Comparison, ...]
    schedule: str
    budget: int
    seed: int = 0
    by: str = "OA"
    # per ranked dimension: candidate -> other candidate -> covariance of their scores (variance on the diagonal)
    covariance: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    unranked: Mapping[str, str] = field(default_factory=dict)  # dimension -> why it has no standings

    def p_beats(self, dimension: str, a: str, b: str) -> float:
        """P(a beats b) on `dimension` under the fit and its covariance (see `p_beats`)."""
        scores = {s.candidate: s.score for s in self.standings[dimension]}
        cov = self.covariance[dimension]
        return p_beats(scores[a] - scores[b], cov[a][a] + cov[b][b] - 2 * cov[a][b])

    def order(self, dimension: str | None = None) -> list[str]:
        """Candidates best first on `dimension` (the pairing dimension by default)."""
        return [s.candidate for s in self.standings[dimension or self.by]]

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {
            "candidates": list(self.candidates), "dimensions": list(self.dimensions), "by": self.by,
            "schedule": self.schedule, "budget": self.budget, "seed": self.seed, "comparisons": self.comparisons,
            "standings": {d: [{"rank": k + 1, "candidate": s.candidate, "score": round(s.score, 4),
                               "stderr": round(s.stderr, 4), "interval95": [round(x, 4) for x in s.interval],
                               "wins": s.wins, "losses": s.losses, "ties": s.ties}
                              for k, s in enumerate(self.standings[d])] for d in self.dimensions},
            "history": [{"a": c.a, "b": c.b, "labels": dict(c.labels),
                         **({"probabilities": dict(c.probabilities)} if c.probabilities else {})}
                        for c in self.history],
            "unranked": dict(self.unranked),
        }


def default_budget(n: int, schedule: str = "adaptive") -> int:
    """Comparisons used when no budget is given: every pair once for round robin; adaptive ceil(N log2 N),
    but never more than round robin (below N = 7 that is every pair once too)."""
    pairs = n * (n - 1) // 2
    if schedule == "round_robin":
        return pairs
    return min(pairs, max(1, math.ceil(n * math.log2(n)))) if n > 1 else 0


_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(40)


def p_beats(gap: float, var: float) -> float:
    """P(i beats j) = E[sigmoid(d)] for d ~ Normal(gap, var): the Bradley-Terry win probability averaged over
    the fit's uncertainty (Gauss-Hermite quadrature; 40 nodes are exact to about 1e-9 here)."""
    d = gap + math.sqrt(2 * max(var, 0.0)) * _NODES
    return float(np.dot(_WEIGHTS, 1.0 / (1.0 + np.exp(-d))) / math.sqrt(math.pi))


# ----------------------------------------------------------------------------------------------------------
# fitting


@dataclass(frozen=True)
class Fit:
    """A Bradley-Terry fit of one dimension: scores, their covariance, and the win/loss/tie tallies."""

    scores: np.ndarray
    cov: np.ndarray
    wins: np.ndarray = field(repr=False)  # wins[i, j]: decisive wins of i over j
    ties: np.ndarray = field(repr=False)  # ties[i, j] == ties[j, i]

    @property
    def stderr(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


def fit_bt(n: int, outcomes: Sequence[tuple[int, int, int]], prior: float = PRIOR_TIES,
           initial: np.ndarray | None = None, max_iter: int = 500, tol: float = 1e-6) -> Fit:
    """Fit BT scores of `n` items from `(i, j, label)` outcomes (label 1: i won, 2: j won, 0: tie).

    An outcome `(i, j, label, share)` with a share is soft: i took `share` of the comparison (its expected win
    fraction, P(1) + P(0)/2 from the judge's label probabilities) and j the rest; the tallies keep the label.

    `initial` (scores from an earlier fit) warm-starts the iteration.
    """
    wins = np.zeros((n, n))
    ties = np.zeros((n, n))
    won = np.zeros((n, n))  # won[i, j]: what i took from its comparisons with j (a soft outcome: its expectation)
    for i, j, lab, *frac in outcomes:
        share = frac[0] if frac and frac[0] is not None else {1: 1.0, 2: 0.0}.get(lab, 0.5)
        won[i, j] += share
        won[j, i] += 1.0 - share
        if lab == 1:
            wins[i, j] += 1
        elif lab == 2:
            wins[j, i] += 1
        else:
            ties[i, j] += 1
            ties[j, i] += 1
    # Item n is the virtual reference: each candidate ties it `prior` times (half a win each way).
    w = np.zeros((n + 1, n + 1))
    w[:n, :n] = won
    w[:n, n] = w[n, :n] = 0.5 * prior
    params = None if initial is None else np.append(initial, 0.0)
    # choix's ILSR, iterated here so a slow convergence returns the last iterate instead of raising.
    for _ in range(max_iter):
        new = choix.lsr_pairwise_dense(w, initial_params=params)
        done = params is not None and np.abs(new - params).sum() < tol
        params = new
        if done:
            break
    scores = params[:n] - params[n]
    # Fisher information: every comparison (virtual ones included) adds p(1-p) to the graph Laplacian.
    counts = w + w.T
    full = np.append(scores, 0.0)
    p = 1.0 / (1.0 + np.exp(-(full[:, None] - full[None, :])))
    lap = counts * p * (1 - p)
    info = np.diag(lap.sum(axis=1)) - lap
    cov = np.linalg.inv(info[:n, :n])  # reference fixed at 0; positive definite because prior > 0
    return Fit(scores=scores, cov=cov, wins=wins, ties=ties)


def _outcomes(history: Sequence[tuple[int, int, Mapping[str, int | None]]], dim: str,
              soft: Sequence[Mapping | None] | None = None) -> list[tuple]:
    """(i, j, label) per comparison labelled on `dim`; with `soft` (the label probabilities per comparison,
    None where there are none) also the expected win fraction of i where it has them."""
    if soft is None:
        return [(i, j, lab[dim]) for i, j, lab in history if lab.get(dim) is not None]
    return [(i, j, lab[dim], win_fraction(p[dim]) if p and p.get(dim) else None)
            for (i, j, lab), p in zip(history, soft) if lab.get(dim) is not None]


# ----------------------------------------------------------------------------------------------------------
# scheduling


class _Scheduler:
    """Asks `compare`, keeps the history, orients pairs so every candidate goes first about half the time."""

    def __init__(self, candidates: Sequence[str], compare: CompareFn, dimensions: Sequence[str], by: str,
                 budget: int, rng: np.random.Generator, max_per_pair: int, top_sure: float = TOP_SURE,
                 compare_many: CompareManyFn | None = None):
        self.candidates = list(candidates)
        self.n = len(candidates)
        self.compare = compare
        self.compare_many = compare_many
        self.dimensions = tuple(dimensions)
        self.by = by
        self.budget = budget
        self.rng = rng
        self.max_per_pair = max_per_pair
        self.count = np.zeros((self.n, self.n), dtype=int)  # count[i, j]: times i was shown first against j
        self.first = np.zeros(self.n, dtype=int)
        self.shown = np.zeros(self.n, dtype=int)
        self.history: list[tuple[int, int, dict[str, int | None]]] = []
        self.soft: list[dict | None] = []  # per comparison: the label probabilities compare gave, if any
        self.use_soft = True
        # A fixed random key breaks score ties, so equal scores never favour input order.
        self.tiebreak = rng.permutation(self.n)
        self._fit: Fit | None = None
        self._fit_len = -1
        self.top_sure = top_sure

    @property
    def left(self) -> int:
        return self.budget - len(self.history)

    def times(self, i: int, j: int) -> int:
        return int(self.count[i, j] + self.count[j, i])

    def available(self, i: int, j: int) -> bool:
        return i != j and self.times(i, j) < self.max_per_pair

    def orient(self, i: int, j: int) -> tuple[int, int]:
        """Who goes first: the order not used yet for this pair, else the one who has been first less."""
        if self.count[i, j] != self.count[j, i]:
            return (i, j) if self.count[i, j] < self.count[j, i] else (j, i)
        bi, bj = self.first[i] - self.shown[i] / 2, self.first[j] - self.shown[j] / 2
        if bi != bj:
            return (i, j) if bi < bj else (j, i)
        return (i, j) if self.rng.random() < 0.5 else (j, i)

    def play(self, i: int, j: int) -> None:
        self.play_many([(i, j)])

    def play_many(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Judge pairs chosen without each other's outcomes (one round), through `compare_many` when given:
        oriented in order and recorded in order, so the history is the one playing them one by one makes."""
        shown = []
        for i, j in pairs:
            a, b = self.orient(i, j)
            self.count[a, b] += 1
            self.first[a] += 1
            self.shown[a] += 1
            self.shown[b] += 1
            shown.append((a, b))
        names = [(self.candidates[a], self.candidates[b]) for a, b in shown]
        if self.compare_many is not None and len(names) > 1:
            raws = list(self.compare_many(names))
            if len(raws) != len(names):
                raise ValueError(f"compare_many gave {len(raws)} results for {len(names)} pairs")
        else:
            raws = [self.compare(a, b) for a, b in names]
        for (a, b), raw in zip(shown, raws):
            labels = {}
            for d in self.dimensions:
                v = raw.get(d) if raw is not None else None
                if v is not None and v not in (0, 1, 2):
                    raise ValueError(f"compare({self.candidates[a]!r}, {self.candidates[b]!r}) gave {d}={v!r}; "
                                     "labels are 1, 2, 0 (tie) or None")
                labels[d] = None if v is None else int(v)
            self.history.append((a, b, labels))
            probs = raw.get("probabilities") if isinstance(raw, Mapping) else None
            self.soft.append(dict(probs) if probs else None)

    def fit(self) -> Fit:
        """The current fit of the pairing dimension (refitted only when the history grew)."""
        if self._fit_len != len(self.history):
            prev = self._fit.scores if self._fit is not None else None
            self._fit = fit_bt(self.n, _outcomes(self.history, self.by, self.soft if self.use_soft else None),
                               initial=prev)
            self._fit_len = len(self.history)
        return self._fit

    def ranked(self) -> list[int]:
        s = self.fit().scores
        return sorted(range(self.n), key=lambda i: (-s[i], self.tiebreak[i]))

    # -- the schedules ---------------------------------------------------------------------------------

    def round_robin(self) -> None:
        pairs = [(i, j) for i in range(self.n) for j in range(i + 1, self.n)]
        order = self.rng.permutation(len(pairs))
        self.play_many([pairs[k] for k in order[:max(0, self.left)]])  # no pair depends on another's outcome

    def swiss_round(self, first: bool) -> None:
        """Pair neighbours in the current ranking (random pairs in round one), preferring new pairs."""
        order = list(self.rng.permutation(self.n)) if first else self.ranked()
        unpaired = list(order)
        chosen: list[tuple[int, int]] = []  # a round's pairs are chosen before any is judged: judged together
        while len(unpaired) > 1 and self.left > len(chosen):
            i = unpaired.pop(0)
            # the nearest neighbour not met yet, else the nearest one still allowed
            j = next((j for j in unpaired if self.times(i, j) == 0), None)
            if j is None:
                j = next((j for j in unpaired if self.available(i, j)), None)
            if j is None:
                continue
            unpaired.remove(j)
            chosen.append((i, j))
        self.play_many(chosen)

    def p_best(self) -> np.ndarray:
        """P(candidate is the best), from draws of the fit's normal approximation."""
        f = self.fit()
        chol = np.linalg.cholesky(f.cov + 1e-9 * np.eye(self.n))
        draws = f.scores[:, None] + chol @ self.rng.standard_normal((self.n, TOP_DRAWS))
        return np.bincount(np.argmax(draws, axis=0), minlength=self.n) / TOP_DRAWS

    def informative_pair(self, top: bool = False) -> tuple[int, int] | None:
        """The available pair whose outcome most reduces the joint uncertainty, max p(1-p) Var(s_i - s_j)
        (greedy D-optimal design); with `top`, weighted by P(i is best) + P(j is best)."""
        f = self.fit()
        s, c = f.scores, f.cov
        d = np.diag(c)
        var = d[:, None] + d[None, :] - 2 * c
        p = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
        gain = p * (1 - p) * var
        if top:
            pb = self.p_best()
            if pb.max() < self.top_sure:  # the winner is still open: weight pairs by their stake in it
                gain = gain * (pb[:, None] + pb[None, :])
        allowed = (self.count + self.count.T) < self.max_per_pair
        gain = np.where(np.triu(allowed, 1), gain, -np.inf)
        # small seeded jitter: deterministic, but exact ties do not always favour low indices
        gain = gain + 1e-9 * self.rng.random(gain.shape)
        k = int(np.argmax(gain))
        i, j = divmod(k, self.n)
        return (i, j) if np.isfinite(gain[i, j]) else None

    def adaptive(self, swiss_rounds: int, top_share: float) -> None:
        for r in range(swiss_rounds):
            if self.left <= 0:
                return
            self.swiss_round(first=r == 0)
        top = other = 0
        while self.left > 0:
            want_top = top < top_share * (top + other + 1)
            pair = self.informative_pair(top=want_top)
            if pair is None:
                return  # every pair has been judged in both orders
            self.play(*pair)
            if want_top:
                top += 1
            else:
                other += 1


def rank(candidates: Sequence[str], compare: CompareFn, dimensions: Sequence[str] = DIMENSIONS,
         budget: int | None = None, schedule: str = "adaptive", seed: int = 0, *, by: str | None = None,
         max_per_pair: int = 2, swiss_rounds: int | None = None, top_share: float = TOP_SHARE,
         top_sure: float = TOP_SURE, compare_many: CompareManyFn | None = None, soft: bool = True) -> Ranking:
    """Rank `candidates` on each dimension from at most `budget` calls of `compare(a, b)`.

    `schedule`: "adaptive" (default budget ceil(N log2 N)) or "round_robin" (every pair once, in a seeded
    random order, truncated to `budget`). `by` is the dimension that drives pairing (OA when ranked).
    `max_per_pair` caps how often one pair is judged (2: once in each order, all a deterministic judge can
    tell). `swiss_rounds` defaults to ceil(log2(N) / 2); `top_share` and `top_sure` tune the focus on the
    winner (module docstring). Deterministic for a given `seed` and a deterministic `compare`.
    `compare_many(pairs)`, when given, judges the pairs of one round together (each Swiss round, the whole
    round robin; the most-informative steps depend on each outcome and go one by one): same pairs, same
    history, same ranking as `compare` alone. Where compare's result also holds "probabilities"
    ({dimension: {"1", "2", "0": p}}), a comparison counts as its expected win fraction (soft Bradley-Terry,
    and so does the adaptive schedule's fit); `soft=False` uses the labels alone.
    """
    candidates = list(candidates)
    dimensions = tuple(dimensions)
    if len(candidates) < 2:
        raise UsageError(f"ranking needs at least 2 candidates, got {len(candidates)}")
    if len(set(candidates)) != len(candidates):
        dup = sorted({c for c in candidates if candidates.count(c) > 1})
        raise UsageError(f"candidates must be distinct; repeated: {', '.join(map(str, dup))}")
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if not dimensions:
        raise UsageError("no dimensions to rank on")
    by = by or ("OA" if "OA" in dimensions else dimensions[0])
    if by not in dimensions:
        raise UsageError(f"the pairing dimension {by!r} is not among {dimensions}")
    if budget is not None and budget < 0:
        raise UsageError(f"the budget must be at least 0, got {budget}")
    if max_per_pair < 1:
        raise UsageError("max_per_pair must be at least 1")
    n = len(candidates)
    budget = default_budget(n, schedule) if budget is None else budget
    budget = min(budget, n * (n - 1) // 2)  # never more than round robin: every pair once
    if budget == n * (n - 1) // 2:
        max_per_pair = 1  # a budget of every pair once: a repeat could only leave some pair unjudged
    rng = np.random.default_rng(seed)
    sched = _Scheduler(candidates, compare, dimensions, by, budget, rng, max_per_pair, top_sure, compare_many)
    sched.use_soft = soft
    if schedule == "round_robin":
        sched.round_robin()
    else:
        rounds = swiss_rounds if swiss_rounds is not None else max(1, math.ceil(math.log2(n) / 2))
        sched.adaptive(rounds, top_share)

    standings, covariance, unranked = {}, {}, {}
    for d in dimensions:
        outcomes = _outcomes(sched.history, d, sched.soft if soft else None)
        if sched.history and not outcomes:  # nothing to fit: every candidate would sit at 0 +- 2
            unranked[d] = f"the judge gave no {d} label in any of the {len(sched.history)} comparisons"
            continue
        f = sched.fit() if d == by else fit_bt(n, outcomes)
        se = f.stderr
        order = sorted(range(n), key=lambda i: (-f.scores[i], sched.tiebreak[i]))
        standings[d] = tuple(Standing(candidates[i], float(f.scores[i]), float(se[i]), int(f.wins[i].sum()),
                                      int(f.wins[:, i].sum()), int(f.ties[i].sum())) for i in order)
        covariance[d] = {candidates[i]: {candidates[j]: float(f.cov[i, j]) for j in range(n)} for i in range(n)}
    history = tuple(Comparison(candidates[a], candidates[b], labels, p)
                    for (a, b, labels), p in zip(sched.history, sched.soft))
    return Ranking(candidates=tuple(candidates), dimensions=tuple(d for d in dimensions if d in standings),
                   standings=standings, comparisons=len(history), history=history, schedule=schedule,
                   budget=budget, seed=seed, by=by, covariance=covariance, unranked=unranked)
