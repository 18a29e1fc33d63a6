"""Benchmark tournament ranking by simulation: the adaptive scheduler against round robin, in one run.

A synthetic judge of known accuracy ranks N = 8, 16, 32, 64 candidates over many seeded trials; we report
comparisons used, Kendall tau against the true OA order and how often the true best is ranked first.

The synthetic judge (`SyntheticJudge`). Each candidate has a latent quality per dimension: a shared
general quality g ~ N(0, 1) is OA; TA, VQ and MQ are 0.7 g + 0.71 e_d (unit variance, correlated with OA).
For each dimension separately: with probability `tie` the label is a tie; otherwise
  - "thurstone" (default): the first video wins with probability Phi((q_1 - q_2) / sigma + b). sigma is
    calibrated so that, over random pairs, the better video wins with probability `accuracy` (for unit-normal
    qualities: accuracy = 1/2 + arctan(sqrt(2) / sigma) / pi). Close pairs are near coin flips, far pairs easy.
  - "constant": the better video wins with probability `accuracy` whatever the gap, plus the same bias.
  b is the position bias: at equal quality the first video wins with probability 0.5 + `bias` (0.1).
The measured accuracy (decisive labels only, both positions) is printed per N so the calibration is visible.

    python scripts/bench_rank.py [--trials 200,200,300,50] [--accuracy 0.8] [--judge-model thurstone]

Last line: `n=32 ours_comparisons=A roundrobin_comparisons=B ours_top1=C roundrobin_top1=D ours_tau=E
roundrobin_tau=F` (means over the trials at N = 32).

`--soft` runs instead a calibrated judge that also reports its label probabilities (`CalibratedJudge`) at a
range of budgets, the Bradley-Terry fit with soft outcomes against the one on labels alone, same seeds:

    python scripts/bench_rank.py --soft [--soft-n 16] [--soft-budgets 8,12,16,24,32,48,64] [--soft-trials 200]

Last line: `soft_comparisons=A hard_comparisons=B top1=C ratio=A/B`: the comparisons the soft fit needs
(interpolated) for the top-1 accuracy the labels alone reach at the largest budget.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

DIMS = ("TA", "VQ", "MQ", "OA")


def thurstone_sigma(accuracy: float) -> float:
    """Noise sigma for which a random pair of unit-normal qualities is judged right with `accuracy`."""
    if not 0.5 < accuracy < 1.0:
        raise ValueError("accuracy must be in (0.5, 1)")
    return math.sqrt(2) / math.tan(math.pi * (accuracy - 0.5))


@dataclass
class SyntheticJudge:
    """A noisy pairwise judge over named candidates with known qualities (see the module docstring)."""

    quality: dict[str, dict[str, float]]  # candidate -> dimension -> latent quality
    accuracy: float = 0.8
    bias: float = 0.1
    tie: float = 0.1
    model: str = "thurstone"
    seed: int = 0

    def __post_init__(self):
        from scipy.special import ndtr, ndtri

        self._rng = np.random.default_rng(self.seed)
        self._ndtr = ndtr
        self._sigma = thurstone_sigma(self.accuracy) if self.model == "thurstone" else None
        self._b = float(ndtri(0.5 + self.bias))
        self.calls = 0
        self.decisive = 0
        self.correct = 0

    @classmethod
    def random(cls, n: int, seed: int = 0, **kw) -> "SyntheticJudge":
        """N candidates c00, c01, ... with random qualities; the judge's own noise seeded from `seed` too."""
        rng = np.random.default_rng([seed, 7])
        g = rng.standard_normal(n)
        q = {"OA": g}
        for d in ("TA", "VQ", "MQ"):
            q[d] = 0.7 * g + math.sqrt(1 - 0.49) * rng.standard_normal(n)
        names = [f"c{i:02d}" for i in range(n)]
        return cls({c: {d: float(q[d][i]) for d in DIMS} for i, c in enumerate(names)}, seed=seed, **kw)

    def true_order(self, dim: str = "OA") -> list[str]:
        return sorted(self.quality, key=lambda c: -self.quality[c][dim])

    def p_first(self, q1: float, q2: float) -> float:
        if self.model == "thurstone":
            return float(self._ndtr((q1 - q2) / self._sigma + self._b))
        p = self.accuracy if q1 > q2 else 1 - self.accuracy
        return min(1.0, max(0.0, p + self.bias))

    def __call__(self, a: str, b: str) -> dict[str, int | None]:
        self.calls += 1
        out = {}
        for d in DIMS:
            q1, q2 = self.quality[a][d], self.quality[b][d]
            if self._rng.random() < self.tie:
                out[d] = 0
                continue
            out[d] = 1 if self._rng.random() < self.p_first(q1, q2) else 2
            self.decisive += 1
            self.correct += (out[d] == 1) == (q1 > q2)
        return out


