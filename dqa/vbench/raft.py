"""The RAFT worker: one optical-flow model, loaded once, gives VBench's motion_smoothness and dynamic_degree.

VBench runs RAFT with the original raft-things.pth for dynamic_degree; torchvision's raft_large with
Raft_Large_Weights.C_T_V1 is that checkpoint ported to torchvision (FlyingChairs + FlyingThings3D), the
default here. (C_T_V2 is torchvision's own retraining on the same data, not the weights VBench used.)
motion_smoothness uses the same flows instead of AMT-S (see motion.py for how that number differs).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from vrthinker.errors import ModelLoadError
from vrthinker.loading import reachable
from vrthinker.media.decode import VideoSample

from dqa.workers.base import Score, ScoreError, Worker
from dqa.vbench.frames import all_frames
from dqa.vbench.motion import RAFT_MIN_SIDE, dd_is_dynamic, dd_params, dd_step, score_motion

ARCHS = ("raft_large", "raft_small")
PREFIX = "torchvision:"


def _builder(arch: str):
    from torchvision.models import optical_flow

    if arch not in ARCHS:
        raise ModelLoadError(f"unknown RAFT architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return getattr(optical_flow, arch)


def _from_torchvision(spec: str) -> torch.nn.Module:
    """'torchvision:raft_large.C_T_V1' -> that model with those weights (torch.hub cache, else download)."""
    from torchvision.models import optical_flow

    arch, _, tag = spec[len(PREFIX):].partition(".")
    build = _builder(arch)
    enum = getattr(optical_flow, "Raft_Large_Weights" if arch == "raft_large" else "Raft_Small_Weights")
    if tag not in enum.__members__:
        raise ModelLoadError(f"unknown weights {tag!r} for {arch}; choose one of {', '.join(enum.__members__)}")
    weights = enum[tag]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    host = urlparse(weights.url).hostname or ""
    if not cached.is_file() and not reachable(host, timeout=3.0):
        raise ModelLoadError(f"RAFT weights {arch}.{tag} are not in the torch hub cache ({cached}) and {host} "
                             "is unreachable; pass a local state dict: dqa score --models raft=/path/raft.pth")
    try:
        return build(weights=weights, progress=False)
    except Exception as e:  # noqa: BLE001  (any download or load failure is one line)
        raise ModelLoadError(f"could not load RAFT weights {arch}.{tag}: {e}") from None


def _from_file(path: Path, arch: str) -> torch.nn.Module:
    """A torchvision-layout RAFT state dict (.pth); `arch` 'auto' tries raft_large, then raft_small."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"could not read RAFT weights {path}: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("fnet.") for k in state):
        raise ModelLoadError(f"{path} is an original princeton-vl RAFT checkpoint, not torchvision's layout; "
                             "use 'torchvision:raft_large.C_T_V1' (raft-things.pth ported to torchvision)")
    errors = []
    for name in (ARCHS if arch == "auto" else (arch,)):
        model = _builder(name)(weights=None)
        try:
            model.load_state_dict(state)
            return model
        except RuntimeError as e:
            errors.append(f"{name}: {str(e).splitlines()[0]}")
    raise ModelLoadError(f"{path} is not a torchvision RAFT state dict ({'; '.join(errors)})")


def load_raft(source: str, arch: str = "auto", device: str = "cpu") -> torch.nn.Module:
    """RAFT in eval mode on `device` from 'torchvision:<arch>.<weights>' or a local .pth state dict."""
    if source.startswith(PREFIX):
        model = _from_torchvision(source)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"RAFT weights not found: {source}")
        model = _from_file(path, arch)
    return model.eval().to(device)


def footprint(height: int, width: int, batch_size: int, weights_gb: float) -> float:
    """GB for RAFT on height x width frames, `batch_size` pairs at once: per pair the 4-level correlation
    pyramid ((H/8 * W/8)^2 floats x 4/3) plus activations and the kept flow predictions, ~160 MB at 512x512
    (scaling with H*W); measured on CPU: ~250 MB per pair at 512x512 and ~120 MB at 512x288 (raft_large)."""
    h, w = max(height, RAFT_MIN_SIDE), max(width, RAFT_MIN_SIDE)
    corr = (h * w / 64) ** 2 * 4 * 4 / 3 / 1e9
    rest = 0.16 * h * w / 512**2
    return round(weights_gb + max(1, batch_size) * (corr + rest) + 0.25, 2)


