"""Reply reading against the reference: wherever infer.py's own parsing acts on an answer or a tool call,
the `card` profile acts on the same one; the `training` profile follows the training loop's order."""
import ast
import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vrthinker.backends.scripted import ScriptedBackend
from vrthinker.conversation import Dialogue, run_dialogues
from vrthinker.parsing import CallRules, read_reply
from vrthinker.protocol import Profile
from vrthinker.testing import random_grid

REFERENCE = Path(__file__).resolve().parents[1] / "scripts" / "reference_infer.py"


# --- the reference's parsing, verbatim from scripts/reference_infer.py (checked below) ---
def parse_tool_call(text: str) -> dict | None:
    m = re.search(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", text, re.DOTALL)
    if not m:
        return None
    try:
        obj = json.loads(m.group(1))
        return obj.get("arguments", {})
    except json.JSONDecodeError:
        return None


def parse_answer(text: str) -> dict | None:
    m = re.search(r"<Answer>(.*?)</Answer>", text, re.DOTALL | re.IGNORECASE)
    if not m:
        return None
    body = m.group(1)
    return {d: int(re.search(rf"{d}\s*=\s*(\d)", body).group(1))
            for d in ("TA", "MQ", "VQ", "OA")
            if re.search(rf"{d}\s*=\s*(\d)", body)}
# --- end of the reference's parsing ---


def test_the_ported_functions_are_the_reference_verbatim():
    theirs = ast.parse(REFERENCE.read_text(encoding="utf-8"))
    ours = ast.parse(Path(__file__).read_text(encoding="utf-8"))

    def functions(tree):
        return {n.name: ast.dump(n) for n in tree.body if isinstance(n, ast.FunctionDef)}

    for name in ("parse_tool_call", "parse_answer"):
        assert functions(ours)[name] == functions(theirs)[name]


def reference_action(reply: str):
    """What infer.py's turn loop does with `reply`: ("answer", labels), ("tool_call", (name, indices)) or None."""
    answer = parse_answer(reply)
    if answer:
        return "answer", answer
    call = parse_tool_call(reply)
    if not call or "frame_indices" not in call:
        return None
    obj = json.loads(re.search(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", reply, re.DOTALL).group(1))
    return "tool_call", (obj.get("name", "select_frames"), call["frame_indices"])


CARD = Profile.load("card")
CARD_RULES = CallRules("select_frames", "frame_indices", 0, 127, 12, "truncate", "drop", "drop", "lenient")


def validated(name, raw):
    """Our checks on top of the reference, which trusts the model: the tool's name, then integer indices
    in 0..127, first occurrences, at most 12."""
    if name != "select_frames" or not isinstance(raw, list):
        return ()
    kept = []
    for v in raw:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 127 and v not in kept and len(kept) < 12:
            kept.append(v)
    return tuple(kept)


# --- generated replies ---
noise = st.text(alphabet="abcxyz .,;!?\n()", max_size=12)
digit = st.integers(0, 3)
dim = st.sampled_from(["TA", "VQ", "MQ", "OA"])
label = st.builds(lambda d, sep, v: f"{d}{sep}{v}", dim, st.sampled_from(["=", " = ", ": "]), digit)
labels = st.lists(label, max_size=5).map(", ".join)


@st.composite
def answer(draw):
    tag = draw(st.sampled_from(["Answer", "answer", "ANSWER", "final answer", " Answer "]))
    close = draw(st.sampled_from([f"</{tag.strip()}>", "", "</Answer>", "</answer >"]))
    return f"<{tag}>{draw(labels)}{draw(noise)}{close}"


@st.composite
def tool_call(draw):
    name = draw(st.sampled_from(["select_frames", "select_frames", "crop", None]))
    indices = draw(st.lists(st.one_of(st.integers(-3, 140), st.sampled_from(["7", 2.5, True])), max_size=15))
    obj = {"arguments": {draw(st.sampled_from(["frame_indices", "frame_indices", "target_frames"])): indices}}
    if name is not None:
        obj = {"name": name, **obj}
    body = json.dumps(obj)
    body = draw(st.sampled_from([body, body, body.replace('"', "'"), body[:-1], body[:-1] + ",}", "not json",
                                 body.replace("]", ",]")]))
    ws = draw(st.sampled_from(["", "\n", " "]))
    tag = draw(st.sampled_from(["tool_call", "tool_call", "TOOL_CALL"]))
    close = draw(st.sampled_from([f"</{tag}>", f"</{tag}>", ""]))
    return f"<{tag}>{ws}{body}{ws}{close}"


@st.composite
def think(draw):
    inner = draw(st.lists(st.one_of(noise, answer(), st.just("<answer>"), st.just("</Answer>")), max_size=3))
    tag = draw(st.sampled_from(["Think", "think"]))
    return f"<{tag}>{''.join(inner)}</{tag}>"


recommend = st.builds(lambda lab, cf: f"<Recommend Answer>{lab}, CF={cf}</Recommend Answer>", labels, digit)
part = st.one_of(noise, answer(), tool_call(), tool_call(), think(), recommend, st.just("<Snapshot>seen</Snapshot>"))
reply = st.builds(lambda parts, sep: sep.join(parts), st.lists(part, min_size=1, max_size=6),
                  st.sampled_from(["", " ", "\n"]))


@settings(max_examples=600, deadline=None)
@given(reply)
def test_card_acts_where_the_reference_acts(text):
    ref = reference_action(text)
    ours = read_reply(text, CARD_RULES, CARD.reply_rule)
    if ref is None:
        return  # the reference gives up here (all labels None); ours may read more, never less
    kind, value = ref
    assert ours.action == kind, (text, ref, ours)
    if kind == "answer":
        assert ours.labels == {d: v for d, v in value.items() if v in (0, 1, 2)}
    else:
        assert ours.call.indices == validated(*value)


def test_a_stray_answer_in_the_thinking_does_not_stop_the_tool_call():
    """The issue's reply: infer.py fetches frames 3 and 5; so do we, then take the answer."""
    stray = ('<Think>I will give my <answer> after looking closer.</Think><tool_call>{"name": "select_frames", '
             '"arguments": {"frame_indices": [3, 5]}}</tool_call>')
    assert reference_action(stray) == ("tool_call", ("select_frames", [3, 5]))
    backend = ScriptedBackend([stray, "<Answer>TA=1, VQ=2, MQ=0, OA=1</Answer>"])
    d = Dialogue(CARD, [random_grid(1, 40), random_grid(2, 50)], "a cat")
    run_dialogues(backend, [backend.new_session()], [d])
    assert [t.action for t in d.outcome.turns] == ["tool_call", "answer"]
    assert d.outcome.turns[0].requested == (3, 5) and d.outcome.reason is None
    assert d.outcome.labels == {"TA": 1, "VQ": 2, "MQ": 0, "OA": 1}


def test_card_order_beyond_the_reference():
    """Where infer.py gives up, a closed answer with a label, then a tool call, then any answer block."""
    call = "<tool_call>{'name': 'select_frames', 'arguments': {'frame_indices': [4]}}</tool_call>"  # JSON slip
    assert read_reply("<Think><answer> later</Think>" + call, CARD_RULES).call.indices == (4,)
    assert read_reply("<final answer>TA=2</final answer>" + call, CARD_RULES).labels == {"TA": 2}
    assert read_reply("<Answer>TA = 1, VQ : 2", CARD_RULES).labels == {"TA": 1, "VQ": 2}  # cut off, no call
    assert read_reply("<Answer></Answer> nothing else", CARD_RULES).action == "answer"  # partial, no label
    # the first closed answer block is the one infer.py reads
    assert read_reply("<Answer>TA=1</Answer><Answer>TA=2</Answer>", CARD_RULES).labels == {"TA": 1}


TRAINING = Profile.load("training")
TRAINING_RULES = CallRules("select_frames", "target_frames", 1, 96, 8, "refuse", "refuse", "keep", "strict")
T_CALL = '<tool_call>\n{"name": "select_frames", "arguments": {"target_frames": [3, 60]}}\n</tool_call>'


def training(text):
    return read_reply(text, TRAINING_RULES, TRAINING.reply_rule)


def test_training_serves_a_call_over_an_answer_unless_the_reply_is_a_final_answer():
    rec = "<synthesis>s</synthesis>\n<think>t <Answer>TA=1, VQ=1, MQ=1, OA=1</Answer></think>" \
          "<recommend answer>TA=1, CF=2</recommend answer>"
    r = training(rec + T_CALL)
    assert r.action == "tool_call" and r.call.indices == (3, 60) and r.recommendation["confidence"] == 2
    # process() takes the final-answer word set only when no recommend set is there: the call is dropped
    r = training("<synthesis>s</synthesis><think>t</think><final answer>TA=2, VQ=2, MQ=2, OA=2</final answer>"
                 + T_CALL)
    assert r.action == "answer" and r.labels == {"TA": 2, "VQ": 2, "MQ": 2, "OA": 2}
    # a recommend set with no call: process() fails, the episode ends with no answer
    assert training(rec).action == "answer"  # the answer in the thinking is all that is left
    assert training("<synthesis>s</synthesis><think>t</think><recommend answer>TA=1</recommend answer>"
                    ).action == "none"


def test_training_reads_the_last_call_before_the_first_close():
    r = training("<Think>t</Think><tool_call>oops <tool_call>" + T_CALL[len("<tool_call>"):] + T_CALL)
    assert r.action == "tool_call" and r.call.indices == (3, 60)
    # an unclosed call does not end in </tool_call>: training stops there
    assert training("<Think>t</Think>" + T_CALL[:-len("</tool_call>")]).action == "none"
    assert training("<Think>t</Think><tool_call>{bad json}</tool_call>").call.refusal == "error"


def test_training_dialogue_follows_the_call_not_the_stray_answer():
    stray = "<Think>I will give my <answer> after looking closer.</Think>" + T_CALL
    backend = ScriptedBackend([stray, "<Answer>TA=1, VQ=2, MQ=0, OA=1</Answer>"])
    d = Dialogue(TRAINING, [random_grid(1, 60), random_grid(2, 60)], "a cat")
    run_dialogues(backend, [backend.new_session()], [d])
    assert [t.action for t in d.outcome.turns] == ["tool_call", "answer"] and d.outcome.reason is None
