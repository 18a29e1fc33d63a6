"""The byte-bounded LRU (vrthinker/lru.py) and the one decoder (vrthinker/media/decode.py)."""
from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vrthinker.media import decode as video
from vrthinker.errors import VideoError
from vrthinker.lru import ByteLRU


class Blob:
    def __init__(self, n):
        self.nbytes = n


def test_lru_evicts_by_bytes_least_recent_first():
    c = ByteLRU(100)
    c.put("a", Blob(40))
    c.put("b", Blob(40))
    assert c.get("a").nbytes == 40  # a is now the most recent
    c.put("c", Blob(40))  # 120 > 100: b (least recent) goes
    assert "b" not in c and "a" in c and "c" in c
    assert c.nbytes == 80
    c.put("d", Blob(500))  # alone over the bound: kept (keep=1), everything older goes
    assert list(c) == ["d"]
    assert len(c) == 1


def test_lru_sizes_measured_at_trim_time():
    c = ByteLRU(100)
    a = c.put("a", Blob(90))
    a.nbytes = 10  # shrank while cached (a grid converting its raw frames)
    c.put("b", Blob(80))
    assert "a" in c and "b" in c


def test_lru_count_bound_and_keep():
    c = ByteLRU(2, size=lambda v: 1)
    for k in "abc":
        c.put(k, k)
    assert list(c) == ["b", "c"]
    c.trim(keep=0)
    assert list(c) == ["b", "c"]
    c.max_bytes = 0
    c.trim(keep=1)
    assert list(c) == ["c"]
    with pytest.raises(ValueError):
        ByteLRU(-1)


