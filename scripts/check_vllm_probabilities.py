"""Check the label probabilities a vLLM server gives against the in-process ones, for the same conversation.

The model is a tiny random Qwen2.5-VL that vLLM's CPU build can run (head_dim 32), with the lm_head rows of
"0", "1" and "2" pointed at the hidden states of this conversation's answer digits (plus a little noise
each), so the three label tokens hold about half the mass, sit in the top 20 logprobs and split unevenly.
vLLM answers the card profile's first turn under a structured-output regex (an <Answer> with four labels,
greedy); the reply's token ids (`return_tokens_as_token_ids`) are then forced through the in-process HF
backend, and at every label digit the two distributions over "1", "2", "0" are compared. vLLM's logprobs
are the raw model distribution (its default logprobs mode), so the HF run uses repetition_penalty 1.0,
where processed = raw.

    python scripts/check_vllm_probabilities.py --make-model DIR
    vllm serve DIR --dtype float32 --port PORT      (a CPU build does here)
    python scripts/check_vllm_probabilities.py --server http://127.0.0.1:PORT/v1 --model DIR [--dtype float32]

Last line: `max_abs_diff=X positions=N vllm_dtype=D hf_dtype=float32`.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

ANSWER = r"<Answer>TA=[012], VQ=[012], MQ=[012], OA=[012]</Answer>"


def conversation():
    """The check's conversation: the card profile's first turn over two small random frame grids."""
    from vrthinker.protocol import Conversation, Profile
    from vrthinker.testing import random_grid

    grids = [random_grid(1, side=112), random_grid(2, side=112)]
    return Conversation(Profile.load("card"), "a red ball bounces", grids).request()


def make_model(out: Path) -> Path:
    """bench_serve's vLLM-sized tiny model, with the "0", "1", "2" rows of lm_head set to the direction of the
    hidden states at this conversation's answer digits (so they hold about half the mass) plus a little noise
    each (so their split is far from even)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from scripts.bench_serve import make_model as base

    base(out)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(out)
    messages, images = conversation()
    text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[text + "<Answer>TA=1, VQ=2, MQ=0, OA=1</Answer>"], images=images, return_tensors="pt")
    digits = proc.tokenizer.convert_tokens_to_ids(["0", "1", "2"])
    ids = inputs["input_ids"][0].tolist()
    with torch.no_grad():
        h = model(**inputs, output_hidden_states=True).hidden_states[-1][0]
    u = h[[k - 1 for k, t in enumerate(ids) if t in digits][-4:]].mean(0)
    g = torch.Generator().manual_seed(1)
    for i in digits:
        model.lm_head.weight.data[i] = 1.2 * u / u.norm() + 0.05 * torch.randn(u.shape[0], generator=g)
    model.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import LogitsProcessorList

    from vrthinker.backends.hf import HFBackend
    from vrthinker.backends.openai import OpenAIBackend
    from vrthinker.backends.openai.body import openai_messages
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make-model", type=Path)
    ap.add_argument("--server")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--dtype", default="float32", help="the dtype the server was started with (reported)")
    ap.add_argument("--penalty", type=float, default=1.0,
                    help="repetition_penalty asked of vLLM; the HF run reads its probabilities after the same one")
    a = ap.parse_args(argv)
    if a.make_model:
        print(make_model(a.make_model))
        return 0
    messages, images = conversation()
    served = OpenAIBackend([a.server], backoff_s=0.5)
    body = {"model": served.model_id, "messages": openai_messages(messages, images, served.caps["video"]),
            "max_tokens": 64, "temperature": 0, "logprobs": True, "top_logprobs": 20,
            "return_tokens_as_token_ids": True, "repetition_penalty": a.penalty,
            "structured_outputs": {"regex": ANSWER}}
    data, _ = served.post("/chat/completions", body)
    choice = data["choices"][0]
    content = choice["logprobs"]["content"]
    ids = [int(c["token"].split(":")[-1]) for c in content]
    hf = HFBackend.from_pretrained(str(a.model), device="cpu", dtype="float32")
    digit = {hf.label_ids[k]: k for k in ("1", "2", "0")}
    hf.generation_config.repetition_penalty = a.penalty

    class Force:
        def __init__(self):
            self.start = None

        def __call__(self, input_ids, scores):
            self.start = input_ids.shape[1] if self.start is None else self.start
            k = input_ids.shape[1] - self.start
            scores[:] = float("-inf")
            scores[:, ids[k] if k < len(ids) else sorted(hf.eos_ids)[0]] = 0.0
            return scores

    hf.generate_hook = lambda sessions, requests: {"logits_processor": LogitsProcessorList([Force()])}
    reply = hf.new_session().generate(messages, images, len(ids) + 1)
    tok = hf.processor.tokenizer
    worst, n = 0.0, 0
    print(f"reply: {reply.text!r}")
    for k, (t, c) in enumerate(zip(ids, content)):
        if t not in digit:
            continue
        raw = {digit[int(x["token"].split(":")[-1])]: math.exp(x["logprob"]) for x in c["top_logprobs"]
               if int(x["token"].split(":")[-1]) in digit}
        total = sum(raw.values())
        theirs = {key: raw.get(key, 0.0) / total for key in ("1", "2", "0")}
        at = len(tok.decode(ids[:k + 1], skip_special_tokens=True)) - 1
        ours, mass = reply.digits[at]
        diff = max(abs(ours[key] - theirs[key]) for key in theirs)
        worst, n = max(worst, diff), n + 1
        print(f"token {k}: vLLM {theirs} (mass {total:.4f}); in-process {ours} (mass {mass:.4f}); diff {diff:.2e}")
    print(f"max_abs_diff={worst:.3e} positions={n} vllm_dtype={a.dtype} hf_dtype={str(torch.float32)[6:]} "
          f"repetition_penalty={a.penalty}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
