"""A scripted backend: replies come from a list, not a model. Drives tests and offline demos."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from vrthinker.errors import ModelLoadError
from vrthinker.backends.base import Reply


class ScriptedSession:
    def __init__(self, replies: Sequence[str], render: Callable[[list[dict]], str] | None,
                 samples: Sequence[Sequence[str]] = ()):
        self._replies = list(replies)
        self._samples = [list(x) for x in samples]
        self.sampling = None
        self._render = render
        self.calls: list[tuple[list[dict], int]] = []  # (messages, image count) seen each turn
        self.media: list[list[Any]] = []  # the media themselves (PIL images, protocol.Clip) each turn
        self.generation: dict = {}  # decoding settings a profile asked for (recorded, not used)

    def set_generation(self, overrides: dict) -> None:
        self.generation = dict(overrides)

    def set_sampling(self, sampling) -> None:
        """A sampled conversation follows one of the backend's `samples` scripts, picked by the seed."""
        self.sampling = sampling
        if sampling is not None and self._samples:
            self._replies = self._samples[random.Random(sampling.seed).randrange(len(self._samples))]

    def generate(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply:
        self.calls.append(([dict(m) for m in messages], len(images)))
        self.media.append(list(images))
        turn = len(self.calls) - 1
        text = self._replies[turn] if turn < len(self._replies) else ""
        words = text.split()
        stopped = "eos"
        if len(words) > max_new_tokens:  # a crude token count: one word, one token
            text, stopped = " ".join(words[:max_new_tokens]), "length"
        rendered = self._render(messages) if self._render else None
        return Reply(text=text, new_tokens=min(len(words), max_new_tokens), stopped=stopped,
                     rendered=rendered)


class ScriptedBackend:
    """Answers turn k of every conversation with `replies[k]` (empty once they run out); a sampled
    conversation (`set_sampling`) follows one of `samples` (lists of replies) picked by its seed."""

    name = "scripted"

    def __init__(self, replies: Sequence[str], model_id: str = "scripted",
                 render: Callable[[list[dict]], str] | None = None, samples: Sequence[Sequence[str]] = ()):
        self.replies = list(replies)
        self.samples = [list(x) for x in samples]
        self.model_id = model_id
        self.render = render
        self.sessions: list[ScriptedSession] = []

    def config(self) -> dict:
        """What names this backend's replies: its name and model id (the replies file's name, as a hub id
        names a model: a run with other replies under the same name resumes from the store)."""
        return {"backend": self.name, "model_id": self.model_id}

    @classmethod
    def from_pretrained(cls, model: str, **_: Any) -> "ScriptedBackend":
        """`model` is a JSON file holding a list of reply strings."""
        try:
            replies = json.loads(Path(model).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"scripted backend needs a JSON list of replies: {model}: {e}") from None
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise ModelLoadError(f"scripted backend needs a JSON list of reply strings: {model}")
        return cls(replies, model_id=f"scripted:{Path(model).name}")

    def resolve_profile(self, requested: str | None):
        """Replies from a file have no checkpoint to recognise: --protocol, else the default profile."""
        from vrthinker.protocol import resolve

        return resolve(None, requested)

    def new_session(self) -> ScriptedSession:
        s = ScriptedSession(self.replies, self.render, self.samples)
        self.sessions.append(s)
        return s
