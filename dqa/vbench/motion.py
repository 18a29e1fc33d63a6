"""VBench's motion_smoothness and dynamic_degree protocols around any optical-flow function (model-free math).

dynamic_degree (VBench dynamic_degree.py): frames every round(fps / 8), RAFT flow (20 iterations) between
consecutive sampled frames padded to a multiple of 8 (replicate, split evenly), per pair the mean of the top
5% flow magnitudes over the padded frame; the video is dynamic when at least round(4 * n / 16) pairs exceed
6 * min(H, W) / 256 px (n = sampled frames). Reproduced exactly, including the loop's early exit and Python's
round-half-to-even (so 2 sampled frames need 0 pairs over: any video with one pair counts as dynamic).

motion_smoothness (VBench motion_smoothness.py): drop the odd frames, synthesise each one back from its even
neighbours, score (255 - mean |original - synthesised|) / 255 over the odd frames that have two neighbours.
VBench synthesises with AMT-S; here the middle frame comes from bidirectional flow warping (below), so the
protocol is the same but the number is not AMT-S's: a flow warp handles occlusions and non-linear motion
worse than AMT's learned synthesis, so on such content it is expected to score lower (the gap has not been
measured: neither AMT-S nor RAFT weights are available offline here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

# (src, dst) -> flow from src to dst in pixels (x, y), all [N, *, H, W] float; images in [0, 1].
FlowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DD_FPS = 8  # VBench samples dynamic_degree frames at about 8 fps
DD_TOP = 0.05  # mean of the top 5% magnitudes
RAFT_MIN_SIDE = 128  # torchvision's RAFT needs >= 16 feature cells (1/8 scale) per side for its pyramid


def dd_step(fps: float) -> int:
    """VBench: interval = max(1, round(fps / 8)) with OpenCV's fps (0 when unknown gives 1)."""
    return max(1, round(fps / DD_FPS)) if math.isfinite(fps) else 1


def dd_params(min_side: int, n_frames: int) -> tuple[float, int]:
    """VBench's set_params: (magnitude threshold in px, pairs needed), from the unpadded frame size."""
    return 6.0 * (min_side / 256.0), round(4 * (n_frames / 16.0))


def dd_is_dynamic(magnitudes, min_side: int, n_frames: int) -> bool:
    """VBench's check_move, loop included: the count is tested after each pair, so a zero requirement is met
    by the first pair whatever its magnitude, and no pairs at all is static."""
    thres, count_num = dd_params(min_side, n_frames)
    count = 0
    for m in magnitudes:
        if m > thres:
            count += 1
        if count >= count_num:
            return True
    return False


def top_magnitude(flow: torch.Tensor) -> torch.Tensor:
    """VBench's get_score per item of a [N, 2, H, W] flow: mean of the int(H*W*5%) largest magnitudes."""
    rad = torch.sqrt(flow[:, 0] ** 2 + flow[:, 1] ** 2).flatten(1)
    k = int(rad.shape[1] * DD_TOP)
    if k == 0:  # VBench: mean of an empty slice is NaN (frames under ~20 px)
        return torch.full((rad.shape[0],), float("nan"), device=flow.device)
    return rad.topk(k, dim=1).values.mean(dim=1)


