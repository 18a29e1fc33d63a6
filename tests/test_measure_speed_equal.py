"""The fast paths of dqa.measures give the very numbers of the plain numpy they replace (bit for bit).

scripts/bench_measure_speed.py checks whole videos against an earlier revision; these check each shortcut
on its own: the one-partition percentile and median, the table-look-up luma, the highlights count, and the
per-picture measures run beside the motion measures (OVERLAP) against the same run in sequence.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from dqa.measures import nr, video
from vrthinker_eval.synth import render_scene


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_percentile_and_median_are_numpys(dtype):
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 64, 1001, 4096, 57600):
        for shape in ((n,), (1, n)) if n < 1000 else ((n,),):
            x = (rng.standard_normal(shape) ** 3 * 20).astype(dtype)
            x.flat[rng.integers(0, n, n // 3)] = x.flat[0]  # ties, as flat pictures have
            for q in (0.1, 3, 50, 90, 97, 99.5, 99.9):
                assert _same(nr.percentile(x, q), float(np.percentile(x, q))), (n, q)
            assert _same(nr.median(x), float(np.median(x))), n
    x = rng.random((40, 30)).astype(np.float32)
    assert nr.percentile(x[::2, ::3], 99.5) == float(np.percentile(x[::2, ::3], 99.5))  # strided views
    assert nr.median(x[::2, ::3]) == float(np.median(x[::2, ::3]))
    before = x.copy()
    nr.percentile(x, 97), nr.median(x)
    assert np.array_equal(x, before)  # the input is left as it was
    x[3, 4] = np.nan
    assert math.isnan(nr.percentile(x, 50)) and math.isnan(nr.median(x))
    assert nr.percentile(np.arange(10), 95) == float(np.percentile(np.arange(10), 95))  # integers: numpy's own


def test_luma_is_the_float_formula():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
    frames[0, :4, :4] = [[255, 255, 255], [0, 0, 0], [255, 0, 0], [1, 254, 128]]
    f = frames.astype(np.float32)
    want = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    got = video._luma(frames)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(video._luma1(frames[2]), want[2])
    every = np.arange(256, dtype=np.uint8)  # every level of every channel, in every combination of two
    combo = np.stack(np.meshgrid(every, every, indexing="ij"), -1).reshape(256, 256, 2)
    for c in range(3):
        rgb = np.zeros((256, 256, 3), np.uint8)
        rgb[..., c], rgb[..., (c + 1) % 3] = combo[..., 0], combo[..., 1]
        f = rgb.astype(np.float32)
        assert np.array_equal(video._luma1(rgb), 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])


def test_spatial_measures_as_before():
    frames = render_scene("shapes", 96, 64, 4, 3)
    frames[1, 10:30, 10:40] = [255, 252, 90]  # two channels at the top: blown highlights
    frames[2, :, :20] = [251, 100, 250]
    got = video.spatial_measures(frames)
    assert got == video.spatial_measures(list(frames), list(video._luma(frames)))
    old = [float(np.mean((f >= 250).sum(axis=-1) >= 2)) for f in frames]
    assert got["highlights"] == float(np.nanmedian(old)) and max(old) > 0
    f = frames.astype(np.float32)
    ys = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    for y, width in zip(ys, [video.edge_width(y) for y in ys]):
        grad = video._grad(y)
        top = float(np.percentile(grad, 99.9))
        edge = grad >= max(video._EDGE_MIN, 0.5 * top)
        gb = video._grad(__import__("cv2").GaussianBlur(y, (0, 0), video._REBLUR_SIGMA))
        r = min(float(gb[edge].mean()) / float(grad[edge].mean()), 0.995)
        assert width == video._REBLUR_SIGMA * r / math.sqrt(1.0 - r * r)


def test_overlap_gives_the_same_measures(monkeypatch):
    frames = render_scene("pan", 160, 96, 20, 4)
    monkeypatch.setattr(video, "OVERLAP", False)
    alone = video.measure_frames(frames)
    monkeypatch.setattr(video, "OVERLAP", True)
    beside = video.measure_frames(frames)
    assert list(alone.measures) == list(beside.measures)  # same keys, same order
    assert all(_same(alone.measures[k], beside.measures[k]) for k in alone.measures)
    assert alone.vq == beside.vq and alone.mq == beside.mq
