"""Weigh BRISQUE (the LIVE-trained model of the `brisque` PyPI package) as one more VQ term of the weight-free judge.

Offline: every clip of the content-diverse suite (vrthinker_eval.scenes, its fixed split) and, with --real, of
the real-footage suite (vrthinker_eval.real_footage) is measured once by the current dqa measures (raw measures
for dqa.measures.evidence) and scored by BRISQUE on `--brisque-frames` frames spread over the clip (median);
both are cached per clip in a JSON file (--cache). Each clean/damaged pair is then judged as
scripts/bench_metrics.py does (right on the damaged dimension and on OA; a tie is wrong), without and with a
BRISQUE term added to VQ (and so to OA):

    term = weight * excess(log((max(b2, 0) + c) / (max(b1, 0) + c)), floor)      (+ favours video 1)

where b is BRISQUE (more is worse), excess() is evidence.excess (the part beyond the floor, capped at CAP), and
the floor is the largest |log-ratio| between x264 CRF 17, 20 and 23 re-encodes of the calibration families (and,
with --real, the real calibration clips' re-encodes in CACHE/noise written by bench_metrics.py --noise --real),
plus 0.02, as bench_metrics.py --noise does. The constant c, the weight and the mode ("add": always;
"tiebreak": only when the VQ evidence is a tie) are chosen on calibration pairs only, and printed before any
held-out figure is computed.

    nice -n 15 python scripts/weigh_brisque.py --content-cache /tmp/content_cache --real /tmp/realcache

Not a dependency of the project: needs `pip install brisque libsvm-official scikit-image` (Apache-2.0).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_metrics import CODEC_KINDS  # noqa: E402,F401  (same suite definitions as the benchmark)
from dqa.measures import evidence  # noqa: E402
from dqa.measures.pairwise import TIE_MARGIN, MetricsJudge  # noqa: E402
from dqa.measures.video import MEASURES_VERSION  # noqa: E402

CONSTS = (1.0, 5.0, 10.0, 20.0, 40.0)
WEIGHTS = (0.5, 1.0)
MODES = ("add", "masked", "tiebreak")


class Brisque:
    """The package's BRISQUE with its shipped LIVE model; its features come back as 1-element arrays under
    NumPy 2, which its scaler cannot turn into floats, so they are flattened first."""

    def __init__(self):
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from brisque import BRISQUE

        class _Flat(BRISQUE):
            def scale_features(self, features):
                flat = np.array([np.asarray(v, dtype=float).ravel()[0] for v in features])
                return super().scale_features(flat)

        self.model = _Flat(url=False)

    def score(self, rgb: np.ndarray) -> float:
        return float(self.model.score(rgb))


class Cache:
    """Per clip (path, size, mtime): raw dqa measures (per MEASURES_VERSION) and BRISQUE per frame, in JSON."""

    def __init__(self, path: Path, n_frames: int, max_side: int):
        self.path, self.n_frames, self.max_side = path, n_frames, max_side
        self.data = json.loads(path.read_text()) if path.exists() else {}
        self.judge = MetricsJudge(cache_size=0)
        self._brisque = None
        self.dirty = 0

    def _key(self, p) -> str:
        st = Path(p).stat()
        return f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def get(self, p) -> dict:
        k = self._key(p)
        e = self.data.setdefault(k, {})
        mv = f"raw_v{MEASURES_VERSION}"
        if mv not in e:
            t = time.perf_counter()
            e[mv] = {n: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                     for n, v in self.judge.measure(p).measures.items()}
            e[f"measure_s_v{MEASURES_VERSION}"] = time.perf_counter() - t
            self.dirty += 1
        bk = f"brisque_{self.n_frames}_{self.max_side}"
        if bk not in e:
            from vrthinker.media.decode import read_frames

            if self._brisque is None:
                self._brisque = Brisque()
            frames, _ = read_frames(str(p), max_frames=self.n_frames, max_side=self.max_side)
            scores, secs = [], []
            for f in frames:
                t = time.perf_counter()
                scores.append(self._brisque.score(f))
                secs.append(time.perf_counter() - t)
            e[bk] = {"scores": scores, "seconds": secs, "shape": list(frames.shape[1:3])}
            self.dirty += 1
        if self.dirty >= 20:
            self.save()
        return {"raw": {n: (math.nan if v is None else v) for n, v in e[mv].items()},
                "brisque": _median(e[bk]["scores"]), "brisque_s": e[bk]["seconds"],
                "measure_s": e.get(f"measure_s_v{MEASURES_VERSION}")}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)
        self.dirty = 0


def _median(scores) -> float:
    """Median of the frames' scores that are numbers (the package gives NaN on a frame with no texture on one
    side of its fits, e.g. a flat frame); NaN when none is."""
    ok = [s for s in scores if s is not None and math.isfinite(s)]
    return statistics.median(ok) if ok else math.nan


def brisque_ratio(b1: float, b2: float, c: float) -> float:
    """Signed log-ratio of BRISQUE (positive: video 1 better, i.e. lower BRISQUE); NaN when either is missing."""
    if math.isnan(b1) or math.isnan(b2):
        return math.nan
    return math.log((max(b2, 0.0) + c) / (max(b1, 0.0) + c))


_EVIDENCE: dict = {}


def labels(m1: dict, m2: dict, cfg: dict | None, floor: float | None, key=None) -> tuple[int, int, int]:
    """(VQ, MQ, OA) labels as the MetricsJudge gives them, with the BRISQUE term added when `cfg` is given.
    Modes: "add" always adds it; "masked" drops it when it favours a video that noise_sigma counts as worse
    (visible noise, as evidence.EXPLAINS_ABOVE: added noise is what BRISQUE takes for natural texture on
    smooth content); "tiebreak" adds it only when the VQ evidence is a tie."""
    if key is None or key not in _EVIDENCE:
        ev = evidence.compare(m1["raw"], m2["raw"])
        if key is not None:
            _EVIDENCE[key] = ev
    else:
        ev = _EVIDENCE[key]
    vq, mq = ev.vq, ev.mq
    if cfg is not None:
        t = cfg["weight"] * evidence.excess(brisque_ratio(m1["brisque"], m2["brisque"], cfg["c"]), floor)
        if cfg["mode"] == "masked" and t:
            favoured, noise = (m1, -1) if t > 0 else (m2, +1)
            visible = favoured["raw"].get("noise_sigma", math.nan) >= evidence.EXPLAINS_ABOVE["noise_sigma"]
            if visible and ev.counted["noise_sigma"] * noise > 0:
                t = 0.0
        if cfg["mode"] != "tiebreak" or abs(vq) <= TIE_MARGIN:
            vq += t
    return (evidence.label(vq, TIE_MARGIN), evidence.label(mq, TIE_MARGIN), evidence.label(vq + mq, TIE_MARGIN))


def score_cases(cases, cache: Cache, cfg, floor):
    """cases: (group keys, kind, dimension, clean, damaged); returns group -> [right judgements, total] and
    kind -> [right, total] (two judgements per pair: the damaged dimension and OA)."""
    groups, kinds = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    for keys, kind, dim, cp, bp in cases:
        vq, mq, oa = labels(cache.get(cp), cache.get(bp), cfg, floor, key=(str(cp), str(bp)))
        right = ((vq if dim == "VQ" else mq) == 1) + (oa == 1)
        for k in keys:
            groups[k][0] += right
            groups[k][1] += 2
        kinds[kind][0] += right
        kinds[kind][1] += 2
    return groups, kinds


def content_cases(root: Path, frames: int):
    from vrthinker_eval import scenes

    pairs, again = scenes.build_suite(root, width=480, height=272, frames=frames)
    cases = [((scenes.split_of(fam, kind),), kind, scenes.DIMENSION[kind], cp, bp) for fam, _s, kind, cp, bp in pairs]
    reencodes = [(fam, paths) for fam, _s, paths in again if fam in scenes.CAL_FAMILIES]
    return cases, reencodes


def real_cases(cache_dir: Path, frames: int, side: int, out: Path):
    """The real-footage suite exactly as bench_metrics.run_real builds it (same seeds), written once under `out`."""
    from vrthinker_eval import real_footage as rf

    clips = rf.fetch(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases, n = [], 0
    for c in (c for c in rf.BASE_CLIPS if c in clips):
        memo = {}

        def clean(c=c, memo=memo):
            if "f" not in memo:
                memo["f"] = rf.read_clip(clips[c], frames, side)
            return memo["f"]
        cp = out / f"{c}_clean.mp4"
        if not cp.exists():
            rf.write_clean(clean(), cp)
        for fault in rf.FAULTS:
            for sname, strength in rf.STRENGTHS.items():
                bp = out / f"{c}_{fault}_{sname}.mp4"
                if not bp.exists():
                    rf.write_clean(rf.apply_fault(clean(), fault, strength, seed=n), bp)
                n += 1
                seen = (c in rf.CAL_CLIPS, fault in rf.CAL_FAULTS, sname == "cal")
                split = "calibration" if all(seen) else ("held-out clip+kind" if not seen[0] and not seen[1]
                                                         else "held-out (some)")
                cases.append(((split,) + (("held-out",) if split != "calibration" else ()), fault,
                              rf.FAULTS[fault][1], cp, bp))
        for fault in rf.EXTRA_FAULTS:
            bp = out / f"{c}_{fault}.mp4"
            if not bp.exists():
                rf.write_clean(rf.apply_fault(clean(), fault, 1.0), bp)
            n += 1
            cases.append((("extra",), fault, rf.EXTRA_FAULTS[fault][1], cp, bp))
    noise = sorted((cache_dir / "noise").glob("*_*.mp4"))
    reencodes = defaultdict(list)
    for p in noise:
        clip, crf = p.stem.rsplit("_", 1)
        if clip in rf.CAL_CLIPS and crf in ("17", "20", "23"):
            reencodes[clip].append(p)
    return cases, list(reencodes.items())


def pct(g) -> str:
    return f"{100 * g[0] / max(1, g[1]):5.1f}% ({g[1] // 2} pairs)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--content-cache", type=Path, default=Path(tempfile.gettempdir()) / "bench_metrics_content")
    ap.add_argument("--real", type=Path, metavar="CACHE", help="also the real-footage suite (clips cached here)")
    ap.add_argument("--real-out", type=Path, default=Path(tempfile.gettempdir()) / "weigh_brisque" / "real")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "weigh_brisque" / "cache.json")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--brisque-frames", type=int, default=4)
    ap.add_argument("--brisque-side", type=int, default=480)
    args = ap.parse_args(argv)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cache = Cache(args.cache, args.brisque_frames, args.brisque_side)
    t0 = time.perf_counter()

    suites = {"content": content_cases(args.content_cache, args.frames)}
    if args.real:
        suites["real"] = real_cases(args.real, args.frames, 480, args.real_out)
    for name, (cases, again) in suites.items():
        paths = sorted({str(p) for c in cases for p in c[3:]} | {str(p) for _f, ps in again for p in ps})
        print(f"{name}: {len(cases)} pairs, {len(paths)} clips; measuring (cached in {args.cache})", flush=True)
        for p in paths:
            cache.get(p)
        cache.save()

    # 1. calibration only: the re-encoding floor for each c, then c / weight / mode by calibration accuracy
    floors = {}
    for c in CONSTS:
        worst = (0.0, "-")
        for _cases, again in suites.values():
            for fam, ps in again:
                for a, b in itertools.combinations(ps, 2):
                    d = abs(brisque_ratio(cache.get(a)["brisque"], cache.get(b)["brisque"], c))
                    if not math.isnan(d):
                        worst = max(worst, (d, fam))
        floors[c] = (round(worst[0] + 0.02, 3), worst[1])
    print("BRISQUE re-encoding floor per c (max |log-ratio| over calibration re-encodes + 0.02): "
          + ", ".join(f"c={c:g}: {f:.3f} ({fam})" for c, (f, fam) in floors.items()))

    def cal_right(cfg):
        tot = [0, 0]
        for cases, _a in suites.values():
            g, _ = score_cases(cases, cache, cfg, floors[cfg["c"]][0] if cfg else None)
            for k in ("calibration",):
                tot[0] += g[k][0]
                tot[1] += g[k][1]
        return tot

    base_cal = cal_right(None)
    grid = [dict(c=c, weight=w, mode=m) for m in MODES for c in CONSTS for w in WEIGHTS]
    scored = [(cal_right(cfg), cfg) for cfg in grid]
    print(f"calibration right (all suites), without BRISQUE: {base_cal[0]}/{base_cal[1]}")
    for (r, n), cfg in scored:
        print(f"  {cfg['mode']:8s} c={cfg['c']:<4g} weight={cfg['weight']:<3g} "
              f"floor={floors[cfg['c']][0]:.3f}: {r}/{n}")
    # the best on calibration; ties go to the smaller change (tiebreak before add, smaller weight, larger c)
    best_r = max(r for (r, _n), _c in scored)
    chosen = [cfg for (r, _n), cfg in scored if r == best_r]
    best = sorted(chosen, key=lambda cfg: (-MODES.index(cfg["mode"]), cfg["weight"], -cfg["c"]))[0]
    floor = floors[best["c"]][0]
    print(f"chosen on calibration: mode={best['mode']} c={best['c']:g} weight={best['weight']:g} floor={floor:.3f}"
          f" ({best_r}/{base_cal[1]} vs {base_cal[0]}/{base_cal[1]} without)")

    # 2. the figures: held-out first
    for name, (cases, _a) in suites.items():
        g0, k0 = score_cases(cases, cache, None, None)
        g1, k1 = score_cases(cases, cache, best, floor)
        keys = [k for k in g0 if k.startswith("held")] + [k for k in g0 if not k.startswith("held")]
        print(f"[{name}] right on the damaged dimension and on OA: without BRISQUE -> with BRISQUE")
        for k in keys:
            print(f"  {k:20s} {pct(g0[k])} -> {pct(g1[k])}")
        print("  per kind (changes only): " + (", ".join(
            f"{k} {100 * k0[k][0] / k0[k][1]:.0f}->{100 * k1[k][0] / k1[k][1]:.0f}%" for k in k0
            if k0[k][0] != k1[k][0]) or "none"))

    # 3. cost
    per_frame = [s for e in cache.data.values() for s in e.get(f"brisque_{args.brisque_frames}_{args.brisque_side}",
                                                               {}).get("seconds", [])]
    shapes = {tuple(e[k]["shape"]) for e in cache.data.values() for k in e if k.startswith("brisque_")}
    meas = [e[f"measure_s_v{MEASURES_VERSION}"] for e in cache.data.values() if f"measure_s_v{MEASURES_VERSION}" in e]
    print(f"BRISQUE seconds per frame (frame sizes {sorted(shapes)}): median {statistics.median(per_frame):.3f}, "
          f"per video at {args.brisque_frames} frames {args.brisque_frames * statistics.median(per_frame):.3f}; "
          f"dqa measures per video (when first measured here): median {statistics.median(meas):.3f}")
    bk = f"brisque_{args.brisque_frames}_{args.brisque_side}"
    scores = [e[bk]["scores"] for e in cache.data.values() if bk in e]
    print(f"BRISQUE NaN frames: {sum(not math.isfinite(x) for sc in scores for x in sc)} of "
          f"{sum(len(sc) for sc in scores)}; clips with no number: {sum(math.isnan(_median(sc)) for sc in scores)}")
    print(f"wall seconds: {time.perf_counter() - t0:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