class Padder:
    """VBench's RAFT InputPadder (replicate, 'sintel' mode: split evenly, to a multiple of 8), then more
    replicate padding up to RAFT_MIN_SIDE for small frames (only they differ from VBench's input)."""

    def __init__(self, h: int, w: int, multiple: int = 8, min_side: int = RAFT_MIN_SIDE):
        ph, pw = (-h) % multiple, (-w) % multiple
        self.pad8 = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # F.pad order: left, right, top, bottom
        h8, w8 = h + ph, w + pw
        eh, ew = max(0, min_side - h8), max(0, min_side - w8)
        eh, ew = eh + (-eh) % multiple, ew + (-ew) % multiple
        self.extra = (ew // 2, ew - ew // 2, eh // 2, eh - eh // 2)
        self.total = tuple(a + b for a, b in zip(self.pad8, self.extra))
        self.h, self.w, self.h8, self.w8 = h, w, h8, w8

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.total, mode="replicate") if any(self.total) else x

    def to_vbench(self, x: torch.Tensor) -> torch.Tensor:
        """Crop a padded map to VBench's padded frame (multiple of 8)."""
        left, _, top, _ = self.extra
        return x[..., top:top + self.h8, left:left + self.w8]

    def to_frame(self, x: torch.Tensor) -> torch.Tensor:
        left, _, top, _ = self.total
        return x[..., top:top + self.h, left:left + self.w]


def backward_warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """out(x) = img(x + flow(x)), bilinear, coordinates clamped to the edges (grid_sample's border mode);
    img [N, C, H, W], flow [N, 2, H, W] in px.

    The bilinear weights come from the flow's fractional part alone (not from x + flow in floats), so a
    pixel's result does not depend on where it sits in the canvas: padding a frame differently (we pad to 8,
    AMT to 16) gives the same values, which is what lets check_vbench compare protocols exactly.
    """
    n, c, h, w = img.shape
    fl = flow.floor()
    fr = flow - fl
    ys = torch.arange(h, device=img.device).view(1, h, 1)
    xs = torch.arange(w, device=img.device).view(1, 1, w)
    x0 = xs + fl[:, 0].long()
    y0 = ys + fl[:, 1].long()
    wx, wy = fr[:, 0].unsqueeze(1), fr[:, 1].unsqueeze(1)
    flat = img.reshape(n, c, h * w)

    def tap(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, idx).view(n, c, h, w)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def _fb_weight(f_fwd: torch.Tensor, f_bwd: torch.Tensor) -> torch.Tensor:
    """Soft visibility of each source pixel from forward-backward consistency (Sundaram et al. 2010's test
    |f + f'|^2 < 0.01 (|f|^2 + |f'|^2) + 0.5, made smooth): ~1 where the flows agree, ~0 where occluded."""
    back = backward_warp(f_bwd, f_fwd)
    err = ((f_fwd + back) ** 2).sum(1, keepdim=True)
    scale = 0.01 * ((f_fwd ** 2).sum(1, keepdim=True) + (back ** 2).sum(1, keepdim=True)) + 0.5
    return torch.exp(-err / scale)


def interpolate_middle(a: torch.Tensor, b: torch.Tensor, f_ab: torch.Tensor, f_ba: torch.Tensor) -> torch.Tensor:
    """The frame halfway between a and b ([N, 3, H, W] in [0, 1]) from flows a->b and b->a.

    Flows from the middle frame use Super SloMo's linear-motion approximation at t = 1/2,
    F_t->a = (F_b->a - F_a->b) / 4 and F_t->b = -F_t->a; each warped source is weighted by its
    forward-backward visibility looked up where the middle frame samples it, then blended.
    """
    f_ta = 0.25 * (f_ba - f_ab)
    f_tb = -f_ta
    wa = backward_warp(_fb_weight(f_ab, f_ba), f_ta)
    wb = backward_warp(_fb_weight(f_ba, f_ab), f_tb)
    a_t, b_t = backward_warp(a, f_ta), backward_warp(b, f_tb)
    eps = 1e-3  # both occluded: fall back to the plain average
    return ((wa * a_t + wb * b_t + 0.5 * eps * (a_t + b_t)) / (wa + wb + eps)).clamp(0.0, 1.0)


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """AMT's tensor2img: (x * 255) clipped and truncated (not rounded) to uint8."""
    return (x * 255.0).clamp(0, 255).to(torch.uint8)


