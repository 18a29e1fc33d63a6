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
    a = p.parse_args(argv)
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
