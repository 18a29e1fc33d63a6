"""Benchmark the weight-free MetricsJudge on synthetic defects: does the clean clip win?

For each scene/seed, a clean clip is rendered (eval.synth), damaged by every defect (eval.defects) at
every strength, all written as H.264, and each clean/damaged pair is judged in both orders. A case is right
when the clean clip wins on the damaged dimension (VQ or MQ) and, separately, on OA; a tie counts as wrong.

    python scripts/bench_metrics.py [--combos shapes:0 pan:1 orbit:2 text:3] [--frames 48]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.defects import DEFECT_DIMENSION, DEFECTS, LEVELS, apply_defect  # noqa: E402
from eval.synth import render_scene, write_video  # noqa: E402
from dqa.pairwise import MetricsJudge  # noqa: E402

DEFAULT_COMBOS = ("shapes:0", "pan:1", "orbit:2", "text:3", "shapes:4", "pan:5")


def build_suite(root: Path, combos, width: int, height: int, frames: int):
    """Write clean and damaged clips; yield (combo, defect, level, clean_path, damaged_path)."""
    for combo in combos:
        kind, seed = combo.split(":")
        clean = render_scene(kind, width, height, frames, int(seed))
        clean_path = write_video(root / f"{kind}{seed}_clean.mp4", clean)
        for name in DEFECTS:
            for level in LEVELS:
                bad = apply_defect(clean, name, level, int(seed))
                bad_path = write_video(root / f"{kind}{seed}_{name}_{level}.mp4", bad)
                yield combo, name, level, clean_path, bad_path


def run(combos, width: int, height: int, frames: int, tie_margin: float) -> dict:
    """Judge every pair both ways; return per-(defect, level) hit counts and the measuring times."""
    judge = MetricsJudge(tie_margin=tie_margin, cache_size=4096)
    hits = defaultdict(lambda: [0, 0, 0])  # (defect, level) -> [damaged-dim right, OA right, cases]
    misses = []
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
        for combo, name, level, clean, bad in build_suite(Path(tmp), combos, width, height, frames):
            dim = DEFECT_DIMENSION[name]
            for order in ((clean, bad), (bad, clean)):
                v = judge.compare(*order, prompt=f"synthetic {combo}")
                want = 1 if order[0] == clean else 2
                ok_dim, ok_oa = v.labels[dim] == want, v.labels["OA"] == want
                h = hits[(name, level)]
                h[0] += ok_dim
                h[1] += ok_oa
                h[2] += 1
                if not (ok_dim and ok_oa):
                    misses.append(f"{combo} {name} {level} clean_as={want}: {dim}={v.labels[dim]} "
                                  f"OA={v.labels['OA']} ({v.reasoning})")
        seconds = [m.seconds for m in judge._cache.values()]
    return {"hits": hits, "misses": misses, "seconds": seconds}


def report(res: dict) -> str:
    """Print the per-defect table and return the summary line."""
    hits = res["hits"]
    print(f"{'defect':12s} {'dim':3s} " + " ".join(f"{lv:>15s}" for lv in LEVELS) + "   (dim% / OA%)")
    for name in DEFECTS:
        cells = []
        for lv in LEVELS:
            d, o, n = hits[(name, lv)]
            cells.append(f"{100 * d / n:6.1f} / {100 * o / n:5.1f}")
        print(f"{name:12s} {DEFECT_DIMENSION[name]:3s} " + " ".join(f"{c:>15s}" for c in cells))
    for lv in LEVELS:
        d = sum(hits[(n, lv)][0] for n in DEFECTS)
        o = sum(hits[(n, lv)][1] for n in DEFECTS)
        n = sum(hits[(n_, lv)][2] for n_ in DEFECTS)
        print(f"level {lv:6s}: damaged-dim {100 * d / n:.1f}%  OA {100 * o / n:.1f}%  ({n} cases)")
    if res["misses"]:
        print(f"misses ({len(res['misses'])}):")
        for m in res["misses"]:
            print("  " + m)
    d = sum(h[0] for h in hits.values())
    o = sum(h[1] for h in hits.values())
    n = sum(h[2] for h in hits.values())
    sec = sum(res["seconds"]) / max(1, len(res["seconds"]))
    print(f"videos measured: {len(res['seconds'])}, cases: {n}")
    return (f"metrics_accuracy={(d + o) / (2 * n):.4f} damaged_dim_accuracy={d / n:.4f} "
            f"oa_accuracy={o / n:.4f} seconds_per_video={sec:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--combos", nargs="+", default=list(DEFAULT_COMBOS), help="scene:seed pairs")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--tie-margin", type=float, default=MetricsJudge().tie_margin)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    line = report(run(args.combos, args.width, args.height, args.frames, args.tie_margin))
    print(f"wall seconds: {time.perf_counter() - t0:.1f}")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
