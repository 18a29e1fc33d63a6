"""The one narrow interface every conversational judge backend implements."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence


@dataclass(frozen=True)
class Reply:
    """One generated assistant turn and what it cost."""

    text: str
    new_tokens: int = 0
    stopped: str = "eos"  # "eos" | "length"
    rendered: str | None = None  # the whole conversation as the chat template rendered it
    prefill_tokens: int = 0  # prompt tokens run through the model this turn
    reused_tokens: int = 0  # prompt tokens served from the key/value cache of earlier turns
    seconds: float = 0.0
    prompt_tokens: int | None = None  # our own count of the rendered prompt (served backends)
    server_prompt_tokens: int | None = None  # the server's count of it (usage.prompt_tokens)
    # offset in `text` of each label-able digit -> ({"1", "2", "0"} probabilities renormalised, their mass in
    # the vocabulary), as vrthinker.probabilities reads them; None: this backend gave no probabilities
    digits: Mapping[int, tuple[Mapping[str, float], float]] | None = None
    no_probabilities: str = ""  # why `digits` is None, where the backend knows (e.g. the server sent no logprobs)
    refused: str = ""  # set when a server refused this turn's prompt as past its context length: no reply came


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding for one conversation (a session without it decodes greedily, the judge's way):
    a temperature, and a seed from which each turn draws its own, so one seed gives one conversation."""

    temperature: float
    seed: int

    def turn_seed(self, turn: int) -> int:
        """The seed of the conversation's turn `turn` (0-based)."""
        return (self.seed * 1_000_003 + turn) % 2 ** 31


class Session(Protocol):
    """One conversation. Each call gets the whole conversation so far; a session may cache its prefix."""

    def generate(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply: ...

    # optional: `set_sampling(Sampling | None)` before the first turn, for backends that can sample


class Backend(Protocol):
    name: str
    model_id: str

    def new_session(self) -> Session: ...
