"""Label probabilities in-process: what a verdict records equals a separate full forward pass (tiny real model)."""
import pytest
import torch
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from vrthinker.backends.hf import HFBackend
from vrthinker.conversation import converse
from vrthinker.judge import Judge
from vrthinker.protocol import Conversation, Profile
from vrthinker.testing import ForcedReplies, random_grid

pytestmark = pytest.mark.slow
ANSWER = "<Snapshot>ok</Snapshot><Think>v2 is steadier</Think><Answer>TA=1, VQ=2, MQ= 0, OA=2</Answer>"


def forced_backend(hf_backend, replies):
    """A backend sharing the tiny model whose every conversation writes `replies[k]` on its turn k."""
    tok = hf_backend.processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    b = HFBackend(hf_backend.model, hf_backend.processor, "tiny")
    turns: dict[int, int] = {}

    def hook(sessions, requests):
        k = turns.get(id(sessions[0]), 0)  # a batch's rows are all at the same turn
        for s in sessions:
            turns[id(s)] = k + 1
        return {"logits_processor": LogitsProcessorList([ForcedReplies(tok, [replies[k]], eos_id=eos)])}

    b.generate_hook = hook
    return b


def reference(backend, messages, images, reply: str, penalty: float):
    """P over "1", "2", "0" (renormalised) and their vocabulary mass at each digit of `reply`, from one full
    forward pass over prompt + reply in fp32, with the repetition penalty applied as generate does."""
    proc, m = backend.processor, backend.model
    rendered = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[rendered], images=images, return_tensors="pt")
    n = inputs["input_ids"].shape[1]
    reply_ids = proc.tokenizer(reply, add_special_tokens=False)["input_ids"]
    ids = torch.cat([inputs["input_ids"], torch.tensor([reply_ids])], dim=1)
    with torch.no_grad():
        logits = m(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=inputs["pixel_values"],
                   image_grid_thw=inputs["image_grid_thw"], mm_token_type_ids=(ids == m.config.image_token_id).int()
                   ).logits.float()
    cols = [proc.tokenizer.convert_tokens_to_ids(k) for k in ("1", "2", "0")]
    out = {}
    for k, t in enumerate(reply_ids):
        if t not in cols:
            continue
        scores = logits[:, n + k - 1].clone()
        if penalty != 1.0:
            scores = RepetitionPenaltyLogitsProcessor(penalty)(ids[:, :n + k], scores)
        p = torch.softmax(scores, dim=-1)[0, cols]
        offset = len(proc.tokenizer.decode(reply_ids[:k + 1])) - 1
        out[offset] = ((p / p.sum()).tolist(), float(p.sum()))
    return out


def test_recorded_probabilities_equal_a_full_forward_pass(hf_backend):
    backend = forced_backend(hf_backend, [ANSWER])
    profile = Profile.load("card")
    grids = [random_grid(1), random_grid(2)]
    out = converse(backend.new_session(), profile, grids, "a red ball bounces")
    assert out.labels == {"TA": 1, "VQ": 2, "MQ": 0, "OA": 2}
    conv = Conversation(profile, "a red ball bounces", grids)
    ref = reference(backend, conv.messages, conv.pil_images, ANSWER, backend.generation_config.repetition_penalty)
    raw = reference(backend, conv.messages, conv.pil_images, ANSWER, 1.0)
    positions = {d: ANSWER.index(f"{d}=") + len(f"{d}=") for d in ("TA", "VQ", "OA")}
    positions["MQ"] = ANSWER.index("MQ= ") + 4
    assert set(out.probabilities) == set(positions) == set(out.mass)
    moved = 0.0
    for d, at in positions.items():
        want, mass = ref[at]
        got = out.probabilities[d]
        assert abs(sum(got.values()) - 1) < 1e-9
        assert [got["1"], got["2"], got["0"]] == pytest.approx(want, abs=1e-5)
        assert out.mass[d] == pytest.approx(mass, rel=1e-4, abs=1e-9)
        moved = max(moved, max(abs(a - b) for a, b in zip(want, raw[at][0])))
    # the repetition penalty moved them: what is recorded is what greedy decoding chose from, not the raw model
    assert moved > 1e-4
    turn = out.turns[-1]
    assert turn.probabilities == out.probabilities and turn.mass == out.mass


def test_tool_turns_record_no_answer_and_both_orders_batch_the_same(hf_backend, clips):
    tool = '<Think>look</Think><tool_call>{"name": "select_frames", "arguments": {"frame_indices": [12, 3]}}' \
           '</tool_call>'
    backend = forced_backend(hf_backend, [tool, ANSWER])
    judge = Judge(backend, "card")
    batched = judge.compare(clips["a"], clips["b"], "shapes move", orders="both")
    backend.batch = False
    sequential = judge.compare(clips["a"], clips["b"], "shapes move", orders="both")
    for v in (batched, sequential):
        assert all(o.turns[0].probabilities is None for o in v.per_order)  # a tool call writes no labels
        assert all(set(o.probabilities) == {"TA", "VQ", "MQ", "OA"} for o in v.per_order)
    for a, b in zip(batched.per_order, sequential.per_order):
        for d in a.probabilities:
            assert [a.probabilities[d][k] for k in "120"] == pytest.approx([b.probabilities[d][k] for k in "120"],
                                                                          abs=1e-5)
    d = batched.to_dict()
    assert set(d["probabilities"]) == {"TA", "VQ", "MQ", "OA"} and set(d["mass"]) == set(d["probabilities"])
    assert d["per_order"][0]["turns"][-1]["probabilities"]["OA"] == pytest.approx(
        dict(batched.per_order[0].probabilities["OA"]))
