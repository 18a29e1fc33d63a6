"""The judge over OpenAI-compatible chat-completions servers (vLLM, SGLang, `transformers serve`), many at once.

The conversation is the profile's own (vrthinker.protocol): each turn the whole message list goes to the
server, images as lossless PNG data URLs, frames a tool call returned in a user turn, earlier replies as the
text the profile keeps. Decoding is greedy with the checkpoint's and the profile's settings, sent the way
each server takes them (see SERVER_KINDS). Several servers share the work: a conversation stays on the
server that served its first turn (its prefix cache), a new one goes to the server with the fewest requests
in flight, and a server that fails is rested while the others take its share. A request is retried with
backoff on connection errors, timeouts, 5xx and malformed replies; what still fails raises ServerError.

Each Reply carries our own count of the rendered prompt (`prompt_tokens`, from the checkpoint's processor
when it can be had) beside the server's `usage.prompt_tokens`, so a rendering the server does differently
shows up in the trace.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import random
import re
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from vrthinker.errors import ModelLoadError, ServerError, UsageError
from vrthinker.lru import ByteLRU
from vrthinker.backends.base import Reply

API_KEY_ENV = "VRTHINKER_API_KEY"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
_PADS = re.compile(re.escape(IMAGE_PAD) + "|" + re.escape(VIDEO_PAD))
# video frames arrive already sized (multiples of 28): bounds wide enough that they pass unchanged (as hf.py)
VIDEO_BOUNDS = (3136, 12845056)

# What each server honours of the greedy settings, and whether it takes pre-extracted frames as a video.
# - vllm: repetition_penalty / top_k / min_p as extra body fields; a video as `data:video/jpeg;base64,` with
#   one comma-separated base64 image per frame (decoded by PIL whatever the label, so PNG stays lossless),
#   never resampled (`do_sample_frames` False for such lists), its fps from the request's media_io_kwargs.
# - sglang: repetition_penalty as an extra body field; videos are decoded and sampled by the server: no.
# - transformers (`transformers serve`): unknown fields are refused (422); `frequency_penalty` f is mapped
#   to repetition_penalty 1 + f, so that is how it is sent; a video is sampled again (32 frames): no.
# - generic: any other server; repetition_penalty is sent as an extra field; no video.
SERVER_KINDS = {
    "vllm": {"extra_settings": True, "penalty_as_frequency": False, "video": True, "tokenize": True},
    "sglang": {"extra_settings": True, "penalty_as_frequency": False, "video": False, "tokenize": False},
    "transformers": {"extra_settings": False, "penalty_as_frequency": True, "video": False, "tokenize": False},
    "generic": {"extra_settings": True, "penalty_as_frequency": False, "video": False, "tokenize": True},
}
SETTINGS = ("repetition_penalty", "top_k", "min_p")  # greedy-relevant settings beyond temperature/top_p


def _httpx():
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is in the `serving` extra
        raise ModelLoadError("--backend openai needs httpx: pip install 'vrthinker[serving]'") from None
    return httpx


# ----------------------------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    url: str  # ends in /v1
    in_flight: int = 0
    failures: int = 0  # consecutive
    resting_until: float = 0.0

    @property
    def root(self) -> str:
        return self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://", url):
        raise UsageError(f"--server {url!r}: give an http(s) URL such as http://127.0.0.1:8000/v1")
    return url if url.endswith("/v1") else url + "/v1"


class ServerPool:
    """The servers sharing the work: fewest in flight first; a failing one rests, longer each time."""

    def __init__(self, urls: Sequence[str], rest_s: float = 2.0):
        if not urls:
            raise UsageError("--backend openai needs --server URL (e.g. http://127.0.0.1:8000/v1)")
        self.servers = [Server(normalize_url(u)) for u in dict.fromkeys(urls)]
        self.rest_s = rest_s
        self.lock = threading.Lock()

    def acquire(self, prefer: Server | None = None, avoid: Server | None = None) -> Server:
        """A server for one request: `prefer` while it is well, else the well one with the fewest in flight
        (all resting: the one that wakes first)."""
        with self.lock:
            now = time.monotonic()
            well = [s for s in self.servers if s.resting_until <= now]
            if prefer is not None and prefer in well and (prefer is not avoid or len(well) == 1):
                chosen = prefer
            else:
                pool = [s for s in well if s is not avoid] or well
                chosen = (min(pool, key=lambda s: (s.in_flight, self.servers.index(s))) if pool
                          else min(self.servers, key=lambda s: s.resting_until))
            chosen.in_flight += 1
            return chosen

    def release(self, server: Server, ok: bool) -> None:
        with self.lock:
            server.in_flight -= 1
            if ok:
                server.failures, server.resting_until = 0, 0.0
            else:
                server.failures += 1
                server.resting_until = time.monotonic() + min(30.0, self.rest_s * 2 ** (server.failures - 1))


# ----------------------------------------------------------------------------------------------------------
# rendering: messages for the server, and our own token count


_PNG_BY_OBJECT: ByteLRU[int, tuple[Any, str]] = ByteLRU(1024, size=lambda v: 1)
# base64 PNG by the frame's pixels: the same frame shown again in another object (the other order of a pair,
# another pair of the same video) is not encoded again
_PNG_BY_PIXELS: ByteLRU[tuple, str] = ByteLRU(512 * 2**20, size=len)


def clear_media_caches() -> None:
    """Forget every encoded image and data URL (benchmarks start each run cold)."""
    for cache in (_PNG_BY_OBJECT, _PNG_BY_PIXELS, _URLS, _CLIP_URLS, _OURS):
        cache.clear()


def png_bytes(rgb: Any) -> bytes:
    """A lossless PNG of an RGB uint8 array [h, w, 3]: each row but the first filtered 'Up' (its difference
    from the row above, PNG filter 2), then deflate level 1. About twice as fast as PIL's PNG at level 1
    (which tries every filter on every row) and no larger; any PNG decoder gives back exactly these pixels."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"png_bytes takes an RGB array [h, w, 3], got shape {a.shape}")
    h, w, _ = a.shape
    rows = a.reshape(h, w * 3)
    data = np.empty((h, w * 3 + 1), np.uint8)
    data[0, 0], data[1:, 0] = 0, 2  # filter: none for the first row, Up for the others
    data[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=data[1:, 1:])  # modulo 256, as the filter is defined

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(data.tobytes(), 1)) + chunk(b"IEND", b""))


