"""VBench temporal_flickering, motion_smoothness and dynamic_degree (dqa.vbench.flicker / motion / raft)."""
from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from dqa.score.scheduler import MAX_FRAMES, MAX_SIDE
from dqa.vbench import motion, raft
from dqa.vbench.flicker import FlickerWorker, flicker_score
from dqa.vbench.motion import (Padder, backward_warp, dd_is_dynamic, dd_params, dd_step, interpolate_middle,
                               score_motion, top_magnitude)
from dqa.vbench.raft import RaftWorker
from dqa.workers.base import ScoreError
from vrthinker_eval.defects import apply_defect
from vrthinker_eval.synth import render_scene, write_video
from vrthinker.errors import ModelLoadError
from vrthinker.media.decode import read_sample

decode = partial(read_sample, max_frames=MAX_FRAMES, max_side=MAX_SIDE)  # the sample the scheduler hands workers


@pytest.fixture(scope="module")
def clipdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vbench_motion")


# ----------------------------------------------------------------------------------------------------------
# temporal_flickering


def test_flicker_falls_with_flicker_strength(clipdir):
    clean = render_scene("shapes", 160, 128, 16, seed=1)
    scores = [FlickerWorker().score(decode(write_video(clipdir / "fl0.mp4", clean)), "")[0].value]
    for s in (1 / 3, 2 / 3, 1.0):  # same random gains, scaled: damage grows with strength
        path = write_video(clipdir / f"fl{s:.2f}.mp4", apply_defect(clean, "flicker", s, seed=1))
        scores.append(FlickerWorker().score(decode(path), "")[0].value)
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert 0.8 < scores[-1] < scores[0] < 1.0


def test_flicker_static_and_formula():
    frame = render_scene("text", 64, 48, 1, seed=2)
    assert flicker_score(np.repeat(frame, 5, axis=0))[0] == 1.0  # VBench: no change at all is exactly 1
    a = np.zeros((2, 8, 8, 3), np.uint8)
    a[1] = 51  # every pixel differs by 51: (255 - 51) / 255
    value, maes = flicker_score(a)
    assert value == pytest.approx(0.8) and maes.tolist() == [51.0]


def test_flicker_native_size_and_too_few_frames(clipdir):
    frames = render_scene("pan", 600, 200, 4, seed=3)
    video = decode(write_video(clipdir / "wide.mp4", frames))  # the shared sample is capped at 512 px
    score = FlickerWorker().score(video, "")[0]
    assert score.details["size"] == [600, 200] and "decoded again" in score.details["notes"][0]
    one = decode(write_video(clipdir / "one.mp4", frames[:1]))
    with pytest.raises(ScoreError) as e:
        FlickerWorker().score(one, "")
    assert e.value.reason == "too_few_frames"


# ----------------------------------------------------------------------------------------------------------
# dynamic_degree rules (VBench's numbers)


def test_dd_sampling_and_thresholds():
    assert [dd_step(f) for f in (24, 30, 25, 12, 20, 8, 4, 0.0, float("nan"))] == [3, 4, 3, 2, 2, 1, 1, 1, 1]
    assert dd_params(256, 16) == (6.0, 4)
    assert dd_params(512, 6) == (12.0, 2)  # round(1.5) = 2
    assert dd_params(320, 10)[1] == 2  # round(2.5) = 2: Python rounds half to even, as VBench does
    assert dd_params(320, 2)[1] == 0


def test_dd_count_rule():
    assert not dd_is_dynamic([7, 7, 7, 5, 5], 256, 16)  # 3 of the 4 needed pairs over 6 px
    assert dd_is_dynamic([7, 7, 5, 5, 7, 7], 256, 16)
    assert not dd_is_dynamic([6.0] * 10, 256, 16)  # strictly greater than the threshold
    assert dd_is_dynamic([0.0], 256, 2)  # 0 pairs needed: VBench's loop says dynamic at the first pair
    assert not dd_is_dynamic([], 256, 1)