class CalibratedJudge(SyntheticJudge):
    """The same judge (same label distribution), saying how sure it is, and calibrated.

    Thurstone's rule "the first wins when (q_1 - q_2) / sigma + b + e > 0, e ~ N(0, 1)" is split in two: the
    judge sees y = (q_1 - q_2) / sigma + b + e_1 with e_1 ~ N(0, `unseen`) (what it cannot tell: its misreading
    of the videos), and its own decision noise e_2 ~ N(0, 1 - `unseen`) is what its probability is about:
    p = P(y + e_2 > 0 | y) = Phi(y / sqrt(1 - unseen)). It reports P(1) = (1 - tie) p, P(2) = (1 - tie) (1 - p),
    P(0) = tie and draws its label from them. Its labels are distributed exactly as SyntheticJudge's, and its
    probabilities are calibrated (given y, the label is drawn from them), but they are not the truth: with
    `unseen` > 0 a confident call can still be wrong.
    """

    unseen: float = 0.5

    def __call__(self, a: str, b: str) -> dict:
        self.calls += 1
        out: dict = {"probabilities": {}}
        for d in DIMS:
            q1, q2 = self.quality[a][d], self.quality[b][d]
            y = (q1 - q2) / self._sigma + self._b + math.sqrt(self.unseen) * self._rng.standard_normal()
            p = float(self._ndtr(y / math.sqrt(1 - self.unseen)))
            probs = {"1": (1 - self.tie) * p, "2": (1 - self.tie) * (1 - p), "0": self.tie}
            u = self._rng.random()
            out[d] = 1 if u < probs["1"] else 2 if u < probs["1"] + probs["2"] else 0
            out["probabilities"][d] = probs
            if out[d]:
                self.decisive += 1
                self.correct += (out[d] == 1) == (q1 > q2)
        return out


def soft_trial(args: tuple) -> dict:
    """One seeded adaptive ranking by the calibrated judge at a given budget: top-1 on OA, soft or hard fit."""
    from vrthinker.rank import rank

    n, seed, budget, accuracy, soft = args
    judge = CalibratedJudge.random(n, seed=seed, accuracy=accuracy)
    r = rank(list(judge.quality), judge, seed=seed, budget=budget, soft=soft, dimensions=("OA",))
    return {"budget": budget, "soft": soft, "comparisons": r.comparisons,
            "top1": float(r.order("OA")[0] == judge.true_order("OA")[0])}


