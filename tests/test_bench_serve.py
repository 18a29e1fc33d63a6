"""scripts/bench_serve.py's forcing of served replies into the in-process HF backend (the same work)."""
import pytest

from bench_serve import ForceServed, body_key, request_key
from vrthinker.backends.hf import HFBackend
from vrthinker.backends.openai import openai_messages
from vrthinker.conversation import Dialogue
from vrthinker.judge import Judge

pytestmark = pytest.mark.slow
TOOL = '<Think>%s</Think><tool_call>{"name": "select_frames", "arguments": {"frame_indices": %s}}</tool_call>'
ANSWER = "<Snapshot>%s</Snapshot><Think>fine</Think><Answer>TA=%d, VQ=2, MQ=1, OA=%d</Answer>"


def char_ids(tok, text: str, eos: int) -> list[int]:
    """Token ids of `text` one character at a time: not how the tokenizer splits it, as a server under
    structured outputs may emit, so a forcing that re-tokenized the text would give fewer tokens."""
    ids = [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]
    assert len(ids) > len(tok(text, add_special_tokens=False)["input_ids"])
    return ids + [eos]


def turn1(judge, grids, prompt):
    return Dialogue(judge.profile, list(grids), prompt, judge.max_turns, judge.max_new_tokens).request()


def test_forcing_reproduces_the_replies_exactly_and_the_turns(tiny_model_dir, clips):
    backend = HFBackend.from_pretrained(str(tiny_model_dir), device="cpu")
    tok = backend.processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    judge = Judge(backend, "card", max_turns=3, max_new_tokens=160)
    g = judge.load_videos(clips["a"], clips["b"])
    prompt = "shapes move"
    scripts = {  # both orders, replies of different lengths: the turn-1 batch forces each row its own
        "forward": [TOOL % ("look closer at the start", [3, 90]), TOOL % ("and the end", [120, 7]),
                    ANSWER % ("two shapes", 1, 2)],
        "reverse": [TOOL % ("the middle", [64, 65]), TOOL % ("again", [10, 11]), ANSWER % ("a pan", 2, 1)],
    }
    table, expected = {}, {}
    for order, grids in (("forward", g), ("reverse", g[::-1])):
        messages, media = turn1(judge, grids, prompt)
        pixels, turn = request_key(messages, media)
        assert turn == 1
        ids = [char_ids(tok, r, eos) for r in scripts[order]]
        expected[order] = ids
        # turn 1's prompt as the server would report it: the forward one right, the reverse one wrong
        first = backend.new_session().prepare(messages, media)["ids"] if order == "forward" else [1, 2, 3]
        for k, reply in enumerate(ids):
            table[(pixels, k + 1)] = (first if k == 0 else None, reply)
    forced = ForceServed(table, eos)
    backend.generate_hook = forced.hook
    v = judge.compare(clips["a"], clips["b"], prompt, orders="both")

    for order, verdict in zip(("forward", "reverse"), v.per_order):
        turns = verdict.turns
        assert [t.action for t in turns] == ["tool_call", "tool_call", "answer"]
        assert [t.reply for t in turns] == scripts[order]
        assert [t.new_tokens for t in turns] == [len(ids) for ids in expected[order]]  # the very ids, eos included
        assert all(t.stopped == "eos" for t in turns)
    assert v.per_order[0].frames_requested == ((3, 90), (120, 7))
    assert dict(v.per_order[0].labels) == {"TA": 1, "VQ": 2, "MQ": 1, "OA": 2}
    assert dict(v.per_order[1].labels) == {"TA": 2, "VQ": 2, "MQ": 1, "OA": 1}
    assert v.per_order[1].turns[1].reused_tokens > 0  # later turns still reuse the KV cache
    assert forced.calls == 5  # turn 1 batched (both orders in one generate), then one by one
    assert (forced.prompts_equal, forced.prompts_differ) == (1, 1)


def test_a_request_the_served_run_never_made_is_an_error(hf_backend, clips):
    judge = Judge(hf_backend, "card", max_turns=2, max_new_tokens=8)
    hf_backend.generate_hook = ForceServed({}, 0).hook
    try:
        with pytest.raises(KeyError):
            judge.compare(clips["a"], clips["b"], "shapes move")
    finally:
        hf_backend.generate_hook = None


def test_the_served_body_has_the_in_process_key(hf_backend, clips):
    judge = Judge(hf_backend, "card", max_turns=3, max_new_tokens=8)
    g = judge.load_videos(clips["a"], clips["b"])
    keys = []
    for grids in (g, g[::-1]):
        d = Dialogue(judge.profile, list(grids), "shapes move", 3, 8)
        for _ in range(2):
            messages, media = d.request()
            body = {"model": "m", "messages": openai_messages(messages, media, False)}
            assert body_key(body) == request_key(messages, media)
            keys.append(request_key(messages, media))
            d.conv.add_reply(TOOL % ("x", [5, 6]))
            d.conv.add_tool_response([5, 6])
    assert [k[1] for k in keys] == [1, 2, 1, 2]
    assert keys[0][0] == keys[1][0] != keys[2][0] == keys[3][0]  # one key per conversation, orders apart
    exchange = ({"messages": body["messages"]}, {"prompt_token_ids": [7], "choices": [{"token_ids": [1, 2]}]})
    assert ForceServed.from_served([exchange], 0).table == {keys[3]: ([7], [1, 2])}
    with pytest.raises(ValueError, match="return_token_ids"):
        ForceServed.from_served([(exchange[0], {"choices": [{"message": {}}]})], 0)