class RaftWorker(Worker):
    """motion_smoothness and dynamic_degree from one RAFT (see module and motion.py docstrings).

    Options: iters (flow refinement steps, VBench's dynamic_degree uses 20), batch_size (flow pairs per
    forward pass), max_side (frames are scaled so the long side is at most this; None = native like VBench,
    whose memory then grows with the fourth power of the size), arch (for a local file: auto, raft_large,
    raft_small).
    """

    name = "vbench.raft"
    components = ("motion_smoothness", "dynamic_degree")
    default_models = {"raft": "torchvision:raft_large.C_T_V1"}

    def __init__(self, device: str = "cpu", models=None, **options):
        super().__init__(device, models, **options)
        self.iters = int(options.get("iters", 20))
        self.batch_size = int(options.get("batch_size", 4))
        self.max_side = options.get("max_side", 512)
        self.arch = options.get("arch", "auto")
        self.model: torch.nn.Module | None = None

    def footprint_gb(self) -> float:
        src = self.models["raft"]
        small = "raft_small" in src or self.arch == "raft_small"
        weights = 0.004 if small else 0.021  # 1.0M / 5.3M fp32 parameters
        if not src.startswith(PREFIX) and Path(src).expanduser().is_file():
            weights = Path(src).expanduser().stat().st_size / 1e9
        # worst case for a cap: a square frame; native size (max_side None) is planned for 1920x1080
        h, w = (self.max_side, self.max_side) if self.max_side else (1080, 1920)
        return footprint(h, w, self.batch_size, weights)

    def config(self) -> dict:
        # the effective values, defaults included: max_side None (native) must not read like the default
        return {**super().config(), "iters": self.iters, "max_side": self.max_side or "native", "arch": self.arch,
                "interpolation": "raft-warp-v1"}

    def _load(self) -> None:
        self.model = load_raft(self.models["raft"], self.arch, self.device)

    def unload(self) -> None:
        self.model = None
        super().unload()

    def _flow(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        # torchvision's RAFT takes images in [-1, 1] (the original normalises 0..255 the same way inside)
        return self.model(src * 2.0 - 1.0, dst * 2.0 - 1.0, num_flow_updates=self.iters)[-1]

    def score(self, video: VideoSample, prompt: str) -> list[Score]:
        self.load()
        step = dd_step(video.fps)
        n_dd = -(-video.total_frames // step)
        if video.total_frames < 3 or n_dd < 2:
            raise ScoreError("too_few_frames", f"{video.total_frames} frame(s) at {video.fps:g} fps: "
                                              "motion_smoothness needs 3 frames and dynamic_degree 2 frames "
                                              f"sampled every {step}")
        frames, note = all_frames(video, self.max_side)
        if len(frames) < 3 or -(-len(frames) // step) < 2:
            raise ScoreError("too_few_frames", f"only {len(frames)} decodable frame(s)")
        with torch.inference_mode():
            res = score_motion(frames, video.fps, self._flow, self.batch_size, device=self.device)
        h, w = frames.shape[1:3]
        thres, need = dd_params(min(h, w), len(res.dd_indices))
        dynamic = float(dd_is_dynamic(res.magnitudes, min(h, w), len(res.dd_indices)))
        common = {"size": [int(w), int(h)], "iters": self.iters, **({"notes": [note]} if note else {})}
        ms = res.smoothness
        return [
            Score("motion_smoothness", ms, ms, {"frame_diffs": [round(d, 4) for d in res.frame_diffs],
                                                "interpolation": "RAFT bidirectional warp (not AMT-S)", **common}),
            Score("dynamic_degree", dynamic, dynamic, {
                "magnitudes": [round(m, 4) for m in res.magnitudes], "threshold": thres, "pairs_needed": need,
                "pairs_over": sum(m > thres for m in res.magnitudes), "step": step,
                "sampled_frames": len(res.dd_indices), **common}),
        ]