def soft_main(a) -> int:
    """Soft against hard Bradley-Terry at equal top-1: the same calibrated judge, the same seeds, a range of budgets."""
    n, budgets = a.soft_n, [int(x) for x in a.soft_budgets.split(",")]
    jobs = [(n, 1000 * n + t, b, a.accuracy, soft) for b in budgets for t in range(a.soft_trials)
            for soft in (True, False)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        results = list(ex.map(soft_trial, jobs, chunksize=8))
    curve = {}
    print(f"calibrated synthetic judge (thurstone, accuracy {a.accuracy}, position bias +0.1, ties 10%, half the "
          f"noise unseen by the judge), N={n}, "
          f"{a.soft_trials} trials per budget, adaptive schedule, OA ({time.perf_counter() - t0:.0f}s)")
    print(f"{'budget':>7} {'comparisons':>12} {'top-1 soft':>11} {'top-1 hard':>11}")
    for b in budgets:
        row = {s: [r for r in results if r["budget"] == b and r["soft"] == s] for s in (True, False)}
        top = {s: float(np.mean([r["top1"] for r in row[s]])) for s in row}
        cmp_ = float(np.mean([r["comparisons"] for r in row[True]]))
        curve[b] = (cmp_, top[True], top[False])
        print(f"{b:>7} {cmp_:>12.1f} {top[True]:>11.3f} {top[False]:>11.3f}")
    # the hard fit's top-1 at the largest budget; the comparisons the soft fit needs to reach it (interpolated)
    target_cmp, _, target = curve[budgets[-1]]
    need = None
    prev = None
    for b in budgets:
        c, soft_top, _ = curve[b]
        if soft_top >= target:
            if prev is None or prev[1] >= target:
                need = c
            else:
                need = prev[0] + (c - prev[0]) * (target - prev[1]) / (soft_top - prev[1])
            break
        prev = (c, soft_top)
    print(f"soft: {'n/a' if need is None else f'{need:.1f}'} comparisons for the top-1 ({target:.3f}) hard reaches "
          f"with {target_cmp:.1f}")
    print(f"soft_comparisons={'nan' if need is None else f'{need:.1f}'} hard_comparisons={target_cmp:.1f} "
          f"top1={target:.3f} ratio={'nan' if need is None else f'{need / target_cmp:.2f}'}")
    return 0


def trial(args: tuple) -> dict:
    """One seeded ranking of N candidates with one schedule: tau and top-1 per dimension, comparisons used."""
    from scipy.stats import kendalltau

    from vrthinker.rank import rank

    n, seed, schedule, accuracy, model = args
    judge = SyntheticJudge.random(n, seed=seed, accuracy=accuracy, model=model)
    t0 = time.perf_counter()
    r = rank(list(judge.quality), judge, schedule=schedule, seed=seed)
    out = {"n": n, "schedule": schedule, "comparisons": r.comparisons, "seconds": time.perf_counter() - t0,
           "decisive": judge.decisive, "correct": judge.correct}
    for d in DIMS:
        truth = judge.true_order(d)
        got = r.order(d)
        pos = {c: k for k, c in enumerate(got)}
        out[f"tau_{d}"] = float(kendalltau(range(n), [pos[c] for c in truth]).statistic)
        out[f"top1_{d}"] = float(got[0] == truth[0])
    return out


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="8,16,32,64")
    p.add_argument("--trials", default="200,200,300,50", help="trials per size, same order as --sizes")
    p.add_argument("--accuracy", type=float, default=0.8)
    p.add_argument("--judge-model", choices=["thurstone", "constant"], default="thurstone")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--soft", action="store_true",
                   help="instead: a calibrated judge's label probabilities (soft Bradley-Terry) against its labels "
                        "alone, comparisons needed for equal top-1")
    p.add_argument("--soft-n", type=int, default=16)
    p.add_argument("--soft-budgets", default="8,12,16,24,32,48,64")
    p.add_argument("--soft-trials", type=int, default=200)
    a = p.parse_args(argv)
    if a.soft:
        return soft_main(a)
    sizes = [int(x) for x in a.sizes.split(",")]
    trials = [int(x) for x in a.trials.split(",")]
    if len(trials) != len(sizes):
        p.error("--trials needs one count per size")

    jobs = [(n, 1000 * n + t, s, a.accuracy, a.judge_model)
            for n, k in zip(sizes, trials) for t in range(k) for s in ("adaptive", "round_robin")]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        results = list(ex.map(trial, jobs, chunksize=4))
    wall = time.perf_counter() - t0

    console = Console(width=140)
    table = Table(title=f"tournament ranking, synthetic {a.judge_model} judge: accuracy {a.accuracy}, "
                        f"position bias +0.1, ties 10%  ({wall:.0f}s)", title_justify="left")
    for col in ("N", "trials", "judge acc", "schedule", "comparisons", "of RR", "tau OA", "top-1 OA",
                "tau TA/VQ/MQ", "top-1 TA/VQ/MQ", "s/rank"):
        table.add_column(col, justify="right" if col not in ("schedule",) else "left")
    summary = {}
    for n, k in zip(sizes, trials):
        rr_cmp = n * (n - 1) / 2
        for s in ("adaptive", "round_robin"):
            rows = [r for r in results if r["n"] == n and r["schedule"] == s]
            m = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key not in ("n", "schedule")}
            acc = sum(r["correct"] for r in rows) / max(1, sum(r["decisive"] for r in rows))
            tau_o = np.mean([m[f"tau_{d}"] for d in ("TA", "VQ", "MQ")])
            top_o = np.mean([m[f"top1_{d}"] for d in ("TA", "VQ", "MQ")])
            se_top = math.sqrt(m["top1_OA"] * (1 - m["top1_OA"]) / len(rows))
            table.add_row(str(n), str(k), f"{acc:.3f}", "ours (adaptive)" if s == "adaptive" else "round robin",
                          f"{m['comparisons']:.0f}", f"{m['comparisons'] / rr_cmp:.0%}", f"{m['tau_OA']:.3f}",
                          f"{m['top1_OA']:.2f} ±{se_top:.2f}", f"{tau_o:.3f}", f"{top_o:.2f}",
                          f"{m['seconds']:.3f}")
            summary[(n, s)] = m
        table.add_section()
    console.print(table)
    console.print("tau: Kendall tau (scipy.stats.kendalltau) of the ranking against the true order; top-1: "
                  "share of trials whose first place is the true best (± one standard error).")
    if 32 in sizes:
        o, r = summary[(32, "adaptive")], summary[(32, "round_robin")]
        print(f"n=32 ours_comparisons={o['comparisons']:.0f} roundrobin_comparisons={r['comparisons']:.0f} "
              f"ours_top1={o['top1_OA']:.3f} roundrobin_top1={r['top1_OA']:.3f} "
              f"ours_tau={o['tau_OA']:.3f} roundrobin_tau={r['tau_OA']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