def png_base64(im: Any) -> str:
    """The image as base64 PNG (lossless), cached per image object (every turn re-sends every image) and per
    pixels (the same frame in another object: the pair's other order, another pair of the same video)."""
    hit = _PNG_BY_OBJECT.get(id(im))
    if hit is not None and hit[0] is im:
        return hit[1]
    rgb = np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
    key = (rgb.shape, hashlib.sha256(rgb.data).digest())
    b64 = _PNG_BY_PIXELS.get(key)
    if b64 is None:
        b64 = _PNG_BY_PIXELS.put(key, base64.b64encode(png_bytes(rgb)).decode("ascii"))
    _PNG_BY_OBJECT.put(id(im), (im, b64))  # the image is held so its id is not reused while cached
    return b64


def png_data_url(im: Any) -> str:
    """`data:image/png;base64,...` of the image, the same string object each time (see `request_json`)."""
    b64 = png_base64(im)
    return _URLS.get_or_load(b64, lambda: _ours("data:image/png;base64," + b64))


def video_data_url(clip: Any) -> str:
    """A clip's frames as vLLM takes them: `data:video/jpeg;base64,` then each frame's base64 PNG, by commas."""
    hit = _CLIP_URLS.get(id(clip))
    if hit is not None and hit[0] is clip:
        return hit[1]
    url = _ours("data:video/jpeg;base64," + ",".join(png_base64(f) for f in clip.frames))
    _CLIP_URLS.put(id(clip), (clip, url))
    return url


# data URLs we made, and their ASCII bytes for the request body, kept while their base64 is cached
_URLS: ByteLRU[str, str] = ByteLRU(256 * 2**20, size=len)
_CLIP_URLS: ByteLRU[int, tuple[Any, str]] = ByteLRU(64, size=lambda v: 1)
_OURS: ByteLRU[int, tuple[str, bytes]] = ByteLRU(512 * 2**20, size=lambda v: len(v[1]))
_MEDIA = "\x00vrthinker-media\x00"  # in place of each of our data URLs while the rest of the body is serialized
_MEDIA_JSON = json.dumps(_MEDIA)


