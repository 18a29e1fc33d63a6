"""The judge over OpenAI-compatible chat-completions servers (vLLM, SGLang, `transformers serve`), many at once.

The conversation is the profile's own (vrthinker.protocol): each turn the whole message list goes to the
server, images as lossless PNG data URLs, frames a tool call returned in a user turn, earlier replies as the
text the profile keeps. Decoding is greedy with the checkpoint's and the profile's settings, sent the way
each server takes them (see SERVER_KINDS). Several servers share the work: a conversation stays on the
server that served its first turn (its prefix cache), a new one goes to the server with the fewest requests
in flight, and a server that fails is rested while the others take its share. A request is retried with
backoff on connection errors, timeouts, 5xx and malformed replies; what still fails raises ServerError.

Each Reply carries our own count of the rendered prompt (`prompt_tokens`, from the checkpoint's tokenizer
and image-processor config when they can be had, without torch) beside the server's `usage.prompt_tokens`, so
a rendering the server does differently shows up in the trace.

The package, one job a module: pool (which server takes a request), retry (what is retried, Retry-After,
backoff), cache (the client's one memory budget), png (images as lossless PNG data URLs, encoded once), body
(chat-completions messages and the request bytes), tokens (our own token count), served (the served model and
what each server kind honours), backend (requests, deadlines, the model's settings), session (one
conversation's turns), logprobs (label probabilities from the replies' top log-probabilities).
"""
from vrthinker.backends.openai.backend import API_KEY_ENV, CONNECT_TIMEOUT_S, TIMEOUT_S, OpenAIBackend
from vrthinker.backends.openai.body import openai_messages, request_json
from vrthinker.backends.openai.cache import DEFAULT_CACHE_MB, Budget
from vrthinker.backends.openai.png import (DataURL, clear_media_caches, png_base64, png_bytes, png_data_url,
                                           video_data_url)
from vrthinker.backends.openai.retry import retry_after_s
from vrthinker.backends.openai.pool import Server, ServerPool, normalize_url
from vrthinker.backends.openai.served import SERVER_KINDS, ServedModel, server_kind
from vrthinker.backends.openai.session import OpenAISession
from vrthinker.backends.openai.tokens import (_PADS, IMAGE_PAD, SETTINGS, VIDEO_BOUNDS, VIDEO_PAD, Renderer, Vision,
                                              is_clip, load_renderer)

__all__ = [
    "API_KEY_ENV", "CONNECT_TIMEOUT_S", "DEFAULT_CACHE_MB", "TIMEOUT_S", "Budget", "DataURL", "retry_after_s",
    "IMAGE_PAD", "SERVER_KINDS", "SETTINGS", "VIDEO_BOUNDS", "VIDEO_PAD", "_PADS", "OpenAIBackend",
    "OpenAISession", "Renderer", "ServedModel", "Server", "ServerPool", "Vision", "clear_media_caches", "is_clip",
    "load_renderer", "normalize_url", "openai_messages", "png_base64", "png_bytes", "png_data_url", "request_json",
    "server_kind", "video_data_url",
]
