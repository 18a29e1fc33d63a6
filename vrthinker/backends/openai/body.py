"""The request: the profile's messages as chat-completions messages, and the body as JSON bytes."""
from __future__ import annotations

import json
from typing import Any, Sequence

from vrthinker.backends.openai.cache import Budget
from vrthinker.backends.openai.png import DataURL, png_data_url, video_data_url
from vrthinker.errors import UsageError

_MEDIA = "\x00vrthinker-media\x00"  # in place of each of our data URLs while the rest of the body is serialized
_MEDIA_JSON = json.dumps(_MEDIA)


def request_json(body: dict) -> bytes:
    """`body` as JSON bytes, the same as json.dumps(body) encoded, with the data URLs we made (DataURL: ASCII,
    nothing to escape) spliced in as they are instead of scanned for escapes every turn (megabytes a request).
    Any other string is serialized by json.dumps; where the marker shows elsewhere, the whole body is."""
    media: list[bytes] = []
    messages = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            parts = []
            for c in content:
                kind = c.get("type") if isinstance(c, dict) else None
                url = (c.get(kind) or {}).get("url") if kind in ("image_url", "video_url") else None
                data = url.encode("ascii") if type(url) is DataURL else None
                if data is not None:
                    media.append(data)
                    c = {**c, kind: {**c[kind], "url": _MEDIA}}
                parts.append(c)
            m = {**m, "content": parts}
        messages.append(m)
    if not media:
        return json.dumps(body).encode()
    pieces = json.dumps({**body, "messages": messages}).split(_MEDIA_JSON)
    if len(pieces) != len(media) + 1:
        return json.dumps(body).encode()
    out = [pieces[0].encode()]
    for data, rest in zip(media, pieces[1:]):
        out += [b'"', data, b'"', rest.encode()]
    return b"".join(out)


def openai_messages(messages: list[dict], media: Sequence[Any], video: bool, cache: Budget | None = None
                    ) -> list[dict]:
    """The profile's chat-template messages as chat-completions messages, media in placeholder order.

    Text-only turns (system, assistant) go as one string, exactly the text the profile keeps; user turns
    as content parts. A video item needs `video` (a server that takes pre-extracted frames as they are).
    Encodings are kept in `cache` (a backend's budget; default: the process's).
    """
    items = iter(media)
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str) or all(c.get("type") == "text" for c in content):
            text = content if isinstance(content, str) else "".join(c["text"] for c in content)
            out.append({"role": m["role"], "content": text})
            continue
        parts = []
        for c in content:
            kind = c.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": c["text"]})
            elif kind == "image":
                parts.append({"type": "image_url", "image_url": {"url": png_data_url(next(items), cache)}})
            elif kind == "video":
                clip = next(items)
                if not video:
                    raise UsageError("this server cannot take a video item as pre-extracted frames")
                parts.append({"type": "video_url", "video_url": {"url": video_data_url(clip, cache)}})
            else:
                raise ValueError(f"unknown content item {kind!r}")
        out.append({"role": m["role"], "content": parts})
    return out
