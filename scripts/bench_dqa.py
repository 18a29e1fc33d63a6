"""Benchmark `dqa score`: K model loads for N videos (the scheduler) against the white paper's per-video
orchestrator (load, score, unload every worker for every video: N x K loads), plus seconds per video per
component. Tiny random models (scripts/make_tiny_dqa_models.py) stand in for the real ones on a CPU, so
load times are small here; with 7B/ViT-L weights each load costs seconds to minutes, and the ratio grows.

    python scripts/bench_dqa.py [--videos 6] [--frames 36] [--no-vlm]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from dqa.score.scheduler import Item, Scheduler  # noqa: E402
from dqa.score.scoring import build_workers, resolve_components  # noqa: E402
from vrthinker_eval.defects import apply_defect  # noqa: E402
from vrthinker_eval.synth import SCENES, render_scene, write_video  # noqa: E402
from make_tiny_dqa_models import build_all  # noqa: E402
from vrthinker.cli import quiet_libraries  # noqa: E402
from vrthinker.media.decode import VideoCache  # noqa: E402

PROMPTS = ("a red ball to the left of a blue box", "a boat above the water", "a cat next to a dog",
           "a car in front of a house", "two birds and a tree", "a robot below a lamp")
DEFECTS = (None, "blur", "flicker", "stutter", "shake", "noise")


def make_videos(root: Path, n: int, frames: int) -> list[Item]:
    """Varied clips: every scene kind, a different defect each, two sizes."""
    items = []
    for i in range(n):
        kind = SCENES[i % len(SCENES)]
        w, h = (320, 192) if i % 2 == 0 else (256, 256)
        clip = render_scene(kind, w, h, frames, seed=20 + i)
        defect = DEFECTS[i % len(DEFECTS)]
        if defect:
            clip = apply_defect(clip, defect, "medium", seed=i)
        path = write_video(root / f"v{i}_{kind}_{defect}.mp4", clip, fps=12)
        items.append(Item(str(path), PROMPTS[i % len(PROMPTS)]))
    return items


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--frames", type=int, default=36)
    p.add_argument("--no-vlm", action="store_true")
    a = p.parse_args()
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="bench_dqa_") as tmp:
        root = Path(tmp)
        models = build_all(root / "models", vlm=not a.no_vlm)
        items = make_videos(root / "clips", a.videos, a.frames)
        comps = [c for c in resolve_components(["all"]) if c not in ("imaging_quality", "preference")
                 and not (a.no_vlm and c in ("visionreward", "semantic"))]

        def workers():
            return build_workers(comps, device="cpu", models=models)

        # ours: each worker loads once and sees every video
        cache = VideoCache()
        t0 = time.perf_counter()
        ours = Scheduler(workers(), wanted=comps, cache=cache).run(items)
        ours_s = time.perf_counter() - t0
        # baseline: the white paper's orchestrator, per video: load worker, score, unload, next worker
        base_cache = VideoCache()
        t0 = time.perf_counter()
        base_loads = 0
        for it in items:
            r = Scheduler(workers(), wanted=comps, cache=base_cache).run([it])
            base_loads += r.loads
        base_s = time.perf_counter() - t0

    print(f"{len(items)} videos x {len(ours.phases)} workers ({sum(p.models > 0 for p in ours.phases)} with models), "
          f"components: {', '.join(comps)}")
    print(f"{'worker':<18}{'load s':>8}{'s/video':>9}{'peak GB RSS':>13}{'freed':>7}")
    for ph in ours.phases:
        print(f"{ph.worker:<18}{ph.load_s:>8.2f}{ph.score_s / max(1, ph.videos):>9.2f}"
              f"{(ph.peak_gb or 0):>13.2f}{str(ph.freed):>7}")
    bad = {c: f.reason for r in ours.results.values() for c, f in r.items() if not hasattr(f, "unit")}
    if bad:
        print("missing:", bad)
    print(f"model_loads ours={ours.loads} per_video_baseline={base_loads} ratio={ours.loads / max(1, base_loads):.3f}")
    print(f"seconds ours={ours_s:.1f} per_video_baseline={base_s:.1f} ratio={ours_s / base_s:.3f}")
    print(f"decodes ours={cache.decodes} (videos={len(items)})")


if __name__ == "__main__":
    main()
