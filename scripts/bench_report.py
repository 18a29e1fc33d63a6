"""Benchmark `judge report`'s memory: the streamed file against the same page built as one string, in one run.

N stored pairs (both orders, judged without turns as the weight-free judge does) over three generated 16:9
clips; the report is written by `write_report` (streaming), then the same pairs are rendered as one string by
`render` (the baseline: how the report was built before). Peak Python memory by tracemalloc for each:

    python scripts/bench_report.py [--pairs 2000] [--thumb 64]

Last line: `pairs=N file_mb=F streamed_peak_mb=A string_peak_mb=B ratio=B/A`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def fill(store, clips: list[str], n: int) -> None:
    from vrthinker.store import Item, Judgment

    labels = {"TA": None, "VQ": 1, "MQ": 2, "OA": 1}
    flipped = {"TA": None, "VQ": 2, "MQ": 1, "OA": 2}
    for k in range(n):
        a, b = clips[k % len(clips)], clips[(k + 1) % len(clips)]
        js = [Judgment(key=f"{k}-{t}", videoA=x, videoB=y, hashA="h" + x, hashB="h" + y, prompt="shapes drift",
                       model_id="weight-free-metrics", revision="", adapter="", protocol="metrics/1",
                       backend="metrics", labels=lab, reason="needs_vlm", detail="", reasoning="evidence " * 30,
                       verdict={"turns": []}, created=1.0)
              for t, (x, y), lab in (("f", (a, b), labels), ("r", (b, a), flipped))]
        store.record(Item(job="bench", item_id=str(k), position=k, video1=a, video2=b, prompt="shapes drift",
                          orders="both", status="done", key_forward=f"{k}-f", key_reverse=f"{k}-r"), js)


def peak(fn):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1], time.perf_counter() - t
    finally:
        tracemalloc.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--thumb", type=int, default=64)
    a = p.parse_args()
    from vrthinker.batch import judged_items
    from vrthinker.report import render, write_report
    from vrthinker.store import Store
    from vrthinker_eval.synth import render_scene, write_video

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        clips = [str(write_video(d / f"c{k}.mp4", render_scene(kind, 160, 90, 10, seed=k), fps=8))
                 for k, kind in enumerate(("shapes", "pan", "orbit"))]
        with Store(d / "j.sqlite") as store:
            fill(store, clips, a.pairs)
        with Store(d / "j.sqlite", readonly=True) as store:
            stats, streamed, t_stream = peak(lambda: write_report(store, str(d / "r.html"), thumb=a.thumb))
            (page, _), whole, t_whole = peak(lambda: render(judged_items(store, include_bad=True),
                                                            store.rankings(), thumb=a.thumb))
        size = os.path.getsize(d / "r.html")
    mb = 1e6
    print(f"{a.pairs} pairs, thumbnails {a.thumb} px: file {size / mb:.1f} MB ({stats.images} thumbnails)")
    print(f"streamed (write_report): peak {streamed / mb:.1f} MB in {t_stream:.1f} s")
    print(f"one string (render, the baseline): peak {whole / mb:.1f} MB in {t_whole:.1f} s")
    print(f"pairs={a.pairs} file_mb={size / mb:.1f} streamed_peak_mb={streamed / mb:.1f} "
          f"string_peak_mb={whole / mb:.1f} ratio={whole / max(streamed, 1):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
