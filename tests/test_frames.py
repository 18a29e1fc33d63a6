"""vrthinker.media.frame_grid and .video: same pixels as the reference's per-frame seek, one open, no seek, clear
errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import reference_infer
from PIL import Image

from vrthinker_eval import synth
from vrthinker.errors import VideoError
from vrthinker.media.frame_grid import FrameGrid, grid_to_real, load_grid, load_pair
from vrthinker.media.decode import VideoInfo, read_frames
from video_helpers import sequential_rgb

INITIAL = [16, 48, 80, 112]
OTHERS = [0, 1, 5, 31, 33, 47, 63, 64, 77, 99, 100, 121, 126, 127]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "shapes": synth.write_clip(d / "shapes.mp4", "shapes", 320, 240, seconds=2, fps=24, seed=1),
        # 160 frames, one GOP (keyint 250): more frames than grid indices, long decode chains
        "pan": synth.write_clip(d / "pan.mp4", "pan", 320, 240, seconds=160 / 24, fps=24, seed=2, gop=250),
        "orbit40": synth.write_video(d / "orbit40.mp4", synth.render_scene("orbit", 320, 240, 40, seed=3)),
        "text": synth.write_clip(d / "text.mp4", "text", 256, 144, seconds=1, fps=24, seed=4),
        "two": synth.write_video(d / "two.mp4", synth.render_scene("shapes", 64, 48, 2, seed=5)),
        "faststart": synth.write_clip(d / "fast.mp4", "shapes", 320, 240, seconds=2, fps=24, seed=6,
                                      faststart=True),
    }


# ---------------------------------------------------------------------------------------------- grid mapping

@pytest.mark.parametrize("total, expected", [
    (120, {0: 0, 1: 0, 2: 1, 16: 15, 48: 45, 80: 75, 112: 105, 127: 119}),
    (240, {0: 0, 1: 1, 16: 30, 48: 90, 80: 150, 112: 210, 127: 238}),
    (40, {0: 0, 3: 0, 4: 1, 16: 5, 48: 15, 80: 25, 112: 35, 127: 39}),
    (1, {0: 0, 16: 0, 64: 0, 127: 0}),
])
def test_grid_to_real_hand_computed(total, expected):
    assert {i: grid_to_real(i, total) for i in expected} == expected


def test_grid_to_real_matches_reference_formula_and_rejects_empty():
    for total in (1, 7, 40, 48, 120, 129, 240, 1000):
        for i in range(128):
            assert grid_to_real(i, total) == min(int(i / 128 * total), total - 1)
    assert grid_to_real(5, 100, grid_size=10) == 50
    with pytest.raises(ValueError):
        grid_to_real(0, 0)


# ------------------------------------------------------------------------------------ pixels vs the reference

@pytest.mark.parametrize("name", ["shapes", "pan", "orbit40"])
def test_pixels_identical_to_reference(clips, name):
    path = clips[name]
    grid = load_grid(path)
    assert grid.total_frames == int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert grid.count_note is None
    ref_initial = reference_infer.extract_frames(str(path), INITIAL)
    for i, ref in zip(INITIAL, ref_initial):
        assert np.array_equal(grid.array(i), np.asarray(ref)), (name, i)
    for i in OTHERS:
        (ref,) = reference_infer.extract_frames(str(path), [i])
        assert ref.size == (448, 448) and ref.mode == "RGB"
        assert np.array_equal(grid.array(i), np.asarray(ref)), (name, i)
        assert np.array_equal(np.asarray(grid.image(i)), np.asarray(ref))


def test_short_clip_repeats_frames_on_grid(clips):
    grid = load_grid(clips["orbit40"])
    assert grid.total_frames == 40 and grid.distinct_frames == 40 and len(grid) == 128
    assert grid.real_index(3) == grid.real_index(0) == 0
    assert grid.sha256(3) == grid.sha256(0)
    assert grid.sha256(4) != grid.sha256(0)


def test_long_gop_clip_has_one_keyframe_and_grid_skips_frames(clips):
    import av

    with av.open(str(clips["pan"])) as c:
        keys = [f.key_frame for f in c.decode(video=0)]
    assert len(keys) == 160 and sum(keys) == 1
    grid = load_grid(clips["pan"])
    assert grid.distinct_frames == 128 and grid.real_index(127) == 158


def test_grid_attributes_and_other_sizes(clips):
    grid = load_grid(clips["text"], grid_size=16, side=64)
    assert (grid.width, grid.height, grid.fps, grid.total_frames) == (256, 144, 24.0, 24)
    assert grid.array(15).shape == (64, 64, 3) and grid.array(15).dtype == np.uint8
    seq = sequential_rgb(clips["text"])
    for i in range(16):
        want = np.asarray(Image.fromarray(seq[grid_to_real(i, 24, 16)]).resize((64, 64)))
        assert np.array_equal(grid.array(i), want)


def test_grid_is_immutable_and_checks_indices(clips):
    grid = load_grid(clips["text"])
    assert isinstance(grid, FrameGrid)
    with pytest.raises(AttributeError):
        grid.total_frames = 3
    with pytest.raises(ValueError):
        grid.array(0)[0, 0, 0] = 1
    for bad in (-1, 128, 1000):
        for method in (grid.real_index, grid.array, grid.image, grid.sha256):
            with pytest.raises(IndexError):
                method(bad)
    with pytest.raises(IndexError):
        grid.array(1.5)
    assert grid.array(np.int64(5)).shape == (448, 448, 3)
    before = grid.array(7).copy()
    img = grid.image(7)
    img.paste((1, 2, 3), (0, 0, 448, 448))  # a copy: the grid is untouched
    assert np.array_equal(grid.array(7), before)


# ------------------------------------------------------------------------------------ one open, sequential

def test_one_open_and_no_seek(clips, monkeypatch):
    real_capture = cv2.VideoCapture
    opened: list[str] = []
    props_set: list[int] = []

    class Counting:
        def __init__(self, *args, **kw):
            opened.append(str(args[0]))
            self._cap = real_capture(*args, **kw)

        def set(self, prop, value):
            props_set.append(prop)
            return self._cap.set(prop, value)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    for name in ("shapes", "pan", "orbit40"):
        opened.clear()
        grid = load_grid(clips[name])
        assert opened == [str(clips[name])], name
        assert grid.count_note is None
    assert cv2.CAP_PROP_POS_FRAMES not in props_set and cv2.CAP_PROP_POS_MSEC not in props_set
    assert props_set == []
    opened.clear()
    load_pair(clips["shapes"], clips["pan"])
    assert sorted(opened) == sorted([str(clips["shapes"]), str(clips["pan"])])


def test_wrong_header_count_uses_decodable_frames(clips, tmp_path):
    # moov first, then cut: the header still claims 48 frames but only the first few decode
    cut = synth.write_truncated(clips["faststart"], tmp_path / "cut.mp4", fraction=0.6)
    header = int(cv2.VideoCapture(str(cut)).get(cv2.CAP_PROP_FRAME_COUNT))
    seq = sequential_rgb(cut)
    assert header == 48 and 4 <= len(seq) < 48
    grid = load_grid(cut)
    assert grid.total_frames == len(seq) and grid.header_frames == 48
    assert grid.count_note and str(len(seq)) in grid.count_note
    for i in (0, 16, 64, 127):
        want = np.asarray(Image.fromarray(seq[grid_to_real(i, len(seq))]).resize((448, 448)))
        assert np.array_equal(grid.array(i), want)
    arr, info = read_frames(cut)
    assert arr.shape[0] == info.total_frames == len(seq) and info.count_note


# -------------------------------------------------------------------------------------------------- errors

def _assert_video_error(path, match, **kw):
    with pytest.raises(VideoError) as e:
        load_grid(path, **kw)
    assert str(path) in str(e.value) and e.value.path == str(path)
    assert match in e.value.cause
    with pytest.raises(VideoError):
        read_frames(path, **kw) if not kw else load_pair(path, path, **kw)


def test_errors(clips, tmp_path):
    _assert_video_error(tmp_path / "missing.mp4", "file not found")
    _assert_video_error(tmp_path, "directory")
    _assert_video_error(synth.write_random_bytes(tmp_path / "random.mp4"), "could not open")
    _assert_video_error(synth.write_truncated(clips["shapes"], tmp_path / "half.mp4"), "could not open")
    _assert_video_error(synth.write_corrupt(tmp_path / "head.mp4", "header", src=clips["shapes"]),
                        "could not open")
    _assert_video_error(synth.write_corrupt(tmp_path / "empty.mp4", "empty"), "could not open")
    _assert_video_error(clips["two"], "only 2 decodable frames; at least 4 are needed", min_frames=4)
    assert load_grid(clips["two"], min_frames=2).total_frames == 2


def test_load_pair_order_and_hashes(clips):
    g1, g2 = load_pair(clips["shapes"], clips["orbit40"])
    assert (g1.path, g2.path) == (str(clips["shapes"]), str(clips["orbit40"]))
    assert (g1.total_frames, g2.total_frames) == (48, 40)
    again = load_grid(clips["shapes"])
    for i in INITIAL:
        assert g1.sha256(i) == again.sha256(i) and len(g1.sha256(i)) == 64
        assert g1.sha256(i) != g2.sha256(i)
    assert len({g1.sha256(i) for i in INITIAL}) == 4
    with pytest.raises(VideoError):
        load_pair(clips["shapes"], clips["shapes"].parent / "nope.mp4")


# -------------------------------------------------------------------------------------------------- read_frames

def test_read_frames(clips):
    seq = sequential_rgb(clips["shapes"])
    arr, info = read_frames(clips["shapes"])
    assert isinstance(info, VideoInfo)
    assert arr.shape == (48, 240, 320, 3) and arr.dtype == np.uint8
    assert (info.total_frames, info.fps, info.width, info.height) == (48, 24.0, 320, 240)
    assert np.array_equal(arr, np.stack(seq)) and info.indices == tuple(range(48))

    arr, info = read_frames(clips["shapes"], max_frames=8, max_side=160)
    assert arr.shape == (8, 120, 160, 3) and info.total_frames == 48
    assert info.indices[0] == 0 and info.indices[-1] == 47 and len(info.indices) == 8
    assert np.all(np.diff(info.indices) >= 6)
    want = cv2.resize(seq[info.indices[3]], (160, 120), interpolation=cv2.INTER_AREA)
    assert np.array_equal(arr[3], want)

    arr, info = read_frames(clips["text"], max_frames=1000, max_side=1000)  # no-ops
    assert arr.shape == (24, 144, 256, 3)
    with pytest.raises(ValueError):
        read_frames(clips["text"], max_frames=0)


def test_lazy_eager_and_budget_paths_give_the_same_pixels(clips):
    lazy = load_grid(clips["pan"])
    eager = load_grid(clips["pan"], eager=INITIAL)
    converted_at_decode = load_grid(clips["pan"], raw_budget_mb=0)
    for i in INITIAL + OTHERS:
        a = lazy.array(i)
        assert np.array_equal(a, eager.array(i)) and np.array_equal(a, converted_at_decode.array(i))
        assert a.shape == (448, 448, 3) and not a.flags.writeable
        assert lazy.array(i) is a  # converted once, then kept


def test_grid_cache_decodes_each_video_once_within_a_bound(clips):
    from vrthinker.media.frame_grid import GridCache

    cache = GridCache(max_mb=512)
    g1, g2 = load_pair(clips["shapes"], clips["pan"], cache=cache)
    h1, h2 = load_pair(clips["shapes"], clips["pan"], cache=cache)
    assert (h1, h2) == (g1, g2) and cache.decodes == 2
    assert load_pair(clips["pan"], clips["shapes"], cache=cache) == (g2, g1) and cache.decodes == 2
    load_grid_kw = load_pair(clips["shapes"], clips["pan"], cache=cache, side=224)  # another view: decoded
    assert load_grid_kw[0].side == 224 and cache.decodes == 4
    tiny = GridCache(max_mb=g1.nbytes / 2**20 * 1.5)  # room for about one grid
    tiny.load(clips["shapes"])
    tiny.load(clips["pan"])
    tiny.load(clips["shapes"])
    assert tiny.decodes == 3


def test_vendored_smart_resize_equals_qwen_vl_utils():
    """The light core sizes frames with its own copy of smart_resize: it must equal qwen_vl_utils' everywhere."""
    qv = pytest.importorskip("qwen_vl_utils.vision_process")
    from vrthinker.media.frame_grid import smart_resize

    rng = np.random.default_rng(0)
    sizes = [(28, 28), (1, 200), (200, 1), (1080, 1920), (480, 854), (56, 11200)]
    sizes += [tuple(int(x) for x in rng.integers(1, 4000, 2)) for _ in range(400)]
    bounds = [(4 * 28 * 28, 16384 * 28 * 28), (448 * 448, 448 * 448), (256 * 28 * 28, 1280 * 28 * 28), (3136, 12845056)]
    checked = 0
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in bounds:
            assert smart_resize(h, w, 28, lo, hi) == qv.smart_resize(h, w, factor=28, min_pixels=lo, max_pixels=hi)
            checked += 1
    assert checked > 1000
    with pytest.raises(ValueError):
        smart_resize(1, 500, 28, 3136, 12845056)
