"""Benchmark frame access for one judged pair: the reference's open-and-seek per frame vs vrthinker.media.frame_grid.

Two generated 1280x720, 5 s, 24 fps, keyint-250 H.264 clips; a 6-turn conversation asks for the 4 initial
indices and then 5 tool calls of 12 distinct indices (64 indices per video, 128 images in all).
Last line: frame_access_speedup=<reference seconds / ours seconds>.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def conversation_indices(seed: int = 0) -> list[list[int]]:
    """[initial 4] + 5 tool calls of 12 distinct indices, none repeating the initial ones."""
    import numpy as np

    initial = [16, 48, 80, 112]
    rest = [i for i in range(128) if i not in initial]
    pick = np.random.default_rng(seed).permutation(rest)[:60].tolist()
    return [initial] + [pick[k:k + 12] for k in range(0, 60, 12)]


def run_reference(v1: str, v2: str, turns: list[list[int]]):
    import reference_infer as ref

    images = ref.initial_frames(v1, v2)
    for call in turns[1:]:
        images += ref.tool_frames(v1, v2, call)
    return images


def _in_reference_order(get1, get2, turns: list[list[int]]):
    """Images as the reference conversation holds them: v1 initial x4, v2 initial x4, then v1[i], v2[i]..."""
    images = [get1(i) for i in turns[0]] + [get2(i) for i in turns[0]]
    for call in turns[1:]:
        for i in call:
            images += [get1(i), get2(i)]
    return images


def run_ours(v1: str, v2: str, turns: list[list[int]]):
    from vrthinker.media.frame_grid import load_pair

    g1, g2 = load_pair(v1, v2)
    return _in_reference_order(g1.image, g2.image, turns)


def run_ours_serial(v1: str, v2: str, turns: list[list[int]]):
    from vrthinker.media.frame_grid import load_grid

    g1, g2 = load_grid(v1), load_grid(v2)
    return _in_reference_order(g1.image, g2.image, turns)


def _decord_grid(path: str, threads: int):
    import decord
    import numpy as np
    from PIL import Image

    from vrthinker.media.frame_grid import grid_to_real

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    total = len(vr)
    real = [grid_to_real(i, total) for i in range(128)]
    distinct = sorted(set(real))
    batch = vr.get_batch(distinct).asnumpy()
    resized = {r: np.asarray(Image.fromarray(batch[k]).resize((448, 448))) for k, r in enumerate(distinct)}
    return {i: resized[real[i]] for i in range(128)}


def run_decord(v1: str, v2: str, turns: list[list[int]], threads: int = 1):
    from PIL import Image

    with ThreadPoolExecutor(2) as pool:
        d1, d2 = pool.map(lambda p: _decord_grid(p, threads), (v1, v2))
    return _in_reference_order(lambda i: Image.fromarray(d1[i]), lambda i: Image.fromarray(d2[i]), turns)


def timed(fn, *args, repeat: int = 1, **kw):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> int:
    import cv2
    import numpy as np

    from vrthinker_eval import synth

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--gop", type=int, default=250)
    p.add_argument("--repeat", type=int, default=3, help="best of N for the fast paths")
    p.add_argument("--skip-reference", action="store_true")
    a = p.parse_args(argv)

    turns = conversation_indices()
    order = [i for call in turns for i in call]  # per-video order of the 64 requested indices
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        v1 = str(synth.write_clip(Path(tmp) / "v1.mp4", "shapes", a.width, a.height, a.seconds, a.fps,
                                  seed=1, gop=a.gop))
        v2 = str(synth.write_clip(Path(tmp) / "v2.mp4", "pan", a.width, a.height, a.seconds, a.fps,
                                  seed=2, gop=a.gop))
        print(f"clips: 2 x {a.width}x{a.height} {a.seconds:g}s@{a.fps:g}fps keyint={a.gop} "
              f"written in {time.perf_counter() - t:.1f}s; cv2 threads={cv2.getNumThreads()}")
        rows = []
        ours_t, ours = timed(run_ours, v1, v2, turns, repeat=a.repeat)
        rows.append(("ours: load_pair (2 threads) + 128 images", ours_t))
        t1, _ = timed(run_ours_serial, v1, v2, turns, repeat=a.repeat)
        rows.append(("ours: load_grid x2 serial + 128 images", t1))
        n_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        t1, _ = timed(run_ours, v1, v2, turns, repeat=a.repeat)
        cv2.setNumThreads(n_threads)
        rows.append(("ours: load_pair, cv2.setNumThreads(1)", t1))
        dec_t, dec = timed(run_decord, v1, v2, turns, repeat=a.repeat)
        rows.append(("decord get_batch (1 thr/video, 2 videos) + PIL", dec_t))
        t1, _ = timed(run_decord, v1, v2, turns, 0, repeat=a.repeat)
        rows.append(("decord get_batch (auto threads) + PIL", t1))

        diff = max(float(np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).mean())
                   for x, y in zip(ours, dec))
        ref_t = None
        if not a.skip_reference:
            ref_t, ref = timed(run_reference, v1, v2, turns)
            rows.insert(0, ("reference: open + seek per index (128 calls)", ref_t))
            same = sum(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(ours, ref))
            print(f"pixel-identical to the reference: {same}/{len(ref)} images")
        print(f"{len(order)} indices per video; decord vs ours: max over images of mean |diff| = "
              f"{diff:.4f} (/255)")
        width = max(len(r[0]) for r in rows)
        print(f"{'method'.ljust(width)}  seconds")
        for name, sec in rows:
            print(f"{name.ljust(width)}  {sec:7.3f}")
        if ref_t is not None:
            print(f"frame_access_speedup={ref_t / ours_t:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