def test_lru_get_or_load_loads_once_across_threads_and_forgets_errors():
    c = ByteLRU(10**6)
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return np.zeros(10, np.uint8)

    out = []
    threads = [threading.Thread(target=lambda: out.append(c.get_or_load("k", load))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and c.loads == 1
    assert all(o is out[0] for o in out)

    def boom():
        raise OSError("no")

    with pytest.raises(OSError):
        c.get_or_load("x", boom)
    assert "x" not in c
    assert c.get_or_load("x", lambda: np.ones(3)).sum() == 3


# ---------------------------------------------------------------------------------------------- the decoder

ROOT = Path(__file__).resolve().parents[1]
# reference code kept as the reference wrote it, and a benchmark that times another decoder against ours
NOT_OURS = {"scripts/reference_infer.py", "scripts/bench_frames.py",
            "eval/codec.py"}  # decodes only the in-memory buffer it just encoded (the fault suites' codec round trip)
READERS = {"VideoCapture", "VideoReader"}  # OpenCV's, decord's / torchvision's


def opens_a_video(tree: ast.AST) -> list[int]:
    """Lines that construct a video reader, import decord, or av.open() a file for reading."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            writing = any(k.arg == "mode" and isinstance(k.value, ast.Constant) and "w" in str(k.value.value)
                          for k in node.keywords)
            if name in READERS or (name == "open" and isinstance(f, ast.Attribute)
                                   and isinstance(f.value, ast.Name) and f.value.id == "av" and not writing):
                hits.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "decord" for a in node.names):
            hits.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "decord":
            hits.append(node.lineno)
    return hits


def test_only_the_decoder_module_opens_a_video():
    offenders = []
    for pkg in ("vrthinker", "dqa", "eval", "judge_prompts", "scripts"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "vrthinker/media/decode.py" or rel in NOT_OURS:
                continue
            offenders += [f"{rel}:{n}" for n in opens_a_video(ast.parse(path.read_text(), rel))]
    assert offenders == [], offenders
    assert opens_a_video(ast.parse((ROOT / "vrthinker/media/decode.py").read_text()))
    caught = "import decord\ncap = cv2.VideoCapture(p)\nwith av.open(p) as c: pass\nav.open(p, mode='w')\n"
    assert opens_a_video(ast.parse(caught)) == [1, 2, 3]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vrthinker_eval import synth

    d = tmp_path_factory.mktemp("video")
    return {
        "shapes": synth.write_clip(d / "shapes.mp4", "shapes", 320, 240, seconds=1, fps=24, seed=1),
        "pan": synth.write_clip(d / "pan.mp4", "pan", 160, 96, seconds=1.5, fps=24, seed=2, gop=250),
        "fast": synth.write_clip(d / "fast.mp4", "shapes", 320, 240, seconds=2, fps=24, seed=6, faststart=True),
    }


class CountingCapture:
    """cv2.VideoCapture that records each file it opens."""

    opened: list[str] = []

    def __init__(self, *args, **kw):
        CountingCapture.opened.append(str(args[0]))
        self._cap = CountingCapture.real(*args, **kw)

    def __getattr__(self, name):
        return getattr(self._cap, name)


@pytest.fixture
def opened(monkeypatch):
    import cv2

    CountingCapture.real = cv2.VideoCapture
    CountingCapture.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    return CountingCapture.opened


def test_stream_is_the_native_read_in_batches(clips, tmp_path):
    from vrthinker_eval import synth

    cut = synth.write_truncated(clips["fast"], tmp_path / "cut.mp4", fraction=0.6)
    for path in (clips["shapes"], clips["pan"], cut):
        native, info = video.read_frames(path)
        for bs in (1, 5, 1000):
            batches = list(video.stream_frames(path, bs))
            assert all(len(b) == bs for b in batches[:-1]) and 1 <= len(batches[-1]) <= bs
            assert np.array_equal(np.concatenate(batches), native), (path, bs)
        assert info.indices == tuple(range(len(native))) and (info.width, info.height) == native.shape[2:0:-1]
    with pytest.raises(VideoError, match="could not open"):
        list(video.stream_frames(tmp_path / "missing.mp4", 4))
    with pytest.raises(VideoError, match="could not open"):
        list(video.stream_frames(synth.write_random_bytes(tmp_path / "junk.mp4"), 4))


def test_capped_and_native_reads_and_their_metadata(clips):
    s = video.read_sample(clips["shapes"], max_frames=8, max_side=160)
    assert s.frames.shape == (8, 120, 160, 3) and s.size == (320, 240) and s.total_frames == 24
    assert s.fps == 24.0 and s.indices[0] == 0 and s.indices[-1] == 23 and not s.consecutive
    assert s.notes == ("8 of 24 frames used (sampled uniformly)",) and s.nbytes == s.frames.nbytes
    full = video.read_sample(clips["shapes"])
    assert full.frames.shape == (24, 240, 320, 3) and full.consecutive and full.notes == ()
    assert video.capped_size(320, 240, 160) == (120, 160) and video.capped_size(320, 240, None) == (240, 320)
    assert video.capped_size(320, 240, 320) == (240, 320) and video.capped_size(1000, 3, 10) == (1, 10)
    info = video.probe(clips["shapes"])  # the header alone, nothing decoded
    assert (info.total_frames, info.fps, info.width, info.height, info.indices) == (24, 24.0, 320, 240, ())
    with pytest.raises(VideoError, match="file not found"):
        video.probe(clips["shapes"].parent / "nope.mp4")


def test_cache_keys_by_file_and_decode_and_remembers_errors(clips, tmp_path, opened):
    import shutil

    cache = video.VideoCache(max_mb=64)
    a = cache.sample(clips["shapes"], 8, 160)
    assert cache.sample(clips["shapes"], 8, 160) is a and cache.decodes == 1
    b = cache.sample(clips["shapes"], 4, 160)  # another decode of the same file
    assert b is not a and len(b.frames) == 4 and cache.decodes == 2
    assert opened == [str(clips["shapes"])] * 2

    moved = tmp_path / "v.mp4"
    shutil.copy(clips["shapes"], moved)
    first = cache.sample(moved, 8, 160)
    shutil.copy(clips["pan"], moved)  # the file changes: its old decode is not handed out
    second = cache.sample(moved, 8, 160)
    assert first.size == (320, 240) and second.size == (160, 96) and cache.decodes == 4

    missing = tmp_path / "missing.mp4"
    for _ in range(2):
        with pytest.raises(VideoError, match="file not found"):
            cache.sample(missing, 8, 160)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 4096)
    n = len(opened)
    for _ in range(3):
        with pytest.raises(VideoError, match="could not open"):
            cache.sample(junk, 8, 160)
    assert len(opened) == n + 1  # a bad file is tried once
    assert cache.decodes == 4


def test_one_cache_for_the_judge_and_the_scorers(clips, opened):
    """Samples (the scorers') and grids (the judge's) live in one byte-bounded LRU: a decode either side
    already made is handed back without opening the file again, and the bound counts both kinds."""
    from dqa.score.scheduler import MAX_FRAMES, MAX_SIDE, Item, Scheduler
    from dqa.workers.base import Score, Worker
    from vrthinker.media import frame_grid as frames

    seen = []

    class Looker(Worker):
        name = "looker"
        components = ("spatial",)

        def footprint_gb(self):
            return 0.1

        def _load(self):
            pass

        def score(self, sample, prompt):
            seen.append(sample)
            return [Score("spatial", 0.5, 0.5)]

    shared = frames.GridCache(max_mb=256)
    paths = [str(clips["shapes"]), str(clips["pan"])]
    report = Scheduler([Looker()], cache=shared).run([Item(p, "x") for p in paths])
    assert report.decodes == 2 and sorted(opened) == sorted(paths)
    # the same decode asked again from outside the scheduler: handed back, no file opened
    assert shared.sample(paths[0], MAX_FRAMES, MAX_SIDE) is seen[0] and len(opened) == 2
    g1, g2 = frames.load_pair(*paths, cache=shared)  # the judge's decode: a grid, made once
    assert shared.decodes == 4 and len(opened) == 4
    assert frames.load_pair(*paths, cache=shared) == (g1, g2)
    Scheduler([Looker()], cache=shared).run([Item(p, "x") for p in paths])
    assert shared.decodes == 4 and len(opened) == 4 and seen[2] is seen[0]
    assert shared.nbytes == g1.nbytes + g2.nbytes + seen[0].nbytes + seen[1].nbytes

    tiny = frames.GridCache(max_mb=(seen[0].nbytes + 1) / 2**20)  # room for one sample at most
    tiny.sample(paths[0], MAX_FRAMES, MAX_SIDE)
    tiny.load(paths[1])  # a grid pushes the sample out
    tiny.sample(paths[0], MAX_FRAMES, MAX_SIDE)
    assert tiny.decodes == 3 and len(tiny.lru) == 1
