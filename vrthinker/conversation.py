"""The turn loop: ask, parse, fetch the frames asked for, ask again, until an answer or a limit.

A `Dialogue` is one conversation as a state machine (`request` -> backend -> `receive`), so several
conversations (e.g. both orders of a pair) can be stepped together and batched by the backend.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from vrthinker.backends.base import Reply, Session
from vrthinker.parsing import CallRules, final_reasoning, labels_or_missing, read_reply, recommendation_positions
from vrthinker.probabilities import at_positions
from vrthinker.protocol import Conversation, Profile, fill
from vrthinker.verdict import DIMENSIONS, REASONS, Turn


@dataclass(frozen=True)
class Outcome:
    labels: dict[str, int | None]
    reason: str | None
    detail: str
    reasoning: str
    turns: tuple[Turn, ...]
    recommendation: dict | None = None  # the last interim <Recommend Answer> (labels, confidence), if any
    probabilities: dict | None = None  # {dimension: {"1", "2", "0": p}} at the final answer's label digits
    mass: dict | None = None
    no_probabilities: str = ""  # why there are none, where the backend said
    refused: bool = False  # the server refused a prompt as past its context length: not the model's answer


class Dialogue:
    """One conversation under a profile; `outcome` is set once it has ended."""

    def __init__(self, profile: Profile, grids: Sequence, prompt: str, max_turns: int | None = None,
                 max_new_tokens: int | None = None):
        self.profile = profile
        self.max_turns = max_turns or profile.max_turns
        self.max_new_tokens = max_new_tokens or profile.max_new_tokens
        self.conv = Conversation(profile, prompt, grids)
        self.turns: list[Turn] = []
        self.outcome: Outcome | None = None
        self._new_images = self.conv.initial_refs
        low, high = profile.index_range
        self.rules = CallRules(profile.tool_name, profile.tool_argument, low, high, profile.max_indices_per_call,
                               profile.over_limit, profile.bad_index, profile.duplicates, profile.tool_json)

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def request(self) -> tuple[list[dict], list]:
        """What the model is asked now: messages and media (PIL images, protocol.Clip videos)."""
        return self.conv.request()

    def _end(self, labels, reason, detail, reply_text, reply: Reply | None = None) -> None:
        recs = [t.recommendation for t in self.turns if t.recommendation]
        last = self.turns[-1] if self.turns and self.turns[-1].action == "answer" else None
        self.outcome = Outcome(labels, reason, detail, final_reasoning(reply_text), tuple(self.turns),
                               recs[-1] if recs else None, last.probabilities if last else None,
                               last.mass if last else None, reply.no_probabilities if reply else "")

    def _over_context(self, reply: Reply) -> bool:
        limit = self.profile.max_context_tokens
        return bool(limit) and reply.prefill_tokens + reply.reused_tokens + reply.new_tokens > limit

    def receive(self, reply: Reply) -> None:
        """Take the model's reply to the last request: record it, then end or append the tool response."""
        k = len(self.turns)
        p = self.profile
        if reply.refused:  # no reply: the prompt passed the server's context length (as max_context_tokens here)
            self._end(labels_or_missing(None), "token_limit", f"turn {k + 1}: {reply.refused}",
                      self.turns[-1].reply if self.turns else "")
            self.outcome = replace(self.outcome, refused=True)
            return
        self.conv.add_reply(reply.text)
        reading = read_reply(reply.text, self.rules, p.reply_rule)
        rec = reading.recommendation
        base = {"index": k, "reply": reply.text, "new_images": self._new_images, "rendered": reply.rendered,
                "new_tokens": reply.new_tokens, "prefill_tokens": reply.prefill_tokens,
                "reused_tokens": reply.reused_tokens, "stopped": reply.stopped, "seconds": reply.seconds,
                "recommendation": rec, "prompt_tokens": reply.prompt_tokens,
                "server_prompt_tokens": reply.server_prompt_tokens}
        # the labels this turn wrote: its answer's, else its interim <Recommend Answer>'s
        positions = reading.positions if reading.action == "answer" else recommendation_positions(reply.text)
        base["probabilities"], base["mass"] = at_positions(positions, reply.digits)

        if reading.action == "answer":
            self.turns.append(Turn(action="answer", **base))
            labels = labels_or_missing(reading.labels)
            missing = [d for d in DIMENSIONS if labels[d] is None]
            self._end(labels, "partial_answer" if missing else None,
                      f"no label for {', '.join(missing)}" if missing else "", reply.text, reply)
            return

        call = reading.call
        replied = call is not None and not call.indices and p.bad_call == "reply"
        if call is None or not (call.indices or replied):
            action = "none" if call is None else "malformed_tool_call"
            self.turns.append(Turn(action=action, dropped=call.dropped if call else (), **base))
            if reply.stopped == "length":
                reason, detail = "token_limit", f"reply {k + 1} hit the {self.max_new_tokens}-token limit"
            elif call is None:
                reason, detail = "no_answer", REASONS["no_answer"]
                if rec:
                    detail = f"the model stopped with only a recommended answer ({_show(rec)})"
            else:
                reason, detail = "malformed_tool_call", f"tool call of turn {k + 1}: {call.error}"
            self._end(labels_or_missing(None), reason, detail, reply.text)
            return

        action = "tool_error" if replied else "tool_call"
        self.turns.append(Turn(action=action, requested=call.indices, dropped=call.dropped,
                               tool_error=call.error if replied else "", **base))
        if k + 1 >= self.max_turns:  # frames for a call that can no longer be answered are not fetched
            self._end(labels_or_missing(None), "turn_limit", f"no answer within {self.max_turns} turns",
                      reply.text)
            return
        if self._over_context(reply):
            self._end(labels_or_missing(None), "token_limit",
                      f"the conversation passed {p.max_context_tokens} tokens at turn {k + 1}", reply.text)
            return
        if replied:  # the profile answers a call it cannot serve with a message, as its training did
            self.conv.add_tool_message(fill(p.tool_messages[call.refusal], **p.values(n=call.asked)))
            self._new_images = ()
        else:
            self._new_images = self.conv.add_tool_response(call.indices)