def test_top_magnitude_and_padding_crop():
    flow = torch.zeros(1, 2, 20, 20)
    flow[0, 0, :2, :10] = 3.0
    flow[0, 1, :2, :10] = 4.0  # 20 of 400 px (the top 5%) move 5 px
    assert top_magnitude(flow).item() == pytest.approx(5.0)
    # a 100x130 frame: VBench pads to 104x136; RAFT gets more rows (128). The extra rows never count.
    p = Padder(100, 130)
    assert (p.h8, p.w8) == (104, 136) and p.pad8 == (3, 3, 2, 2)
    frames = np.zeros((3, 100, 130, 3), np.uint8)

    def flow_fn(src, dst):
        assert src.shape[-2:] == (128, 136)
        f = torch.full((len(src), 2, 128, 136), 1000.0)
        f[..., 12:116, :] = 0.6  # the 8-padded frame: magnitude 0.6 * sqrt(2)
        return f

    res = score_motion(frames, 8.0, flow_fn, smoothness=False)
    assert res.dd_indices == [0, 1, 2] and res.magnitudes == pytest.approx([0.6 * 2**0.5] * 2, rel=1e-6)


# ----------------------------------------------------------------------------------------------------------
# motion_smoothness math with an exact flow


def _translating(n: int, d: int, h: int = 64, w: int = 96) -> np.ndarray:
    """Frames of a smooth texture moving right by d px per frame (wrapping)."""
    rng = np.random.default_rng(0)
    base = torch.nn.functional.interpolate(torch.from_numpy(rng.random((1, 3, h // 4, w // 4), np.float32)),
                                           size=(h, w), mode="bicubic", align_corners=False)
    base = (base.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return np.stack([np.roll(base, k * d, axis=1) for k in range(n)])


def _oracle(src, dst):
    """Exact flow for global horizontal shifts: the integer shift that best maps src onto dst."""
    out = torch.zeros(len(src), 2, *src.shape[-2:])
    for i, (a, b) in enumerate(zip(src, dst)):
        errs = [(torch.roll(a, s, dims=-1) - b).abs().mean().item() for s in range(-5, 6)]
        out[i, 0] = float(np.argmin(errs) - 5)
    return out


def test_warp_with_true_flow_reproduces_frame():
    f = torch.from_numpy(_translating(3, 2)).permute(0, 3, 1, 2).float() / 255
    a, mid, b = f[0:1], f[1:2], f[2:3]
    flow_ab = torch.zeros(1, 2, *a.shape[-2:])
    flow_ab[:, 0] = 4.0  # content moves 4 px from a to b
    inner = (..., slice(None), slice(8, -8))  # wrapped columns are not a translation
    assert torch.equal(backward_warp(b, flow_ab)[inner], a[inner])
    assert torch.allclose(interpolate_middle(a, b, flow_ab, -flow_ab)[inner], mid[inner], atol=1e-6)


def test_smoothness_oracle_translation_near_one_and_stutter_lower():
    frames = _translating(9, 2)
    smooth = score_motion(frames, 24.0, _oracle, dynamic=False)
    assert len(smooth.frame_diffs) == 4 and smooth.flows == 8
    assert smooth.smoothness > 0.99
    stutter = frames.copy()
    stutter[[3, 7]] = stutter[[2, 6]]  # held frames: the dropped odd frames are not the motion's midpoints
    assert score_motion(stutter, 24.0, _oracle, dynamic=False).smoothness < smooth.smoothness - 0.01
    still = np.repeat(frames[:1], 5, axis=0)
    assert score_motion(still, 24.0, _oracle, dynamic=False).smoothness == 1.0


def test_flow_pairs_are_shared_at_16_fps():
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    calls = []

    def flow_fn(src, dst):
        calls.append(len(src))
        return torch.zeros(len(src), 2, *src.shape[-2:])

    res = score_motion(frames, 16.0, flow_fn, batch_size=3)
    assert res.flows == 8 and res.dd_indices == [0, 2, 4, 6, 8]  # 4 even pairs x 2; dd's 4 pairs reused
    assert max(calls) <= 3 and res.magnitudes == [0.0] * 4


# ----------------------------------------------------------------------------------------------------------
# the RAFT worker with a random-init local state dict (no download)


@pytest.fixture(scope="module")
def raft_small_pth(tmp_path_factory) -> Path:
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def test_raft_worker_random_small(raft_small_pth, clipdir):
    path = write_video(clipdir / "raft.mp4", render_scene("orbit", 160, 128, 7, seed=4), fps=8)
    worker = RaftWorker(models={"raft": str(raft_small_pth)}, iters=3, batch_size=4)
    assert 0.25 < worker.footprint_gb() < RaftWorker(batch_size=8).footprint_gb()
    scores = {s.name: s for s in worker.score(decode(path), "")}
    assert set(scores) == set(RaftWorker.components) and worker.loaded
    ms, dd = scores["motion_smoothness"], scores["dynamic_degree"]
    assert 0.0 <= ms.value <= 1.0 and ms.unit == ms.value and len(ms.details["frame_diffs"]) == 3
    assert dd.value in (0.0, 1.0) and dd.unit == dd.value
    assert dd.details["step"] == 1 and dd.details["sampled_frames"] == 7 and len(dd.details["magnitudes"]) == 6
    assert all(np.isfinite(dd.details["magnitudes"])) and dd.details["threshold"] == 6.0 * 128 / 256
    worker.unload()
    assert worker.model is None and not worker.loaded
    short = decode(write_video(clipdir / "two.mp4", render_scene("orbit", 160, 128, 2, seed=4), fps=8))
    with pytest.raises(ScoreError) as e:
        worker.score(short, "")
    assert e.value.reason == "too_few_frames"


def test_raft_local_file_errors(tmp_path, raft_small_pth):
    with pytest.raises(ModelLoadError, match="not found"):
        raft.load_raft(str(tmp_path / "missing.pth"))
    bogus = tmp_path / "bogus.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bogus)
    with pytest.raises(ModelLoadError, match="not a torchvision RAFT"):
        raft.load_raft(str(bogus))
    original = tmp_path / "raft-things.pth"
    torch.save({"module.fnet.conv1.weight": torch.zeros(1)}, original)
    with pytest.raises(ModelLoadError, match="original princeton-vl"):
        raft.load_raft(str(original))
    with pytest.raises(ModelLoadError):
        raft.load_raft(str(raft_small_pth), arch="raft_large")


def test_unreachable_download_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setattr(raft, "reachable", lambda *a, **k: False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached
    t = time.perf_counter()
    with pytest.raises(ModelLoadError, match="unreachable"):
        RaftWorker().load()
    assert time.perf_counter() - t < 5
    with pytest.raises(ModelLoadError, match="unknown weights"):
        raft.load_raft("torchvision:raft_large.NOPE")


def test_registered():
    from dqa.workers import registry

    reg = registry()
    assert reg["vbench.flicker"].components == ("temporal_flickering",)
    assert reg["vbench.raft"].components == ("motion_smoothness", "dynamic_degree")
    assert RaftWorker().models["raft"] == "torchvision:raft_large.C_T_V1"
    assert motion.DD_FPS == 8


# ----------------------------------------------------------------------------------------------------------
# against the official VBench 0.1.5 code


def test_check_vbench_against_official_wheel(tmp_path, capsys):
    import check_vbench

    wheel = os.environ.get("VBENCH_WHEEL")
    wheel = Path(wheel) if wheel and Path(wheel).is_file() else check_vbench.fetch_wheel(tmp_path, timeout=60)
    if wheel is None:
        pytest.skip("the vbench 0.1.5 wheel could not be downloaded (no network?); set VBENCH_WHEEL to a copy")
    rc = check_vbench.main(["--wheel", str(wheel), "--quick"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "all agree" in out
