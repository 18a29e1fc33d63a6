"""The longest conversation each profile can have, in tokens: what vLLM's --max-model-len must hold.

vLLM refuses a request whose prompt plus `max_tokens` passes --max-model-len (HTTP 400), so the length needed
is the largest (prompt of a turn + the profile's max_new_tokens) over a conversation that runs to the limits
(see _Session): the most frames every turn, replies as long as the profile lets them be, until the turn limit
(card: 6, training: 4) or the context limit (training: no tool call is served past max_context_tokens). Tokens
are counted with the real Qwen2.5-VL tokenizer and image-processor config (tests/fixtures/qwen2_5_vl) on real
decoded clips, the way the judge renders each turn (vrthinker.backends.openai.load_renderer).

    python scripts/context_length.py [--size 1280x720] [--reply-tokens N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "qwen2_5_vl"


class _Session:
    """Replies that run to the limits, with each turn's prompt counted by the renderer (so limits act on it).

    Reply k is a tool call for the most frames a call may fetch (distinct frames each turn; the last turn an
    answer), padded to max_new_tokens, or, under a context limit, to exactly what keeps the next tool call
    served (prompt + reply = max_context_tokens): each longer reply makes every later prompt longer.
    """

    def __init__(self, profile, renderer, reply_tokens: int | None, prompts: list[int]):
        self.profile, self.renderer, self.reply_tokens, self.prompts = profile, renderer, reply_tokens, prompts

    def set_generation(self, overrides: dict) -> None:
        pass

    def generate(self, messages, images, max_new_tokens):
        from vrthinker.backends.base import Reply

        p = self.profile
        prompt = len(self.renderer.ids(messages, images))
        self.prompts.append(prompt)
        turn = len(self.prompts) - 1
        target = self.reply_tokens or max_new_tokens
        if p.max_context_tokens:
            target = min(target, p.max_context_tokens - prompt)
        if turn + 1 < p.max_turns:
            k = p.max_indices_per_call
            low, high = p.index_range
            call = {"name": p.tool_name,
                    "arguments": {p.tool_argument: [low + (turn * k + i) % (high - low + 1) for i in range(k)]}}
            body = f"<tool_call>\n{json.dumps(call)}\n</tool_call>"
        else:
            body = "<answer>TA=1, VQ=1, MQ=1, OA=1</answer>"
        text = _padded(self.renderer, body, target)
        return Reply(text=text, new_tokens=self.renderer.count(text), prefill_tokens=prompt)


def _padded(renderer, body: str, tokens: int) -> str:
    """`body` after a <think> block of filler: the whole reply `tokens` long, or the shortest above."""
    words = 1
    while True:
        text = "<think>" + " frame" * words + "</think>\n" + body
        n = renderer.count(text)
        if n >= tokens:
            return text
        words += max(1, tokens - n)


def longest(name: str, size: tuple[int, int], reply_tokens: int | None, renderer, clips) -> dict:
    from vrthinker.conversation import Dialogue, run_dialogues
    from vrthinker.judge import load_videos
    from vrthinker.protocol import Profile

    profile = Profile.load(name)
    n = reply_tokens or profile.max_new_tokens
    prompts: list[int] = []
    session = _Session(profile, renderer, reply_tokens, prompts)
    dialogue = Dialogue(profile, load_videos(profile, *clips), "a red fox runs through deep snow at dawn")

    class Backend:
        name = "count"

        def new_session(self):
            return session

    [outcome] = run_dialogues(Backend(), [session], [dialogue])
    need = max(prompts) + profile.max_new_tokens  # vLLM checks prompt + max_tokens of every request
    return {"profile": profile.version, "video": f"{size[0]}x{size[1]}", "reply_tokens": n,
            "turns": len(prompts), "ended": outcome.reason or "answer", "prompts": prompts,
            "max_new_tokens": profile.max_new_tokens, "need": need}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1280x720", help="the clips' WxH (the training profile keeps the aspect)")
    p.add_argument("--reply-tokens", type=int, default=None, help="tokens per reply (default: the profile's limit)")
    p.add_argument("--profiles", nargs="+", default=["card", "training"])
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from vrthinker.backends.openai import load_renderer
    from vrthinker_eval.synth import render_scene, write_video

    w, h = (int(x) for x in a.size.lower().split("x"))
    renderer = load_renderer([str(FIXTURES)])[0]
    with tempfile.TemporaryDirectory() as d:
        clips = [write_video(Path(d) / f"{k}.mp4", render_scene(kind, w, h, 48, seed=k), fps=24)
                 for k, kind in enumerate(("shapes", "pan"))]
        for name in a.profiles:
            r = longest(name, (w, h), a.reply_tokens, renderer, clips)
            print(f"{r['profile']}: video {r['video']}, replies up to {r['reply_tokens']} tokens: {r['turns']} turns "
                  f"(ended: {r['ended']}); prompt per turn {r['prompts']}; longest prompt {max(r['prompts']):,} "
                  f"+ max_new_tokens {r['max_new_tokens']:,} = {r['need']:,} tokens")


if __name__ == "__main__":
    main()