def _show(rec: dict) -> str:
    parts = [f"{d}={v}" for d, v in rec["labels"].items()]
    if rec.get("confidence") is not None:
        parts.append(f"CF={rec['confidence']}")
    return ", ".join(parts)


def _timed(session: Session, messages, images, max_new_tokens: int) -> Reply:
    t0 = time.perf_counter()
    r = session.generate(messages, images, max_new_tokens)
    if not r.seconds:
        r = replace(r, seconds=time.perf_counter() - t0)
    return r


def run_dialogues(backend, sessions: Sequence[Session], dialogues: Sequence[Dialogue]) -> list[Outcome]:
    """Step several dialogues together; a backend with `generate_many` may batch each step."""
    batched = getattr(backend, "generate_many", None)
    for s, d in zip(sessions, dialogues):  # the profile's decoding settings, where a session takes them
        if d.profile.generation and hasattr(s, "set_generation"):
            s.set_generation(d.profile.generation)
    while True:
        live = [(s, d) for s, d in zip(sessions, dialogues) if not d.done]
        if not live:
            return [d.outcome for d in dialogues]
        requests = [d.request() for _, d in live]
        if batched is not None and len(live) > 1:
            replies = batched([s for s, _ in live], requests, [d.max_new_tokens for _, d in live])
        else:
            replies = [_timed(s, m, im, d.max_new_tokens) for (s, d), (m, im) in zip(live, requests)]
        for (_, d), r in zip(live, replies):
            d.receive(r)


def converse(session: Session, profile: Profile, grids: Sequence, prompt: str,
             max_turns: int | None = None, max_new_tokens: int | None = None) -> Outcome:
    """Run one conversation under `profile` and say how it ended."""
    d = Dialogue(profile, grids, prompt, max_turns, max_new_tokens)
    return run_dialogues(None, [session], [d])[0]
