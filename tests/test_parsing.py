import pytest

from vrthinker.parsing import (CallRules, final_reasoning, parse_answer, parse_recommendation, read_tool_call,
                               training_history)


def call(text, grid=128, limit=12):
    return read_tool_call(text, CallRules("select_frames", "frame_indices", 0, grid - 1, limit))


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
    ("<Answer>TA=7, TA=1, VQ=2, VQ=0</Answer>", {"VQ": 2}),  # the first value written counts, as in infer.py
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


@pytest.mark.parametrize("text,expected", [
    ("<synthesis>s</synthesis>\n<think>t</think><final answer>TA = 1, MQ = 1, VQ = 2, OA = 1</final answer>",
     {"TA": 1, "MQ": 1, "VQ": 2, "OA": 1}),
    ("<Snapshot>s</Snapshot><Think>t</Think><ANSWER>TA = 0, MQ = 2, VQ = 2, OA = 2</ANSWER>",
     {"TA": 0, "MQ": 2, "VQ": 2, "OA": 2}),
    ("<Recommend Answer>TA=0, VQ=1, MQ=0, OA=1, CF=2</Recommend Answer>", None),  # interim, not final
])
def test_training_tag_variants(text, expected):
    assert parse_answer(text) == expected


@pytest.mark.parametrize("text,labels,cf", [
    ("<Recommend Answer>TA=0, VQ=1, MQ=0, OA=1, CF=2</Recommend Answer>", {"TA": 0, "VQ": 1, "MQ": 0, "OA": 1}, 2),
    ("<recommend answer>TA = 1, MQ = 0, VQ = 0, OA = 1, CF = 1</recommend answer><tool_call>",
     {"TA": 1, "MQ": 0, "VQ": 0, "OA": 1}, 1),
    ("<Recommended Answer> ta=2, oa=2, cf=3 </RECOMMENDED ANSWER>", {"TA": 2, "OA": 2}, 3),
    ("<recommend_answer>TA=1, CF=7", {"TA": 1}, None),  # unclosed; CF outside 1..3 is not kept
])
def test_recommendation_variants(text, labels, cf):
    assert parse_recommendation(text) == {"labels": labels, "confidence": cf}


def test_no_recommendation():
    assert parse_recommendation("<Answer>TA=1</Answer>") is None


def test_final_reasoning_with_synthesis_tags():
    assert final_reasoning("<synthesis>seen</synthesis><final answer>TA=1</final answer>") == "seen"


def strict(text):
    rules = CallRules("select_frames", "target_frames", 1, 96, 8, "refuse", "refuse", "keep", "strict")
    return read_tool_call(text, rules)


def test_strict_training_calls():
    c = strict('<tool_call>\n{"name": "select_frames", "arguments": {"target_frames": [60, 2, 60]}}\n</tool_call>')
    assert c.indices == (60, 2, 60) and not c.refusal  # duplicates kept, order kept, 1-based
    assert strict('<tool_call>{"name": "select_frames", "arguments": {"target_frames": %s}}</tool_call>'
                  % list(range(1, 10))).refusal == "over_limit"
    assert strict('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [96, 97]}}</tool_call>'
                  ).refusal == "out_of_range"
    # training parses with json.loads as written: the lenient repairs of the card profile do not apply
    assert strict("<tool_call>{'name': 'select_frames', 'arguments': {'target_frames': [1]}}</tool_call>"
                  ).refusal == "error"
    assert strict('<tool_call>{"target_frames": [1]}</tool_call>').refusal == "error"  # no name
    assert strict('<tool_call>{"name": "crop", "arguments": {"target_frames": [1]}}</tool_call>'
                  ).refusal == "unknown_tool"
    assert strict("no call") is None


REC_REPLY = ("<synthesis>fox</synthesis>\n<think>unclear</think>\n<recommend answer>TA = 1, CF = 2</recommend answer>"
             '\n<tool_call>\n{"name": "select_frames", "arguments": {"target_frames": [3]}}\n</tool_call>\n trailing')


@pytest.mark.parametrize("reply,kept", [
    (REC_REPLY, "<synthesis>fox</synthesis>\n<think>unclear</think><recommend answer>TA = 1, CF = 2</recommend answer>"
                '<tool_call>\n{"name": "select_frames", "arguments": {"target_frames": [3]}}\n</tool_call>'),
    ("  <synthesis>a</synthesis><think>b</think><final answer>TA=1</final answer> x",
     "<synthesis>a</synthesis>\n<think>b</think><final answer>TA=1</final answer>"),
    # training's quirks kept: only the exact "</recommend answer>" is removed before the rebuild
    ("junk <synthesis>a</synthesis><think>b</think><recommended answer>TA=1</recommended answer><tool_call>{}"
     "</tool_call>", "<synthesis>a</synthesis>\n<think>b</think><recommend answer>TA=1</recommended answer"
                     "</recommend answer><tool_call>{}</tool_call>"),
    # no synthesis word: process() fails (training ended the episode); kept as written, cut after the call
    ("<Snapshot>a</Snapshot><Think>b</Think><tool_call>{}</tool_call>tail",
     "<Snapshot>a</Snapshot><Think>b</Think><tool_call>{}</tool_call>"),
])
def test_training_history_is_process(reply, kept):
    assert training_history(reply) == kept
