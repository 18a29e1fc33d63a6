"""Write synthetic H.264 test clips (vrthinker_eval.synth), or the two small bundled example clips.

    python scripts/make_clips.py OUTDIR --scene pan --seconds 5 --fps 24 --gop 250
    python scripts/make_clips.py OUTDIR --scene all          # one clip per scene kind
    python scripts/make_clips.py examples --examples         # examples/shapes.mp4, examples/planet.mp4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# the bundled examples: two different scenes, small enough to commit (each well under 300 KB)
EXAMPLES = (
    ("shapes.mp4", dict(kind="shapes", seed=7)),   # colourful shapes drift over a gridded, textured backdrop
    ("planet.mp4", dict(kind="orbit", seed=11)),   # moons orbit a textured planet against a starry sunset sky
)
EXAMPLE_SIZE = dict(width=320, height=192, seconds=3.0, fps=12, gop=250, crf=26)


def main(argv: list[str] | None = None) -> int:
    from vrthinker_eval import synth

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--gop", type=int, default=250, help="keyframe interval (x264 keyint)")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--scene", default="shapes", choices=[*synth.SCENES, "all"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="clip", help="file name stem; the scene is appended with --scene all")
    p.add_argument("--examples", action="store_true",
                   help="write the bundled examples shapes.mp4 and planet.mp4 into OUTDIR instead")
    a = p.parse_args(argv)

    if a.examples:
        jobs = [(a.outdir / name, dict(EXAMPLE_SIZE, **spec)) for name, spec in EXAMPLES]
    else:
        kinds = synth.SCENES if a.scene == "all" else (a.scene,)
        jobs = [(a.outdir / (f"{a.name}_{k}.mp4" if a.scene == "all" else f"{a.name}.mp4"),
                 dict(kind=k, width=a.width, height=a.height, seconds=a.seconds, fps=a.fps, gop=a.gop,
                      crf=a.crf, seed=a.seed)) for k in kinds]
    if not synth.h264_available():
        print("note: PyAV has no libx264 encoder; writing MPEG-4 Part 2 instead", file=sys.stderr)
    for path, kw in jobs:
        synth.write_clip(path, **kw)
        print(f"{path}  {kw['kind']} {kw['width']}x{kw['height']} {kw['seconds']}s@{kw['fps']:g}fps  "
              f"{path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
