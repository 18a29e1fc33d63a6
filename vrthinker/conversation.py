"""The turn loop: ask, parse, fetch the frames asked for, ask again, until an answer or a limit."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from .backends.base import Session
from .parsing import final_reasoning, labels_or_missing, parse_answer, parse_tool_call
from .protocol import Conversation, Profile
from .verdict import DIMENSIONS, REASONS, Turn


@dataclass(frozen=True)
class Outcome:
    labels: dict[str, int | None]
    reason: str | None
    detail: str
    reasoning: str
    turns: tuple[Turn, ...]


def converse(session: Session, profile: Profile, grids: Sequence, prompt: str,
             max_turns: int | None = None, max_new_tokens: int | None = None) -> Outcome:
    """Run one conversation under `profile` and say how it ended."""
    max_turns = max_turns or profile.max_turns
    max_new_tokens = max_new_tokens or profile.max_new_tokens
    conv = Conversation(profile, prompt, grids)
    turns: list[Turn] = []
    new_images = conv.initial_refs
    for k in range(max_turns):
        t0 = time.perf_counter()
        reply = session.generate(conv.messages, conv.pil_images, max_new_tokens)
        seconds = reply.seconds or time.perf_counter() - t0
        conv.add_reply(reply.text)
        base = dict(index=k, reply=reply.text, new_images=new_images, rendered=reply.rendered,
                    new_tokens=reply.new_tokens, prefill_tokens=reply.prefill_tokens,
                    reused_tokens=reply.reused_tokens, stopped=reply.stopped, seconds=seconds)

        answer = parse_answer(reply.text)
        if answer:
            turns.append(Turn(action="answer", **base))
            labels = labels_or_missing(answer)
            missing = [d for d in DIMENSIONS if labels[d] is None]
            reason = "partial_answer" if missing else None
            detail = f"no label for {', '.join(missing)}" if missing else ""
            return Outcome(labels, reason, detail, final_reasoning(reply.text), tuple(turns))

        call = parse_tool_call(reply.text, profile.tool_name, profile.tool_argument,
                               profile.grid_size, profile.max_indices_per_call)
        if call is None or not call.indices:
            action = "none" if call is None else "malformed_tool_call"
            turns.append(Turn(action=action, dropped=call.dropped if call else (), **base))
            if reply.stopped == "length":
                reason, detail = "token_limit", f"reply {k + 1} hit the {max_new_tokens}-token limit"
            elif call is None:
                reason, detail = "no_answer", REASONS["no_answer"]
            else:
                reason, detail = "malformed_tool_call", f"tool call of turn {k + 1}: {call.error}"
            return Outcome(labels_or_missing(None), reason, detail, final_reasoning(reply.text),
                           tuple(turns))

        turns.append(Turn(action="tool_call", requested=call.indices, dropped=call.dropped, **base))
        if k + 1 < max_turns:  # frames for a call that can no longer be answered are not fetched
            new_images = conv.add_tool_response(call.indices)
    return Outcome(labels_or_missing(None), "turn_limit",
                   f"no answer within {max_turns} turns", final_reasoning(turns[-1].reply), tuple(turns))
