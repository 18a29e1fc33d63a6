"""Check dqa's VBench temporal/motion dimensions against the official VBench 0.1.5 code on synthetic clips.

The official wheel is downloaded (pip download --no-deps) or given. Its temporal_flickering.py,
motion_smoothness.py and dynamic_degree.py (and AMT's and RAFT's weight-free utils) are exec'd from the
wheel's text, with stub modules for what they import only to build models or spread work (vbench.utils,
vbench.distributed, omegaconf, easydict, imageio, AMT's builder, RAFT's network). Three comparisons:

- temporal_flickering, the real dimension (no model on either side). Both decode with OpenCV and do the
  same float32 arithmetic: expected bit for bit; tolerance 1e-9.
- motion_smoothness's protocol: VBench's MotionSmoothness with AMT-S replaced by our interpolation (driven by
  a made-up pixel-wise flow) against our score_motion with the same flow. Checks frame dropping, padding,
  uint8 truncation and the formula; not AMT-S itself. Tolerance 1e-6 (torch's vectorised maths differs in
  the last bit between tensor sizes, AMT pads to 16 and we to 8; observed <= 2e-8).
- dynamic_degree's protocol: VBench's DynamicDegree with RAFT replaced by OpenCV Farneback flow against ours
  with the same flow: the 0/1 verdicts must agree and the per-pair top-5% magnitudes within 1e-4 px (float32
  summation order; observed ~2e-6). Clips under 128 px are left out: we pad them further for RAFT.

    python scripts/check_vbench.py [--wheel vbench-0.1.5-py3-none-any.whl] [--quick]

Exit status: 0 all agree, 1 a difference over a tolerance, 2 the wheel could not be had.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VERSION = "0.1.5"
TOLERANCE = 1e-9
TOL_SMOOTH = 1e-6
TOL_MAG = 1e-4


def fetch_wheel(dest: Path, timeout: float = 120) -> Path | None:
    """Download the official wheel into `dest`; None when pip cannot (no network, no index)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--timeout", "10", "--retries", "1",
           f"vbench=={VERSION}", "-d", str(dest)]
    try:
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    except (subprocess.SubprocessError, OSError):
        return None
    found = sorted(Path(dest).glob(f"vbench-{VERSION}-*.whl"))
    return found[0] if found else None


