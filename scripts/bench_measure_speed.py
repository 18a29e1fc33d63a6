"""Seconds per video of the weight-free measures (dqa.measures.video.measure_video), cold, against a baseline.

Every run is a fresh process (cold: the first video pays the lazy imports and the NIQE model load) that
measures each clip once; runs alternate between this code and, with `--baseline REV`, dqa/measures as it was
at git revision REV (loaded the way scripts/bench_metrics.py loads it), `--repeat` times. Per clip the fastest
run counts (other work on the machine only ever adds time); wall and CPU seconds (all threads) are printed
side by side with the ratio, and every raw measure of both versions is compared: the run fails (exit 1) when
one differs by more than `--tolerance` (relative).

    python scripts/bench_measure_speed.py --baseline e3db49a [--repeat 3] [--stages]
    python scripts/bench_measure_speed.py --clips a.mp4 b.mp4 --baseline HEAD

Without --clips it builds the default set in --cache: six 48-frame 480x272 scenes (vrthinker_eval.scenes,
x264 CRF 20, one of them at CRF 45) and, when the real-footage clips are in --real (see
vrthinker_eval.real_footage.fetch), 48-frame copies of five of them with the long side at 480, as
`bench_metrics.py --real-side 480 --real-frames 48` prepares them. `--stages` adds a per-stage breakdown
(cProfile, so its seconds are inflated a little) of one warm pass.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES = (("shapes", 0), ("pan", 1), ("texture", 2), ("night", 3), ("grain", 4))
REAL = ("bikes", "Megamind", "cup", "vtest", "tree")
# stage name -> the function whose cumulative time it is (the same names in the baseline's modules)
STAGES = (("decode", "decode"), ("spatial", "spatial_measures"), ("native-grid (nr)", "picture_measures"),
          ("  of which NIQE", "niqe"), ("motion", "_window_motion"), ("  of which DIS flow", "calc"),
          ("echo", "echo"))


def build_clips(cache: Path, real: Path | None, frames: int = 48, side: int = 480) -> list[Path]:
    """The default clip set (cached: built once)."""
    sys.path.insert(0, str(ROOT))
    from vrthinker_eval import scenes

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for fam, seed in SCENES:
        p = cache / f"{fam}.mp4"
        if not p.exists():
            scenes.write(scenes.render(fam, side, 272, frames, seed), p)
        out.append(p)
    p = cache / "gradient_crf45.mp4"
    if not p.exists():
        scenes.write(scenes.damage(scenes.render("gradient", side, 272, frames, 5), "x264_crf45"), p)
    out.append(p)
    if real is not None and (real / "clips").is_dir():
        from vrthinker_eval import real_footage as rf

        have = {q.stem: q for q in (real / "clips").iterdir()}
        for name in REAL:
            p = cache / f"{name}.mp4"
            if name in have and not p.exists():
                rf.write_clean(rf.read_clip(have[name], frames, side), p)
            if p.exists():
                out.append(p)
    return out


def worker(rev: str | None, clips: list[str], stages: bool) -> dict:
    """Runs in the fresh process: measure every clip once, cold; with `stages`, a profiled warm pass."""
    sys.path.insert(0, str(ROOT))
    if rev:
        sys.path.insert(0, str(ROOT / "scripts"))
        from bench_metrics import _baseline_module

        mod = _baseline_module(rev)
    else:
        from dqa.measures import video as mod
    res = {"wall": [], "cpu": [], "raw": []}
    for c in clips:
        w, p = time.perf_counter(), time.process_time()
        m = mod.measure_video(c)
        res["wall"].append(time.perf_counter() - w)
        res["cpu"].append(time.process_time() - p)
        res["raw"].append({k: (None if isinstance(v, float) and math.isnan(v) else float(v))
                           for k, v in m.measures.items()})
    if stages:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        for c in clips:
            mod.measure_video(c)
        prof.disable()
        total = time.perf_counter() - t
        cum: dict[str, float] = {}
        for (_, _, name), row in pstats.Stats(prof).stats.items():
            if name.startswith("<method '"):  # a C method, e.g. "<method 'calc' of 'cv2.DenseOpticalFlow' objects>"
                name = name.split("'")[1]
            cum[name] = cum.get(name, 0.0) + row[3]
        res["stages"] = {label: cum.get(fn, 0.0) / len(clips) for label, fn in STAGES}
        res["stages"]["total (profiled)"] = total / len(clips)
    return res


def spawn(rev: str | None, clips: list[Path], stages: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *(["--rev", rev] if rev else []),
           *(["--stages"] if stages else []), "--clips", *map(str, clips)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"bench_measure_speed: worker ({rev or 'current'}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def max_rel_diff(a: list[dict], b: list[dict]) -> tuple[float, str]:
    """Largest relative difference of any raw measure over the clips, and where."""
    worst, where = 0.0, ""
    for i, (x, y) in enumerate(zip(a, b)):
        for k in sorted(set(x) | set(y)):
            u, v = x.get(k, "missing"), y.get(k, "missing")
            if u is None or v is None or isinstance(u, str) or isinstance(v, str):
                d = 0.0 if u == v else math.inf
            else:
                d = abs(u - v) / max(abs(u), abs(v), 1e-12)
            if d > worst:
                worst, where = d, f"clip {i} {k}: {u} vs {v}"
    return worst, where


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bench_measure_speed"))
    # the real clips' cache the tests read too (bench_metrics.py --real CACHE fills it)
    ap.add_argument("--real", type=Path,
                    default=Path(os.environ.get("DQA_REAL_CACHE", Path.home() / ".cache" / "dqa-real")))
    ap.add_argument("--baseline", metavar="REV")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rev", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.rev, [str(c) for c in args.clips], args.stages)))
        return 0
    clips = args.clips or build_clips(args.cache, args.real)
    versions = [("current", None)] + ([(f"baseline {args.baseline}", args.baseline)] if args.baseline else [])
    runs: dict[str, list[dict]] = {label: [] for label, _ in versions}
    for r in range(max(1, args.repeat)):
        for label, rev in (versions if r % 2 == 0 else versions[::-1]):  # alternate who goes first
            runs[label].append(spawn(rev, clips, args.stages and r == 0))
    print(f"{len(clips)} clips, each measured once per fresh process, {args.repeat} processes per version "
          f"(fastest per clip), pid {os.getpid()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    summary = {}
    for label, _ in versions:
        wall = [min(r["wall"][i] for r in runs[label]) for i in range(len(clips))]
        cpu = [min(r["cpu"][i] for r in runs[label]) for i in range(len(clips))]
        summary[label] = (statistics.mean(wall), statistics.mean(wall[1:]) if len(wall) > 1 else wall[0],
                          statistics.mean(cpu), max(wall))
    print(f"{'version':<22} {'s/video':>8} {'after 1st':>9} {'CPU s/video':>11} {'slowest':>8}")
    for label, (w, w1, c, mx) in summary.items():
        print(f"{label:<22} {w:8.3f} {w1:9.3f} {c:11.3f} {mx:8.3f}")
    if args.stages:
        print("stages, seconds per video (one profiled warm pass):")
        labels = list(runs[versions[0][0]][0]["stages"])
        print(f"  {'stage':<22}" + "".join(f" {lab[:16]:>16}" for lab, _ in versions))
        for s in labels:
            print(f"  {s:<22}" + "".join(f" {runs[lab][0]['stages'][s]:16.3f}" for lab, _ in versions))
    print("per clip (s, fastest):", ", ".join(
        f"{Path(c).stem} " + "/".join(f"{min(r['wall'][i] for r in runs[lab]):.2f}" for lab, _ in versions)
        for i, c in enumerate(clips)))
    ok = True
    if args.baseline:
        cur, base = summary["current"], summary[versions[1][0]]
        print(f"speed-up: x{base[0] / cur[0]:.2f} wall, x{base[2] / cur[2]:.2f} CPU")
        worst, where = max_rel_diff(runs["current"][0]["raw"], runs[versions[1][0]][0]["raw"])
        ok = worst <= args.tolerance
        print(f"raw measures: largest relative difference {worst:.3g} ({where or 'all equal'}): "
              f"{'EQUAL' if ok else 'DIFFERENT'} within {args.tolerance:g}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