def _ours(url: str) -> str:
    """Register a data URL we made (base64 and a `data:` prefix: nothing JSON escapes) with its bytes."""
    _OURS.put(id(url), (url, url.encode("ascii")))
    return url


def _our_bytes(url: Any) -> bytes | None:
    hit = _OURS.get(id(url)) if isinstance(url, str) else None
    return hit[1] if hit is not None and hit[0] is url else None


def request_json(body: dict) -> bytes:
    """`body` as JSON bytes, the same as json.dumps(body) encoded, with the data URLs we made spliced in as
    bytes made once instead of scanned for escapes and encoded again every turn (megabytes a request).
    Any other string is serialized by json.dumps; where the marker shows elsewhere, the whole body is."""
    media: list[bytes] = []
    messages = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            parts = []
            for c in content:
                kind = c.get("type") if isinstance(c, dict) else None
                data = _our_bytes((c.get(kind) or {}).get("url")) if kind in ("image_url", "video_url") else None
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


def is_clip(x: Any) -> bool:
    return hasattr(x, "frames")


def openai_messages(messages: list[dict], media: Sequence[Any], video: bool) -> list[dict]:
    """The profile's chat-template messages as chat-completions messages, media in placeholder order.

    Text-only turns (system, assistant) go as one string, exactly the text the profile keeps; user turns
    as content parts. A video item needs `video` (a server that takes pre-extracted frames as they are).
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
                parts.append({"type": "image_url", "image_url": {"url": png_data_url(next(items))}})
            elif kind == "video":
                clip = next(items)
                if not video:
                    raise UsageError("this server cannot take a video item as pre-extracted frames")
                parts.append({"type": "video_url", "video_url": {"url": video_data_url(clip)}})
            else:
                raise ValueError(f"unknown content item {kind!r}")
        out.append({"role": m["role"], "content": parts})
    return out


class Renderer:
    """Our own rendering of a conversation into token ids, as the checkpoint's processor makes them."""

    def __init__(self, processor: Any):
        self.processor = processor
        ip = processor.image_processor
        self.patch = ip.patch_size
        self.merge = ip.merge_size
        self.temporal = getattr(getattr(processor, "video_processor", None), "temporal_patch_size", 2)
        size = getattr(ip, "size", None) or {}
        self.image_bounds = (size.get("shortest_edge", getattr(ip, "min_pixels", 3136)),
                             size.get("longest_edge", getattr(ip, "max_pixels", 12845056)))
        tok = processor.tokenizer
        self.pad_ids = {p: tok.convert_tokens_to_ids(p) for p in (IMAGE_PAD, VIDEO_PAD)}
        added = {t.content: t for t in getattr(tok, "added_tokens_decoder", {}).values()}
        # piece by piece only where that gives the same ids: each pad one special token that keeps the
        # whitespace beside it (an lstrip/rstrip token would take it from the text around it)
        self._piecewise = all(p in added and added[p].special and not added[p].lstrip and not added[p].rstrip
                              and tok.convert_ids_to_tokens(self.pad_ids[p]) == p for p in self.pad_ids)
        self._pieces: ByteLRU[str, tuple[int, ...]] = ByteLRU(8 * 2**20, size=lambda v: 8 * len(v) + 64)

    def _grid(self, w: int, h: int, bounds: tuple[int, int]) -> int:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        rh, rw = smart_resize(h, w, factor=self.patch * self.merge, min_pixels=bounds[0], max_pixels=bounds[1])
        return (rh // self.patch) * (rw // self.patch)

    def pads(self, item: Any) -> int:
        """How many `<|image_pad|>` / `<|video_pad|>` tokens one image or clip becomes."""
        m2 = self.merge ** 2
        if is_clip(item):
            w, h = item.frames[0].size
            return math.ceil(len(item.frames) / self.temporal) * self._grid(w, h, VIDEO_BOUNDS) // m2
        w, h = item.size
        return self._grid(w, h, self.image_bounds) // m2

    def ids(self, messages: list[dict], media: Sequence[Any]) -> list[int]:
        return self.render(messages, media)[1]

    def render(self, messages: list[dict], media: Sequence[Any]) -> tuple[str, list[int]]:
        """(the rendered conversation, its token ids with each placeholder expanded to its pad tokens).

        The text between placeholders is tokenized piece by piece, each piece once per renderer (a later
        turn re-tokenizes only what it added): the pads are special tokens, which the tokenizer splits off
        before tokenizing the text around them, so the ids are those of tokenizing the whole expanded text at
        once (`whole_ids`, still used for a tokenizer whose pad tokens would strip the whitespace beside them)."""
        rendered = self.rendered(messages)
        parts = _PADS.split(rendered)
        pads = _PADS.findall(rendered)
        if len(pads) != len(media):
            raise ValueError(f"{len(pads)} placeholders for {len(media)} media")
        if not self._piecewise:
            return rendered, self.whole_ids(parts, pads, media)
        ids = list(self._piece(parts[0]))
        for pad, item, rest in zip(pads, media, parts[1:]):
            ids += [self.pad_ids[pad]] * self.pads(item)
            ids += self._piece(rest)
        return rendered, ids

    def whole_ids(self, parts: list[str], pads: list[str], media: Sequence[Any]) -> list[int]:
        pieces = [parts[0]]
        for pad, item, rest in zip(pads, media, parts[1:]):
            pieces += [pad * self.pads(item), rest]
        return self.processor.tokenizer("".join(pieces), add_special_tokens=False)["input_ids"]

    def _piece(self, text: str) -> list[int]:
        ids = self._pieces.get(text)
        if ids is None:
            ids = self._pieces.put(text, tuple(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]))
        return ids

    def rendered(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def load_renderer(sources: Sequence[str]) -> tuple[Renderer | None, dict, str]:
    """(renderer, the checkpoint's generation settings, where they came from) from the first source whose
    processor loads (a local dir, or a hub id already cached / reachable); (None, {}, "") if none does."""
    for src in dict.fromkeys(s for s in sources if s):
        try:
            from transformers import AutoProcessor, GenerationConfig

            proc = AutoProcessor.from_pretrained(src)
            try:
                gen = GenerationConfig.from_pretrained(src).to_dict()
            except (OSError, ValueError):
                gen = {}
            return Renderer(proc), {k: gen[k] for k in SETTINGS if gen.get(k) is not None}, src
        except Exception:  # noqa: BLE001 - any failure means: this source has no usable processor
            continue
    return None, {}, ""


# ----------------------------------------------------------------------------------------------------------
# the backend


@dataclass(frozen=True)
class ServedModel:
    """The model behind the servers, as /v1/models reports it."""

    id: str
    root: str = ""
    owned_by: str = ""
    max_model_len: int | None = None
    extra: dict = field(default_factory=dict)


def server_kind(owned_by: str) -> str:
    o = (owned_by or "").lower()
    if "vllm" in o:
        return "vllm"
    if "sglang" in o:
        return "sglang"
    if o in ("local", "transformers", "huggingface"):
        return "transformers"
    return "generic"


class OpenAIBackend:
    """A pool of OpenAI-compatible servers serving one model; `new_session()` starts one conversation."""

    name = "openai"
    concurrent = True  # several conversations may be in flight at once (vrthinker.batch)

    def __init__(self, servers: Sequence[str], *, served_model: str | None = None, api_key: str | None = None,
                 timeout: float = 600.0, retries: int = 8, backoff_s: float = 1.0, concurrency: int | None = None,
                 check_rendering: bool = False, processor_source: str | None = None, client: Any = None):
        httpx = _httpx()
        self.pool = ServerPool(servers)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.concurrency = max(1, int(concurrency or 1))
        self.check_rendering = check_rendering
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = client or httpx.Client(
            headers=headers, timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
            limits=httpx.Limits(max_connections=max(64, 4 * self.concurrency), max_keepalive_connections=64))
        self.model = self._served_model(served_model)
        self.model_id = self.model.id
        self.revision = self.model.extra.get("revision") or ""
        self.kind = server_kind(self.model.owned_by)
        self.caps = SERVER_KINDS[self.kind]
        self.renderer, self.checkpoint_generation, self.processor_source = load_renderer(
            [processor_source or "", self.model.root, self.model.id])
        # the other orders of pairs whose first order runs in the caller's thread (threads start when needed)
        self.pool_exec = ThreadPoolExecutor(max_workers=max(32, 4 * self.concurrency), thread_name_prefix="openai")
        self._slots = threading.BoundedSemaphore(self.concurrency)  # see slot() and limit()
        self._checked = False
        self._check_lock = threading.Lock()
        self.extra_body: dict = {}  # more request fields (e.g. vLLM's cache_salt), for benchmarks and tools
        self.on_request = None  # called with (session, body) before each request (benchmarks record them)

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, server: Sequence[str] | str | None = None,
                        served_model: str | None = None, api_key: str | None = None, timeout: float | None = None,
                        concurrency: int | None = None, check_rendering: bool = False,
                        **_: Any) -> "OpenAIBackend":
        """Connect to `server` (one URL or several). `model` (optional): where the checkpoint's processor
        can be read for our own token counts (else the served model's root, then its name)."""
        urls = [server] if isinstance(server, str) else list(server or [])
        if concurrency is not None and concurrency < 1 or timeout is not None and timeout <= 0:
            raise UsageError("--concurrency must be at least 1 and --timeout positive")
        return cls(urls, served_model=served_model, api_key=api_key, timeout=timeout or 600.0,
                   concurrency=concurrency, check_rendering=bool(check_rendering), processor_source=model)

    # -- server calls

    def _served_model(self, wanted: str | None) -> ServedModel:
        last = ""
        for s in self.pool.servers:
            try:
                data = self._get(s, "/models")["data"]
            except (ServerError, KeyError, TypeError) as e:
                last = f"{s.url}: {e}"
                continue
            models = [ServedModel(id=str(d.get("id")), root=str(d.get("root") or ""),
                                  owned_by=str(d.get("owned_by") or ""), max_model_len=d.get("max_model_len"),
                                  extra={k: d[k] for k in ("revision", "parent") if d.get(k)}) for d in data]
            if wanted:
                found = [m for m in models if m.id == wanted]
                if not found:
                    raise UsageError(f"--served-model {wanted!r} is not served by {s.url} "
                                     f"(it serves {', '.join(m.id for m in models) or 'nothing'})")
                return found[0]
            if len(models) != 1:
                raise UsageError(f"{s.url} serves {len(models)} models ({', '.join(m.id for m in models)}): "
                                 "choose one with --served-model")
            return models[0]
        raise ModelLoadError(f"no server answered GET /v1/models ({last})")

    def _get(self, s: Server, path: str) -> Any:
        try:
            r = self.client.get(s.url + path, timeout=min(30.0, self.timeout))
            r.raise_for_status()
            return r.json()
        except Exception as e:  # noqa: BLE001 - reported as the server's failure
            raise ServerError(f"GET {path}: {type(e).__name__}: {e}") from None

    def post(self, path: str, body: dict, prefer: Server | None = None, root: bool = False
             ) -> tuple[dict, Server]:
        """POST `body`, retried with backoff (another server where there is one) on connection errors,
        timeouts, 5xx and replies that are not the JSON asked for; a 4xx is the request's fault: no retry."""
        httpx = _httpx()
        errors: list[str] = []
        server, avoid = prefer, None
        for attempt in range(self.retries + 1):
            s = self.pool.acquire(server, avoid)
            ok = False
            try:
                r = self.client.post((s.root if root else s.url) + path, content=request_json(body),
                                     headers={"Content-Type": "application/json"})
                if 400 <= r.status_code < 500:
                    ok = True  # the server is well; the request is not
                    raise ServerError(f"{s.url}{path}: HTTP {r.status_code}: {r.text[:500]}")
                if r.status_code >= 500:
                    raise _Retry(f"HTTP {r.status_code}: {r.text[:200]}")
                try:
                    data = r.json()
                except ValueError:
                    raise _Retry(f"malformed JSON: {r.text[:200]!r}") from None
                if not isinstance(data, dict) or ("choices" not in data and not root):
                    raise _Retry(f"unexpected reply: {str(data)[:200]}")
                ok = True
                return data, s
            except (_Retry, httpx.TransportError) as e:
                errors.append(f"{s.url}: {type(e).__name__ if not isinstance(e, _Retry) else ''}{e}".strip())
            finally:
                self.pool.release(s, ok)
            server, avoid = None, s
            if attempt < self.retries:
                time.sleep(min(15.0, self.backoff_s * 2 ** attempt) * (0.75 + 0.5 * random.random()))
        raise ServerError(f"{len(errors)} attempts failed; last: {errors[-1]}")

    # -- the model's settings

    def settings(self, overrides: dict | None = None) -> dict:
        """The request fields for greedy decoding with the checkpoint's and the profile's settings."""
        wanted = {**self.checkpoint_generation, **{k: v for k, v in (overrides or {}).items() if k in SETTINGS}}
        body: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0}
        rp = wanted.pop("repetition_penalty", None)
        if self.caps["penalty_as_frequency"]:
            if rp is not None:
                body["frequency_penalty"] = float(rp) - 1.0
        elif self.caps["extra_settings"]:
            if rp is not None:
                body["repetition_penalty"] = float(rp)
            body.update(wanted)
        return body

    def config(self) -> dict:
        """What shapes the replies: the served model (name, root, revision where reported), the server kind,
        the decoding settings sent. Not the URLs: any server of the same model gives the same judgments."""
        from vrthinker.identity import plain

        m = self.model
        return plain({"backend": self.name, "model_id": m.id, "root": m.root, "revision": self.revision,
                      "server_kind": self.kind, "settings": self.settings()})

    def check_profile(self, profile: Any) -> None:
        """Refuse a profile this server cannot be given exactly (a video item it would resample)."""
        if profile.initial_item == "video" and not self.caps["video"]:
            raise UsageError(
                f"profile {profile.name!r} shows its first frames as one video item, which a {self.kind} server "
                "would decode and sample again (other frames, another fps): use a vLLM server, or "
                "--backend hf, for this profile")

    def resolve_profile(self, requested: str | None):
        """The profile: --protocol, else the known-ids table applied to the served model's name or root."""
        from vrthinker.protocol import DEFAULT_PROFILE, Profile, known_checkpoints

        if requested:
            profile, source = Profile.load(requested), "--protocol"
        else:
            known = known_checkpoints()
            hit = next((n for n in (self.model.id, self.model.root) if n in known), None)
            profile, source = ((Profile.load(known[hit]), f"known checkpoint {hit} (served)") if hit
                               else (Profile.load(DEFAULT_PROFILE), "default"))
        self.check_profile(profile)
        return profile, source

    def new_session(self) -> "OpenAISession":
        return OpenAISession(self)

    def slot(self) -> threading.Semaphore:
        """Held while a conversation's request is at a server: `concurrency` of them at most."""
        return self._slots

    @contextlib.contextmanager
    def limit(self, concurrency: int):
        """`concurrency` conversations in flight at most while inside (vrthinker.batch sets its own)."""
        n = max(1, int(concurrency))
        saved = self.concurrency, self._slots
        self.concurrency, self._slots = n, threading.BoundedSemaphore(n)
        try:
            yield self
        finally:
            self.concurrency, self._slots = saved

    def generate_many(self, sessions, requests, max_new_tokens) -> list[Reply]:
        """The conversations' next turns, in flight together up to `concurrency` (at 1: one after the other)."""
        calls = list(zip(sessions, requests, max_new_tokens))
        if self.concurrency == 1:
            return [s.generate(m, im, n) for s, (m, im), n in calls]
        futures = [self.pool_exec.submit(s.generate, m, im, n) for s, (m, im), n in calls[1:]]
        s, (m, im), n = calls[0]
        first = s.generate(m, im, n)
        return [first] + [f.result() for f in futures]

    def first_token_logprobs(self, messages: list[dict], answer_prefix: str = "", top: int = 20
                             ) -> list[tuple[str, float]]:
        """The `top` likeliest first tokens of the reply (after `answer_prefix`, which the reply is made to
        start with) and their log-probabilities, greedy, as (token text, logprob); for yes/no questions."""
        msgs = list(messages)
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": 1, "temperature": 0.0, "top_p": 1.0,
                                "logprobs": True, "top_logprobs": int(top), "stream": False}
        if answer_prefix:  # vLLM / SGLang: the last assistant message is continued, not closed
            msgs.append({"role": "assistant", "content": answer_prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = msgs
        data, s = self.post("/chat/completions", body)
        try:
            first = data["choices"][0]["logprobs"]["content"][0]
            return [(str(e["token"]), float(e["logprob"])) for e in first["top_logprobs"]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise ServerError(f"{s.url}: the reply has no top_logprobs for its first token (this server "
                              f"returns no logprobs?): {str(data)[:200]}") from None

    def tokenize(self, messages: list[dict], server: Server | None = None) -> list[int]:
        """The server's own token ids for a conversation (vLLM's POST /tokenize with `messages`)."""
        body = {"model": self.model_id, "messages": messages, "add_generation_prompt": True}
        if self.kind == "vllm" and any(isinstance(m["content"], list) and any(c.get("type") == "video_url"
                                                                            for c in m["content"])
                                       for m in messages):
            body["media_io_kwargs"] = {"video": {"num_frames": -1, "do_sample_frames": False}}
        data, _ = self.post("/tokenize", body, prefer=server, root=True)
        if "tokens" not in data:
            raise ServerError(f"/tokenize gave no tokens: {str(data)[:200]}")
        return list(data["tokens"])

    def check(self, api_messages: list[dict], ours: list[int] | None, server: Server) -> None:
        """--check-rendering: the server's token ids for turn 1 must be ours, once per backend."""
        with self._check_lock:
            if self._checked:
                return
            if ours is None:
                raise UsageError("--check-rendering needs the checkpoint's processor here: pass --model DIR_OR_ID")
            if not self.caps["tokenize"]:
                raise UsageError(f"--check-rendering needs a tokenize endpoint, which a {self.kind} server lacks")
            try:
                theirs = self.tokenize(api_messages, server)
            except ServerError as e:
                raise UsageError(f"--check-rendering: the server could not tokenize ({e})") from None
            if theirs != ours:
                at = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
                raise UsageError(f"--check-rendering: the server renders turn 1 as {len(theirs)} tokens, we as "
                                 f"{len(ours)}; first difference at token {at}: refusing to go on")
            self._checked = True


class _Retry(Exception):
    pass


class OpenAISession:
    """One conversation: its server (kept for the prefix cache while it stays well) and decoding settings."""

    def __init__(self, backend: OpenAIBackend):
        self.b = backend
        self.server: Server | None = None
        self.generation: dict = {}

    def set_generation(self, overrides: dict) -> None:
        self.generation = dict(overrides)

    def generate(self, messages: list[dict], images: Sequence[Any], max_new_tokens: int) -> Reply:
        t0 = time.perf_counter()
        b = self.b
        video = b.caps["video"]
        api = openai_messages(messages, images, video)
        rendered, ours = b.renderer.render(messages, images) if b.renderer is not None else (None, None)
        if b.check_rendering and not b._checked:
            b.check(api, ours, self.server or b.pool.servers[0])
        body = {"model": b.model_id, "messages": api, "max_tokens": int(max_new_tokens), "stream": False,
                **b.settings(self.generation)}
        if any(is_clip(x) for x in images) and b.kind == "vllm":
            clip = next(x for x in images if is_clip(x))
            body["media_io_kwargs"] = {"video": {"fps": float(clip.fps), "num_frames": -1,
                                                 "do_sample_frames": False}}
        body.update(b.extra_body)
        if b.on_request is not None:
            b.on_request(self, body)
        try:
            with b.slot():  # at most `concurrency` requests at the servers
                data, self.server = b.post("/chat/completions", body, prefer=self.server)
        except ServerError as e:
            if "media_io_kwargs" in str(e) and "trust-request-mm-kwargs" in str(e):
                raise UsageError("this profile's video item needs its fps and frames kept per request: start "
                                 "vLLM with --trust-request-mm-kwargs") from None
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
            new_tokens = len(b.renderer.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        prompt = server_prompt if server_prompt is not None else (len(ours) if ours is not None else 0)
        return Reply(text=text, new_tokens=int(new_tokens or 0), stopped="length" if finish == "length" else "eos",
                     rendered=rendered, prefill_tokens=int(prompt) - int(cached), reused_tokens=int(cached),
                     seconds=time.perf_counter() - t0, prompt_tokens=len(ours) if ours is not None else None,
                     server_prompt_tokens=None if server_prompt is None else int(server_prompt))
