import pytest

from vrthinker.parsing import final_reasoning, parse_answer, parse_tool_call


def call(text, grid=128, limit=12):
    return parse_tool_call(text, "select_frames", "frame_indices", grid, limit)


@pytest.mark.parametrize("text,expected", [
    ("<Answer>TA=1, VQ=1, MQ=0, OA=1</Answer>", {"TA": 1, "VQ": 1, "MQ": 0, "OA": 1}),
    ("<think>x</think>\n<answer> ta = 2 ,vq=0, mq:1 , oa=2 </ANSWER>", {"TA": 2, "VQ": 0, "MQ": 1, "OA": 2}),
    ("<Final Answer>TA=1, VQ=2, MQ=2, OA=2</final answer>", {"TA": 1, "VQ": 2, "MQ": 2, "OA": 2}),
    ("<final_answer>TA=0 VQ=0 MQ=0 OA=0</final_answer>", {"TA": 0, "VQ": 0, "MQ": 0, "OA": 0}),
    ("stray <Answer>TA=1, VQ=2, MQ=1, OA=1", {"TA": 1, "VQ": 2, "MQ": 1, "OA": 1}),  # no closing tag
    ("<Answer>TA=1, VQ=7, MQ=1</Answer>", {"TA": 1, "MQ": 1}),  # out-of-range and absent stay missing
    ("e.g. <Answer>TA=1, VQ=1, MQ=1, OA=1</Answer> then <Answer>TA=2, VQ=2, MQ=2, OA=2</Answer>",
     {"TA": 2, "VQ": 2, "MQ": 2, "OA": 2}),  # the last answer block is the final one
    ("<Answer>OATA=1</Answer>", {}),  # a dimension name must stand alone
])
def test_answer_variants(text, expected):
    assert parse_answer(text) == expected


def test_no_answer_block_is_none():
    assert parse_answer("TA=1, VQ=1, MQ=1, OA=1 but no tag") is None


def test_tool_call_canonical_and_order_kept():
    c = call('<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [90, 10, 30]}}</tool_call>')
    assert c.indices == (90, 10, 30) and c.dropped == () and not c.error


def test_tool_call_validation_drops_bad_indices():
    c = call('<tool_call>{"name": "select_frames", "arguments": {"frame_indices": '
             '[5, 5, 128, -1, 3.5, "7", true, 127, 0]}}</tool_call>')
    assert c.indices == (5, 127, 0)
    assert set(c.dropped) == {"5", "128", "-1", "3.5", "7", "true"}


def test_tool_call_truncated_to_limit():
    c = call('<tool_call>{"name": "select_frames", "arguments": {"frame_indices": %s}}</tool_call>'
             % list(range(0, 40, 2)))
    assert c.indices == tuple(range(0, 24, 2)) and len(c.dropped) == 8


def test_tool_call_tolerates_case_whitespace_and_json_slips():
    c = call("text <TOOL_CALL>\n {'name': 'select_frames', 'arguments': {'frame_indices': [1, 2,]}}\n</Tool_Call>")
    assert c.indices == (1, 2)
    c = call('<tool_call>{"name": "select_frames", "arguments": "{\\"frame_indices\\": [4]}"}</tool_call>')
    assert c.indices == (4,)
    c = call('<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [3, 9]}')  # unclosed
    assert c.indices == (3, 9)
    c = call('<tool_call>{name: select_frames, "frame_indices": [8, 200, 9] oops</tool_call>')  # broken JSON
    assert c.indices == (8, 9)


def test_tool_call_with_nothing_usable_reports_error():
    c = call('<tool_call>{"name": "select_frames", "arguments": {"frame_indices": [500, -3]}}</tool_call>')
    assert c.indices == () and c.error
    assert call('<tool_call>{"name": "zoom", "arguments": {"frame_indices": [1]}}</tool_call>').error
    assert call("<tool_call>not json at all</tool_call>").error
    assert call("no tool call here") is None


def test_final_reasoning_prefers_think():
    assert final_reasoning("<Snapshot>a</Snapshot><Think> because B </Think><Answer>TA=1</Answer>") == "because B"
    assert final_reasoning("<Snapshot>seen</Snapshot> <Answer>TA=1</Answer>") == "seen"
