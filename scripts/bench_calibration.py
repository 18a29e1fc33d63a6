"""Benchmark the calibration report on simulated judges whose calibration is known, in one run.

Each simulated judge states a distribution p over (video 1, video 2, tie) per pair (Dirichlet(0.6, 0.6, 0.3)),
and the human label is drawn from the *true* distribution q = softmax(log p / T): T = 1 is a calibrated judge,
T < 1 an under-confident one (the truth is sharper than it says), T > 1 an over-confident one. For every judge
we know the true accuracy of its top label in each reliability bin (the mean of q at the top label), so the
measured reliability table, ECE and Brier score (vrthinker_eval.calibration, what `judge eval` prints) are
printed beside the known figures:

    python scripts/bench_calibration.py [--n 20000] [--seed 0]

Last line: `calibrated_ece=A overconfident_ece=B underconfident_ece=C max_bin_error=D` (D: the largest gap,
over the judges and bins with at least 200 rows, between measured and known accuracy).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

JUDGES = (("calibrated", 1.0), ("overconfident", 2.0), ("underconfident", 0.5))


def simulate(n: int, temperature: float, seed: int):
    """(stated p [n, 3], human labels [n], true q [n, 3]) in the order "1", "2", "0"."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.6, 0.6, 0.3], size=n)
    q = np.exp(np.log(np.clip(p, 1e-12, None)) / temperature)
    q /= q.sum(axis=1, keepdims=True)
    u = rng.random(n)[:, None]
    y = np.array((1, 2, 0))[(u > np.cumsum(q, axis=1)).sum(axis=1)]
    return p, y, q


def known(p: np.ndarray, q: np.ndarray, bins: int) -> tuple[float, float, list]:
    """The true ECE, Brier (expected over the label draw) and per-bin accuracy, from q itself."""
    top = p.max(axis=1)
    true_acc = q[np.arange(len(p)), p.argmax(axis=1)]  # P(the top label is right), exactly
    which = np.clip(np.floor(top * bins + 1e-9).astype(int), 0, bins - 1)
    ece, per_bin = 0.0, []
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(true_acc[m].mean() - top[m].mean())
        per_bin.append(float(true_acc[m].mean()) if m.any() else None)
    brier = float(np.mean(np.sum(p ** 2, axis=1) - 2 * np.sum(p * q, axis=1) + 1))
    return float(ece), brier, per_bin


def main(argv: list[str] | None = None) -> int:
    from vrthinker_eval.calibration import BINS, calibrate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="pairs per simulated judge")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary, worst = {}, 0.0
    for name, temp in JUDGES:
        p, y, q = simulate(a.n, temp, a.seed)
        c = calibrate(p, y)
        ece, brier, per_bin = known(p, q, BINS)
        summary[name] = c.ece
        print(f"{name} judge (T={temp}), {a.n} pairs: ECE measured {c.ece:.4f} known {ece:.4f}; "
              f"Brier measured {c.brier:.4f} known {brier:.4f}")
        print(f"  {'bin':>11} {'rows':>6} {'said':>6} {'right (measured)':>17} {'right (known)':>14}")
        for b, k in zip(c.reliability, per_bin):
            if not b.n:
                continue
            print(f"  [{b.low:.1f}, {b.high:.1f}) {b.n:>6} {b.confidence:>6.3f} {b.accuracy:>17.3f} {k:>14.3f}")
            if b.n >= 200:
                worst = max(worst, abs(b.accuracy - k))
        cov = ", ".join(f"{cv:.0%}: {acc:.3f}" for cv, _, acc in c.coverage)
        print(f"  accuracy at coverage (surest first): {cov}")
        print(f"  tie sweep: best 3-class accuracy {c.tie_accuracy:.3f} at top probability <= {c.tie_threshold:.3f}")
    print(f"({time.perf_counter() - t0:.1f}s)")
    print(f"calibrated_ece={summary['calibrated']:.4f} overconfident_ece={summary['overconfident']:.4f} "
          f"underconfident_ece={summary['underconfident']:.4f} max_bin_error={worst:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