@dataclass
class MotionResult:
    """What one clip gave: per-pair numbers for both dimensions (empty lists for one not asked for)."""

    frame_diffs: list[float] = field(default_factory=list)  # MAE per synthesised odd frame
    magnitudes: list[float] = field(default_factory=list)  # top-5% flow magnitude per sampled pair
    dd_indices: list[int] = field(default_factory=list)  # frames dynamic_degree sampled
    flows: int = 0  # flow fields computed

    @property
    def smoothness(self) -> float:
        return (255.0 - float(np.mean(self.frame_diffs))) / 255.0


def _jobs(t: int, step: int, smoothness: bool, dynamic: bool) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """Flow pairs grouped into units (a smoothness unit is both directions of one even pair); a dynamic
    pair equal to a forward smoothness pair (fps ~16) is computed once."""
    units: list[list[tuple[int, int]]] = []
    if smoothness:
        units += [[(i, i + 2), (i + 2, i)] for i in range(0, t - 2, 2)]
    dd_idx = list(range(0, t, step))
    if dynamic:
        have = {p for u in units for p in u}
        units += [[p] for p in zip(dd_idx[:-1], dd_idx[1:]) if p not in have]
    return units, dd_idx


def score_motion(frames: np.ndarray, fps: float, flow_fn: FlowFn, batch_size: int = 4, smoothness: bool = True,
                 dynamic: bool = True, device: str | torch.device = "cpu") -> MotionResult:
    """Run both protocols on RGB uint8 frames [T, H, W, 3] with `flow_fn`, `batch_size` flows at a time.

    Frames go to the device a batch at a time; nothing per frame is kept beyond the current batch.
    """
    t, h, w, _ = frames.shape
    padder = Padder(h, w)
    units, dd_idx = _jobs(t, dd_step(fps), smoothness, dynamic)
    dd_pairs = set(zip(dd_idx[:-1], dd_idx[1:])) if dynamic else set()
    res = MotionResult(dd_indices=dd_idx)
    mags: dict[tuple[int, int], float] = {}

    def tensor(idx) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames[list(idx)])).to(device).permute(0, 3, 1, 2)
        return padder.pad(x.float() / 255.0)

    k = 0
    while k < len(units):
        batch: list[list[tuple[int, int]]] = []
        while k < len(units) and (not batch or sum(map(len, batch)) + len(units[k]) <= max(1, batch_size)):
            batch.append(units[k])
            k += 1
        pairs = [p for u in batch for p in u]
        uniq = sorted({i for p in pairs for i in p})
        imgs = tensor(uniq)
        pos = {i: n for n, i in enumerate(uniq)}
        src = imgs[[pos[i] for i, _ in pairs]]
        dst = imgs[[pos[j] for _, j in pairs]]
        flows = flow_fn(src, dst).float()
        res.flows += len(pairs)
        flow_of = {p: flows[n:n + 1] for n, p in enumerate(pairs)}
        hit = [p for p in pairs if p in dd_pairs]
        if hit:
            vals = top_magnitude(torch.cat([padder.to_vbench(flow_of[p]) for p in hit]))
            mags.update(zip(hit, vals.tolist()))
        if smoothness:
            ms = [u[0] for u in batch if len(u) == 2]
            if ms:
                a = imgs[[pos[i] for i, _ in ms]]
                b = imgs[[pos[j] for _, j in ms]]
                f_ab = torch.cat([flow_of[(i, j)] for i, j in ms])
                f_ba = torch.cat([flow_of[(j, i)] for i, j in ms])
                mid = to_u8(padder.to_frame(interpolate_middle(a, b, f_ab, f_ba)))
                orig = torch.from_numpy(np.ascontiguousarray(frames[[i + 1 for i, _ in ms]])).to(device)
                diff = (mid.permute(0, 2, 3, 1).to(torch.int16) - orig.to(torch.int16)).abs()
                res.frame_diffs += diff.double().mean(dim=(1, 2, 3)).tolist()
    res.magnitudes = [mags[p] for p in zip(dd_idx[:-1], dd_idx[1:])] if dynamic else []
    return res
