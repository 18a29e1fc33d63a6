"""Label probabilities over a server: logprobs asked for, digits read however the tokens split, none invented."""
from __future__ import annotations

import json
import math

import pytest

from fake_openai import reply_json

from vrthinker.backends.openai.logprobs import read_digits

pytestmark = pytest.mark.slow


def entry(token: str, p: float, alts: dict[str, float] | None = None, with_bytes: bool = False) -> dict:
    top = [{"token": t, "logprob": math.log(q)} for t, q in {token: p, **(alts or {})}.items()]
    e = {"token": token, "logprob": math.log(p), "top_logprobs": top}
    if with_bytes:
        e["bytes"] = list(token.encode("utf-8"))
    return e


# "=1" joined, " 2" after a space, "0" alone, and OA's "1" whose alternatives are partly outside the top 20
TOKENS = [entry("<Answer>", 0.9), entry("TA", 0.9), entry("=1", 0.6, {"=2": 0.2, "=0": 0.1, "=": 0.05}),
          entry(",", 0.9), entry(" VQ", 0.9), entry("=", 0.9), entry(" 2", 0.5, {" 1": 0.3, "2": 0.1}),
          entry(",", 0.9), entry(" MQ", 0.9), entry("=", 0.9), entry("0", 0.7, {"1": 0.1, "2": 0.1}),
          entry(",", 0.9), entry(" OA", 0.9), entry("=", 0.9), entry("1", 0.8, {"x": 0.1}), entry("</Answer>", 0.9)]
TEXT = "".join(e["token"] for e in TOKENS)


def reply_with_logprobs(content: list[dict], text: str | None = None) -> str:
    text = "".join(e["token"] for e in content) if text is None else text
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                                    "logprobs": {"content": content}}],
                       "usage": {"prompt_tokens": 100, "completion_tokens": len(content)}})


def _judge(url):
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.judge import Judge

    b = OpenAIBackend([url], backoff_s=0.01)
    return Judge(b, b.resolve_profile("card")[0], max_turns=1, max_new_tokens=64)


def test_digits_are_read_however_the_tokens_split(fake, clips):
    f = fake([(200, reply_with_logprobs(TOKENS))])
    v = _judge(f.url).compare(clips["a"], clips["b"], "p")
    assert dict(v.labels) == {"TA": 1, "VQ": 2, "MQ": 0, "OA": 1}
    assert f.calls[0]["logprobs"] is True and f.calls[0]["top_logprobs"] == 20
    p = v.probabilities
    assert p["TA"] == pytest.approx({"1": 0.6 / 0.9, "2": 0.2 / 0.9, "0": 0.1 / 0.9})
    assert v.mass["TA"] == pytest.approx(0.9)
    # " 2" vs " 1": same leading space; "2" without it is another token, not this position's alternative
    assert p["VQ"] == pytest.approx({"1": 0.3 / 0.8, "2": 0.5 / 0.8, "0": 0.0})
    assert p["MQ"] == pytest.approx({"1": 0.1 / 0.9, "2": 0.1 / 0.9, "0": 0.7 / 0.9})
    # "2" and "0" not among the top: counted as 0, the mass is a lower bound
    assert p["OA"] == pytest.approx({"1": 1.0, "2": 0.0, "0": 0.0}) and v.mass["OA"] == pytest.approx(0.8)
    assert "no_probabilities" not in v.extra


def test_a_server_without_logprobs_gives_labels_and_says_so(fake, clips):
    f = fake([(200, reply_json("<Answer>TA=1, VQ=2, MQ=0, OA=1</Answer>"))])
    v = _judge(f.url).compare(clips["a"], clips["b"], "p")
    assert v.complete and v.probabilities is None and v.to_dict()["probabilities"] is None
    assert "no logprobs" in v.extra["no_probabilities"]


def test_a_server_refusing_logprobs_is_asked_again_without(fake, clips):
    f = fake([(400, '{"error": {"message": "logprobs is not supported by this server"}}'),
              (200, reply_json("<Answer>TA=1, VQ=2, MQ=0, OA=1</Answer>"))])
    judge = _judge(f.url)
    v = judge.compare(clips["a"], clips["b"], "p")
    assert v.complete and v.probabilities is None and "refused logprobs" in v.extra["no_probabilities"]
    assert "logprobs" in f.calls[0] and "logprobs" not in f.calls[1]
    judge.compare(clips["b"], clips["a"], "p")
    assert "logprobs" not in f.calls[2]  # not asked again of this backend


def test_tokens_that_split_a_character_are_placed_by_their_bytes():
    text = "é <Answer>OA=2</Answer>"
    b = "é".encode()
    content = [{"token": "\ufffd", "bytes": [b[0]], "logprob": -0.1, "top_logprobs": []},
               {"token": "\ufffd", "bytes": [b[1]], "logprob": -0.1, "top_logprobs": []},
               *[entry(t, 0.9, with_bytes=True) for t in (" <Answer>", "OA", "=")],
               entry("2", 0.6, {"1": 0.3}, with_bytes=True), entry("</Answer>", 0.9, with_bytes=True)]
    digits, why = read_digits(text, {"content": content})
    at = text.index("=2") + 1
    assert why == "" and set(digits) == {at} and digits[at][0] == pytest.approx({"1": 1 / 3, "2": 2 / 3, "0": 0.0})
    none, why = read_digits("other text", {"content": content})
    assert none is None and "do not add up" in why


def test_transformers_serve_takes_the_request_and_sends_no_logprobs(tiny_model_dir):
    """A real server: `transformers serve` accepts logprobs in the request but returns none; the reply says so."""
    from test_openai_backend import Served

    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.protocol import Conversation, Profile
    from vrthinker.testing import random_grid

    served = Served(tiny_model_dir).start()
    try:
        backend = OpenAIBackend([served.url], backoff_s=0.01)
        conv = Conversation(Profile.load("card"), "a red ball", [random_grid(1, side=56), random_grid(2, side=56)])
        reply = backend.new_session().generate(*conv.request(), 4)
        assert reply.new_tokens == 4 and reply.digits is None
        assert reply.no_probabilities == "the server sent no logprobs for this reply"
    finally:
        served.stop()
