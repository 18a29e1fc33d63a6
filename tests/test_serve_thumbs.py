"""The frames `dqa serve` shows after an A/B answer: which ones (a VLM's turns, a weight-free judge's
measured frames) and that nothing is read outside the media roots."""
from __future__ import annotations

import pytest

from dqa.serve.errors import ApiError
from dqa.serve.thumbs import FrameCache, judge_frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vrthinker_eval.synth import render_scene, write_video

    root = tmp_path_factory.mktemp("thumbs")
    a = write_video(root / "a.mp4", render_scene("shapes", 96, 64, 20, seed=1), fps=10)
    b = write_video(root / "b.mp4", render_scene("pan", 96, 64, 20, seed=2), fps=10)
    return str(a), str(b)


def ok(p: str) -> str:
    return p


def cells(doc: dict, group: int) -> list[list[tuple[str, int]]]:
    return [[(im["side"], im["frame"]) for im in c["images"]] for c in doc["groups"][group]["cells"]]


def test_a_vlm_verdict_shows_its_initial_frames_then_each_tool_calls_frames_both_videos(clips):
    from vrthinker.media.frame_grid import grid_to_real

    verdict = {"protocol": "card/1", "turns": [{"index": 0, "action": "tool_call", "requested": [5, 70]},
                                               {"index": 1, "action": "tool_call", "requested": [9]},
                                               {"index": 2, "action": "answer", "requested": []}]}
    doc = judge_frames(verdict, clips, ok)
    assert doc["notes"] == [] and len(doc["groups"]) == 3  # the initial frames, then two calls' frames
    assert "initial" in doc["groups"][0]["title"] and "[5, 70]" in doc["groups"][1]["title"]
    real = [grid_to_real(i, 20, 128) for i in (16, 48, 80, 112)]
    assert cells(doc, 0) == [[("left", r), ("right", r)] for r in real]
    assert cells(doc, 1) == [[("left", grid_to_real(i, 20, 128)), ("right", grid_to_real(i, 20, 128))]
                             for i in (5, 70)]
    unanswered = {"protocol": "card/1", "turns": [{"index": 0, "action": "tool_call", "requested": [5]}]}
    assert len(judge_frames(unanswered, clips, ok)["groups"]) == 1  # a call no turn saw is not shown


def test_a_concatenated_profile_shows_each_requested_frame_of_its_own_video(clips):
    verdict = {"protocol": "training/1", "turns": [{"index": 0, "action": "tool_call", "requested": [1, 50]},
                                                   {"index": 1, "action": "answer"}]}
    doc = judge_frames(verdict, clips, ok)
    sides = [[s for s, _ in c] for c in cells(doc, 1)]
    assert sides == [["left"], ["right"]]  # index 1: video 1's grid 0; index 50: video 2's grid 1


def test_a_weight_free_verdict_shows_recorded_or_evenly_spaced_frames(clips):
    even = judge_frames({"protocol": "metrics/1", "turns": [], "extra": {}}, clips, ok)
    assert cells(even, 0) == [[("left", f), ("right", f)] for f in (2, 7, 12, 17)]
    recorded = {"protocol": "metrics/1", "extra": {"frame_indices": {"video1": [0, 19], "video2": [3]}}}
    doc = judge_frames(recorded, clips, ok)
    assert cells(doc, 0) == [[("left", 0), ("right", 3)], [("left", 19)]]
    assert "measured" in doc["groups"][0]["title"]


def test_nothing_is_read_outside_the_roots(clips):
    read = []

    def check(p: str) -> str:
        read.append(p)
        if p == clips[1]:
            raise ApiError(403, "outside_roots", "b.mp4 is outside the media roots")
        return p

    cache = FrameCache(size=1)
    doc = cache.get("job1", {"protocol": "metrics/1"}, clips, check)
    assert cells(doc, 0) == [[("left", f)] for f in (2, 7, 12, 17)]
    assert doc["notes"] == ["right: no thumbnails: b.mp4 is outside the media roots"]
    assert cache.get("job1", {}, clips, check) is doc and read == list(clips)  # kept, not recomputed