def _package(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []
    return mod


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


class _Fake:
    def __init__(self, *a, **k):
        raise RuntimeError("stub: the check never builds a VBench model")


def official_modules(wheel: Path) -> dict[str, types.ModuleType]:
    """temporal_flickering, motion_smoothness and dynamic_degree from the wheel's text, plus the weight-free
    helpers they use (AMT's and RAFT's utils, also from the wheel). Imports they need only for models or
    bookkeeping are stubs, in sys.modules only while the files are exec'd."""
    z = zipfile.ZipFile(wheel)
    dist = _stub("vbench.distributed", get_world_size=lambda: 1, get_rank=lambda: 0,
                 **{n: (lambda x=None, *a, **k: x) for n in
                    ("all_gather", "barrier", "distribute_list_to_rank", "gather_list_of_dict")})
    stubs = {"vbench.utils": _stub("vbench.utils", load_dimension_info=lambda *a, **k: ([], {})),
             "vbench.distributed": dist,
             "omegaconf": _stub("omegaconf", OmegaConf=None),
             "easydict": _stub("easydict", EasyDict=dict),
             "imageio": _stub("imageio", imread=None, imwrite=None),
             "vbench.third_party.amt.utils.build_utils": _stub("build_utils", build_from_cfg=None),
             "vbench.third_party.RAFT.core.raft": _stub("raft", RAFT=_Fake)}
    packages = ("vbench", "vbench.third_party", "vbench.third_party.amt", "vbench.third_party.amt.utils",
                "vbench.third_party.RAFT", "vbench.third_party.RAFT.core", "vbench.third_party.RAFT.core.utils_core")
    files = [("vbench/third_party/amt/utils/utils.py", "vbench.third_party.amt.utils.utils"),
             ("vbench/third_party/RAFT/core/utils_core/utils.py", "vbench.third_party.RAFT.core.utils_core.utils"),
             ("vbench/temporal_flickering.py", "vbench.temporal_flickering"),
             ("vbench/motion_smoothness.py", "vbench.motion_smoothness"),
             ("vbench/dynamic_degree.py", "vbench.dynamic_degree")]
    names = list(stubs) + list(packages) + [m for _, m in files]
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update(stubs)
    sys.modules.update({p: _package(p) for p in packages})
    out = {}
    try:
        for member, name in files:
            mod = types.ModuleType(name)
            mod.__package__ = name.rpartition(".")[0]
            sys.modules[name] = mod
            exec(compile(z.read(member).decode(), f"{wheel.name}/{member}", "exec"), mod.__dict__)
            out[name.rpartition(".")[2]] = mod
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return out


def pixel_flow(src, dst):
    """A made-up flow that is a function of each pixel alone, (3, -2) x the mean brightness change: any flow
    tests the protocol, and a pixel-wise one is the same whatever the padding (AMT pads to 16, we to 8)."""
    import torch

    d = (dst - src).mean(dim=1, keepdim=True)
    return torch.cat([3.0 * d, -2.0 * d], dim=1)


def farneback_flow(src, dst):
    """Dense OpenCV Farneback flow src->dst on [N, 3, H, W] images in [0, 1] (a deterministic stand-in for
    RAFT: same padded inputs give the same flow on both sides)."""
    import cv2
    import numpy as np
    import torch

    def gray(x):
        rgb = (x.permute(1, 2, 0).cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    out = [cv2.calcOpticalFlowFarneback(gray(a), gray(b), None, 0.5, 3, 15, 3, 5, 1.2, 0) for a, b in zip(src, dst)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def clips(root: Path, quick: bool = False) -> list[tuple[str, Path]]:
    """Varied synthetic MP4s: scenes, sizes (one over the 512 px cap), flicker and noise strengths, a static
    clip and the 2-frame minimum."""
    import numpy as np

    from vrthinker_eval.defects import apply_defect
    from vrthinker_eval.synth import render_scene, write_video

    n = 8 if quick else 36
    shapes = render_scene("shapes", 320, 240, n, seed=1)
    specs = [("shapes 320x240 clean", shapes, 24),
             ("shapes flicker mild", apply_defect(shapes, "flicker", "mild", 1), 24),
             ("shapes flicker strong", apply_defect(shapes, "flicker", "strong", 1), 24),
             ("pan 640x360 (over cap)", render_scene("pan", 640, 360, n, seed=2), 30),
             ("orbit 160x96 noise", apply_defect(render_scene("orbit", 160, 96, n, seed=3), "noise", "medium", 3), 8),
             ("text 256x256 static", np.repeat(render_scene("text", 256, 256, 1, seed=4), n // 2, axis=0), 24),
             ("shapes 2 frames", shapes[:2], 24)]
    if not quick:
        specs += [("text 512x288 flicker medium",
                   apply_defect(render_scene("text", 512, 288, n, seed=5), "flicker", "medium", 5), 16),
                  ("orbit 720x480 stutter",
                   apply_defect(render_scene("orbit", 720, 480, n, seed=6), "stutter", "strong", 6), 25)]
    out = []
    for k, (name, frames, fps) in enumerate(specs):
        out.append((name, write_video(root / f"clip{k}.mp4", frames, fps=fps)))
    return out


class _FakeAMT:
    """Stands in for AMT-S inside VBench's MotionSmoothness: our interpolation from `flow`."""

    def __init__(self, flow):
        self.flow = flow

    def __call__(self, in_0, in_1, embt, scale_factor=1.0, eval=True):
        from dqa.vbench.motion import interpolate_middle

        f = self.flow(torch_cat(in_0, in_1), torch_cat(in_1, in_0))
        return {"imgt_pred": interpolate_middle(in_0, in_1, f[:1], f[1:])}


class _FakeRAFT:
    """Stands in for RAFT inside VBench's DynamicDegree (it feeds 0..255 images)."""

    def __init__(self, flow):
        self.flow = flow

    def __call__(self, image1, image2, iters=20, test_mode=True):
        return None, self.flow(image1 / 255.0, image2 / 255.0)


def torch_cat(a, b):
    import torch

    return torch.cat([a, b])


def compare(wheel: Path, quick: bool = False) -> list[dict]:
    """Per clip: temporal_flickering from both (the real thing: no model), motion_smoothness through both
    protocols with the same interpolation (a made-up pixel-wise flow), dynamic_degree through both with the same flow
    (Farneback) in place of RAFT: verdicts and per-pair top-5% magnitudes."""
    import torch

    from dqa.vbench.flicker import FlickerWorker
    from dqa.vbench.frames import all_frames
    from dqa.vbench.motion import RAFT_MIN_SIDE, dd_is_dynamic, score_motion
    from dqa.score.scheduler import MAX_FRAMES, MAX_SIDE
    from vrthinker.media.decode import read_sample

    vb = official_modules(wheel)
    ms = vb["motion_smoothness"].MotionSmoothness.__new__(vb["motion_smoothness"].MotionSmoothness)
    ms.device, ms.niters = "cpu", 1
    ms.initialization()
    ms.model = _FakeAMT(pixel_flow)
    dd = vb["dynamic_degree"].DynamicDegree.__new__(vb["dynamic_degree"].DynamicDegree)
    dd.device, dd.model = "cpu", _FakeRAFT(farneback_flow)
    mags: list[float] = []
    get_score = dd.get_score
    dd.get_score = lambda img, flo: mags.append(get_score(img, flo)) or mags[-1]
    worker = FlickerWorker()
    rows = []
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        for name, path in clips(Path(d), quick):
            video = read_sample(path, MAX_FRAMES, MAX_SIDE)
            frames, _ = all_frames(video, None)
            row = {"clip": name, "flicker": (float(vb["temporal_flickering"].cal_score(str(path))),
                                             worker.score(video, "")[0].value)}
            if len(frames) >= 3:
                ours = score_motion(frames, video.fps, pixel_flow, dynamic=False).smoothness
                row["smoothness"] = (float(ms.motion_score(str(path))), ours)
            res = score_motion(frames, video.fps, farneback_flow, smoothness=False)
            if len(res.dd_indices) >= 2 and min(frames.shape[1:3]) >= RAFT_MIN_SIDE:
                mags.clear()
                theirs = dd.infer(str(path))
                ours = dd_is_dynamic(res.magnitudes, min(frames.shape[1:3]), len(res.dd_indices))
                gap = max(abs(a - b) for a, b in zip(mags, res.magnitudes)) if len(mags) == len(res.magnitudes) \
                    else float("inf")
                row["dynamic"] = (theirs, ours, gap)
            rows.append(row)
    return rows


def _table(rows: list[dict], tol: float, tol_smooth: float, tol_mag: float) -> tuple[list[str], int]:
    lines = [f"{'clip':<28} {'flicker vbench':>14} {'ours':>10} {'diff':>8} | {'smooth vbench':>13} {'ours':>10} "
             f"{'diff':>8} | {'dynamic vbench/ours':>19} {'mag diff':>8}"]
    bad = 0
    for r in rows:
        t, o = r["flicker"]
        bad += not abs(t - o) <= tol
        line = f"{r['clip']:<28} {t:>14.8f} {o:>10.8f} {abs(t - o):>8.1e} | "
        if "smoothness" in r:
            t, o = r["smoothness"]
            bad += not abs(t - o) <= tol_smooth
            line += f"{t:>13.8f} {o:>10.8f} {abs(t - o):>8.1e} | "
        else:
            line += f"{'(< 3 frames)':>34} | "
        if "dynamic" in r:
            t, o, gap = r["dynamic"]
            bad += (t != o) or not gap <= tol_mag
            line += f"{f'{int(t)}/{int(o)}':>19} {gap:>8.1e}"
        else:
            line += f"{'(< 2 sampled or < 128 px)':>28}"
        lines.append(line)
    return lines, bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="vbench-0.1.5 wheel (default: pip download it)")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter clips (the test suite's run)")
    ap.add_argument("--tol", type=float, default=TOLERANCE, help="temporal_flickering")
    ap.add_argument("--tol-smooth", type=float, default=TOL_SMOOTH, help="motion_smoothness protocol")
    ap.add_argument("--tol-mag", type=float, default=TOL_MAG, help="dynamic_degree magnitudes (px)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        wheel = args.wheel or fetch_wheel(Path(d))
        if wheel is None or not Path(wheel).is_file():
            print(f"vbench=={VERSION} wheel not available (no network?); pass --wheel PATH", file=sys.stderr)
            return 2
        rows = compare(Path(wheel), args.quick)
    lines, bad = _table(rows, args.tol, args.tol_smooth, args.tol_mag)
    print("\n".join(lines))
    print("flicker: the real dimension; smoothness: both protocols with one pixel-wise made-up flow in place of "
          "AMT-S; dynamic: both protocols with Farneback flow in place of RAFT")
    print(f"{'all agree' if not bad else f'{bad} disagreement(s)'} (tolerances: flicker {args.tol:g}, "
          f"smoothness {args.tol_smooth:g}, magnitudes {args.tol_mag:g} px)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
