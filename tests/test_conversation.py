"""The turn loop on a scripted backend: every way a conversation can end, and what it fed the model."""
import pytest

from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.judge import Judge
from vrthinker.protocol import Profile
from vrthinker.testing import random_grid

ANSWER = "<Snapshot>v2 blurs</Snapshot><Think>v1 is sharper</Think><Answer>TA=1, VQ=1, MQ=0, OA=1</Answer>"


def tool(indices):
    return f'<tool_call>{{"name": "select_frames", "arguments": {{"frame_indices": {indices}}}}}</tool_call>'


class GridJudge(Judge):
    """A Judge over in-memory grids, so the loop is tested without decoding."""

    def load_videos(self, video1, video2):
        return random_grid(1, 40), random_grid(2, 50)


def run(replies, **kw):
    backend = ScriptedBackend(replies)
    v = GridJudge(backend, "card", **kw).compare("v1.mp4", "v2.mp4", "a cat")
    return v, backend.sessions[0]


def test_answer_first_turn():
    v, s = run([ANSWER])
    assert v.complete and v.reason is None
    assert dict(v.labels) == {"TA": 1, "VQ": 1, "MQ": 0, "OA": 1}
    assert v.reasoning == "v1 is sharper" and len(v.turns) == 1 and v.frames_requested == ()
    assert s.calls[0][1] == 8
    assert [(f.video, f.grid_index) for f in v.turns[0].new_images][:2] == [(1, 16), (1, 48)]


def test_tool_calls_then_answer_feed_pairs_in_order():
    v, s = run([tool([100, 3]), tool([3, 3, 64]), ANSWER])
    assert v.complete and v.frames_requested == ((100, 3), (3, 64))
    assert [c[1] for c in s.calls] == [8, 12, 16]  # images seen at each turn
    fed = v.turns[1].new_images
    assert [(f.video, f.grid_index) for f in fed] == [(1, 100), (2, 100), (1, 3), (2, 3)]
    assert fed[0].real_index == int(100 / 128 * 40) and fed[1].real_index == int(100 / 128 * 50)
    assert v.turns[1].dropped == ("3",)
    last_user = s.calls[2][0][-1]["content"][-1]["text"]
    assert last_user == ("<tool_response>Retrieved 2 frame pairs ([3, 64]) symmetrically from both videos."
                         "</tool_response>")


def test_bad_indices_are_dropped_but_the_call_stands():
    v, s = run([tool([300, 7, "x", 2.5]), ANSWER])
    assert v.complete and v.frames_requested == ((7,),)
    assert set(v.turns[0].dropped) == {"300", "x", "2.5"}


def test_nothing_valid_is_malformed_tool_call():
    v, _ = run([tool([300, -1]), ANSWER])
    assert v.reason == "malformed_tool_call" and all(x is None for x in v.labels.values())
    assert "no valid frame index" in v.detail and len(v.turns) == 1


def test_no_answer_and_no_tool_call():
    v, _ = run(["I think both are fine."])
    assert v.reason == "no_answer" and not v.complete
    assert all(v.labels[d] is None for d in ("TA", "VQ", "MQ", "OA"))


def test_turn_limit_default_six():
    v, s = run([tool([i]) for i in range(10)])
    assert v.reason == "turn_limit" and len(v.turns) == 6 and len(s.calls) == 6
    assert s.calls[-1][1] == 8 + 2 * 5  # the sixth call's frames were never fetched


def test_turn_limit_configurable():
    v, s = run([tool([1]), tool([2]), ANSWER], max_turns=2)
    assert v.reason == "turn_limit" and len(s.calls) == 2


def test_token_limit():
    v, _ = run(["word " * 50], max_new_tokens=10)
    assert v.reason == "token_limit" and v.turns[0].stopped == "length"


def test_partial_answer_keeps_missing_dimensions_missing():
    v, _ = run(["<Answer>TA=2, OA=2</Answer>"])
    assert v.reason == "partial_answer" and not v.complete
    assert dict(v.labels) == {"TA": 2, "VQ": None, "MQ": None, "OA": 2}
    assert "VQ" in v.detail and "MQ" in v.detail


def test_verdict_is_frozen_and_serialises():
    v, _ = run([tool([5]), ANSWER])
    with pytest.raises(AttributeError):
        v.reason = "x"
    d = v.to_dict()
    assert d["labels"] == {"TA": 1, "VQ": 1, "MQ": 0, "OA": 1} and d["frames_requested"] == [[5]]
    assert "rendered" not in d["turns"][0]
    t = v.to_dict(trace=True)
    assert t["turns"][1]["new_images"][0]["grid_index"] == 5 and len(t["turns"][1]["new_images"][0]["sha256"]) == 64
    assert v.protocol == Profile.load("card").version and v.model_id == "scripted"


def test_empty_prompt_is_a_usage_error():
    from vrthinker.errors import UsageError

    with pytest.raises(UsageError):
        GridJudge(ScriptedBackend([ANSWER])).compare("a", "b", "  ")
