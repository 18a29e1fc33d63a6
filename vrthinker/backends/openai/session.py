"""One conversation with the servers: its turns as requests, the replies as the judge's Reply."""
from __future__ import annotations

import json
import re
import time
from typing import Any, Sequence

from vrthinker.backends.base import Reply
from vrthinker.backends.openai.body import openai_messages
from vrthinker.backends.openai.logprobs import read_digits, request_fields
from vrthinker.backends.openai.pool import Server
from vrthinker.backends.openai.tokens import is_clip
from vrthinker.errors import ServerError, UsageError

# how a server words a prompt past its context length in an HTTP 400 (vLLM's --max-model-len, SGLang, ...)
_OVERFLOW = re.compile(r"context length|context window|max_model_len|max-model-len|is too long|exceeds? the maximum|"
                       r"longer than the maximum", re.IGNORECASE)


def context_overflow(error: str) -> str | None:
    """The server's own words when its HTTP 400 says the prompt passed its context length, else None."""
    m = re.search(r"HTTP 400: (.*)", error, re.DOTALL)
    if m is None or not _OVERFLOW.search(m[1]):
        return None
    try:
        text = str(json.loads(m[1]).get("message") or m[1])
    except (ValueError, AttributeError):
        found = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)', m[1])
        text = found[1] if found else m[1]
    return " ".join(text.split())[:300]


class OpenAISession:
    """One conversation: its server (kept for the prefix cache while it stays well) and decoding settings."""

    def __init__(self, backend: Any):  # an OpenAIBackend (not imported: backend.py imports this module)
        self.b = backend
        self.server: Server | None = None
        self.generation: dict = {}
        self.sampling = None  # a base.Sampling: sampled turns (the tuner's samples), each with its own seed
        self.turn = 0

    def set_generation(self, overrides: dict) -> None:
        self.generation = dict(overrides)

    def set_sampling(self, sampling) -> None:
        self.sampling, self.turn = sampling, 0

    def generate(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply:
        t0 = time.perf_counter()
        b = self.b
        video = b.caps["video"]
        api = openai_messages(messages, images, video, b.media)
        rendered, ours = b.renderer.render(messages, images) if b.renderer is not None else (None, None)
        if b.check_rendering and not b._checked:
            b.check(api, ours, self.server or b.pool.servers[0])
        body = {"model": b.model_id, "messages": api, "max_tokens": int(max_new_tokens), "stream": False,
                **b.settings(self.generation)}
        if self.sampling is not None:  # one request per sample (repeated requests, not n): a turn's own seed
            body.update(temperature=float(self.sampling.temperature), seed=self.sampling.turn_seed(self.turn))
            self.turn += 1
        if any(is_clip(x) for x in images) and b.kind == "vllm":
            clip = next(x for x in images if is_clip(x))
            body["media_io_kwargs"] = {"video": {"fps": float(clip.fps), "num_frames": -1,
                                                 "do_sample_frames": False}}
        body.update(b.extra_body)
        if not getattr(b, "logprobs_refused", ""):  # the label probabilities (see logprobs.py)
            body.update(request_fields())
        if b.on_request is not None:
            b.on_request(self, body)
        try:
            with b.slot():  # at most `concurrency` requests at the servers
                data, self.server = b.post("/chat/completions", body, prefer=self.server)
        except ServerError as e:
            too_long = context_overflow(str(e))
            if too_long:  # the conversation outgrew the server: token_limit (as max_context_tokens), no failure
                return Reply(text="", refused=f"the server refused the prompt as past its context length "
                             f"({too_long}); a larger --max-model-len holds it", seconds=time.perf_counter() - t0,
                             prompt_tokens=len(ours) if ours is not None else None)
            if "media_io_kwargs" in str(e) and "trust-request-mm-kwargs" in str(e):
                raise UsageError("this profile's video item needs its fps and frames kept per request: start "
                                 "vLLM with --trust-request-mm-kwargs") from None
            if "logprob" in str(e).lower() and "logprobs" in body:  # a server that refuses them: labels alone
                b.logprobs_refused = f"the server refused logprobs ({' '.join(str(e).split())[:200]})"
                return self.generate(messages, images, max_new_tokens)
            raise
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ServerError(f"{self.server.url}: a reply without choices[0].message: {str(data)[:200]}") from None
        usage = data.get("usage") or {}
        server_prompt = usage.get("prompt_tokens")
        cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        new_tokens = usage.get("completion_tokens")
        if new_tokens is None and b.renderer is not None:
            new_tokens = b.renderer.count(text)
        prompt = server_prompt if server_prompt is not None else (len(ours) if ours is not None else 0)
        digits, why = read_digits(text, choice.get("logprobs")) if "logprobs" in body else (None, "")
        why = why or ("" if digits is not None else getattr(b, "logprobs_refused", ""))
        return Reply(text=text, new_tokens=int(new_tokens or 0), stopped="length" if finish == "length" else "eos",
                     rendered=rendered, prefill_tokens=int(prompt) - int(cached), reused_tokens=int(cached),
                     seconds=time.perf_counter() - t0, prompt_tokens=len(ours) if ours is not None else None,
                     server_prompt_tokens=None if server_prompt is None else int(server_prompt),
                     digits=digits, no_probabilities=why)
