"""The judge's backend over a pool of OpenAI-compatible servers serving one model (see the package docstring)."""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from vrthinker.backends.base import Reply
from vrthinker.backends.openai.body import request_json
from vrthinker.backends.openai.cache import Budget
from vrthinker.backends.openai.pool import Server, ServerPool
from vrthinker.backends.openai.retry import BUSY, Retry, backoff_s, retry_after_s
from vrthinker.backends.openai.served import SERVER_KINDS, ServedModel, server_kind
from vrthinker.backends.openai.tokens import SETTINGS, load_renderer
from vrthinker.errors import ModelLoadError, ServerError, UsageError, arg

API_KEY_ENV = "VRTHINKER_API_KEY"


TIMEOUT_S = 600.0  # --timeout: seconds per request
CONNECT_TIMEOUT_S = 5.0  # --connect-timeout: a host that does not accept a connection by then is skipped


def _httpx():
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a core dependency
        raise ModelLoadError("--backend openai needs httpx: pip install vrthinker") from None
    return httpx


class OpenAIBackend:
    """A pool of OpenAI-compatible servers serving one model; `new_session()` starts one conversation."""

    name = "openai"
    concurrent = True  # several conversations may be in flight at once (vrthinker.batch)

    def __init__(self, servers: Sequence[str], *, served_model: str | None = None, api_key: str | None = None,
                 timeout: float = TIMEOUT_S, retries: int = 8, backoff_s: float = 1.0, concurrency: int | None = None,
                 check_rendering: bool = False, processor_source: str | None = None, client: Any = None,
                 turn_deadline: float | None = None, connect_timeout: float | None = None,
                 cache_mb: float | None = None):
        """`timeout`: seconds per request (between bytes of the reply); `turn_deadline`: seconds for one turn,
        every retry and wait included (default twice `timeout`); `connect_timeout`: seconds to open a
        connection, so a dead host is skipped quickly; `cache_mb`: the one memory budget of the client's
        caches (encoded frames, clips, token pieces; default DEFAULT_CACHE_MB, 0 keeps nothing)."""
        httpx = _httpx()
        self.pool = ServerPool(servers)
        self.timeout = float(timeout)
        self.turn_deadline = float(turn_deadline) if turn_deadline is not None else 2 * self.timeout
        self.connect_timeout = (float(connect_timeout) if connect_timeout is not None
                                else min(CONNECT_TIMEOUT_S, self.timeout))
        if not (self.timeout > 0 and self.turn_deadline > 0 and self.connect_timeout > 0):
            raise UsageError(f"{arg('timeout')}, {arg('turn_deadline')} and {arg('connect_timeout')} must be positive")
        self.media = Budget.of_mb(cache_mb)  # every cache of this client, one budget (cache.py)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.concurrency = max(1, int(concurrency or 1))
        self.check_rendering = check_rendering
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = client or httpx.Client(
            headers=headers, timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=max(64, 4 * self.concurrency), max_keepalive_connections=64))
        self.model = self._served_model(served_model)
        self.model_id = self.model.id
        self.revision = self.model.extra.get("revision") or ""
        self.kind = server_kind(self.model.owned_by)
        self.caps = SERVER_KINDS[self.kind]
        self.renderer, self.checkpoint_generation, self.processor_source = load_renderer(
            [processor_source or "", self.model.root, self.model.id], cache=self.media)
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
                        turn_deadline: float | None = None, connect_timeout: float | None = None,
                        client_cache_mb: float | None = None, **_: Any) -> "OpenAIBackend":
        """Connect to `server` (one URL or several). `model` (optional): where the checkpoint's processor
        can be read for our own token counts (else the served model's root, then its name)."""
        urls = [server] if isinstance(server, str) else list(server or [])
        if concurrency is not None and concurrency < 1 or timeout is not None and timeout <= 0:
            raise UsageError(f"{arg('concurrency')} must be at least 1 and {arg('timeout')} positive")
        for flag, value in (("turn_deadline", turn_deadline), ("connect_timeout", connect_timeout)):
            if value is not None and not value > 0:
                raise UsageError(f"{arg(flag)} must be a positive number of seconds, got {value}")
        if client_cache_mb is not None and not client_cache_mb >= 0:
            raise UsageError(f"{arg('client_cache_mb')} must be 0 or more, got {client_cache_mb}")
        return cls(urls, served_model=served_model, api_key=api_key, timeout=timeout or TIMEOUT_S,
                   concurrency=concurrency, check_rendering=bool(check_rendering), processor_source=model,
                   turn_deadline=turn_deadline, connect_timeout=connect_timeout,
                   cache_mb=client_cache_mb)

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
        httpx = _httpx()
        try:
            r = self.client.get(s.url + path, timeout=httpx.Timeout(min(30.0, self.timeout),
                                                                    connect=self.connect_timeout))
            r.raise_for_status()
            return r.json()
        except Exception as e:  # noqa: BLE001 - reported as the server's failure
            raise ServerError(f"GET {path}: {type(e).__name__}: {e}") from None

    def _send(self, url: str, content: bytes, end: float) -> tuple[int, Any, bytes]:
        """One POST: (status, headers, body). The reply is read in chunks so that the turn's deadline holds
        against a server that trickles bytes as well as one that sends none (a read timeout per chunk)."""
        httpx = _httpx()
        left = max(0.001, end - time.monotonic())
        timeout = httpx.Timeout(min(self.timeout, left), connect=min(self.connect_timeout, left), pool=left)
        with self.client.stream("POST", url, content=content, headers={"Content-Type": "application/json"},
                                timeout=timeout) as r:
            chunks = []
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > end:
                    raise httpx.ReadTimeout("the turn's deadline passed while the reply was still arriving")
            return r.status_code, r.headers, b"".join(chunks)

    def client_error(self, s: Server, path: str, status: int, text: str) -> Exception:
        """The error a 4xx other than 429 becomes: the request's fault, not retried (the server is well)."""
        return ServerError(f"{s.url}{path}: HTTP {status}: {text[:500]}")

    def post(self, path: str, body: dict, prefer: Server | None = None, root: bool = False
             ) -> tuple[dict, Server]:
        """POST `body`, retried with backoff (another server where there is one) on connection errors,
        timeouts, 5xx, 429 and replies that are not the JSON asked for; any other 4xx is the request's fault:
        no retry. A 429 / 503 with Retry-After rests that server at least as long (waiting only when every
        server asks for a pause). Every try and wait fits in `turn_deadline` seconds from the first."""
        httpx = _httpx()
        content = request_json(body)
        end = time.monotonic() + self.turn_deadline
        errors: list[str] = []
        server, avoid = prefer, None
        for attempt in range(self.retries + 1):
            wait = max(backoff_s(attempt - 1, self.backoff_s) if attempt else 0.0, self.pool.wait_s())
            if time.monotonic() + wait >= end:
                why = (f"the servers ask to wait {self.pool.wait_s():.3g}s (Retry-After)" if self.pool.wait_s() > 0
                       else "no time left for another try")
                raise ServerError(f"turn deadline {self.turn_deadline:g}s: {why} after {len(errors)} attempt(s)"
                                  + (f"; last: {errors[-1]}" if errors else ""))
            if wait:
                time.sleep(wait)
            s = self.pool.acquire(server, avoid)
            ok = False
            try:
                status, headers, raw = self._send((s.root if root else s.url) + path, content, end)
                text = raw.decode("utf-8", "replace")
                if status in BUSY:
                    raise Retry(f"HTTP {status}: {text[:200]}", retry_after_s(headers.get("retry-after")))
                if 400 <= status < 500:
                    ok = True  # the server is well; the request is not
                    raise self.client_error(s, path, status, text)
                if status >= 500:
                    raise Retry(f"HTTP {status}: {text[:200]}")
                try:
                    data = json.loads(raw)
                except ValueError:
                    raise Retry(f"malformed JSON: {text[:200]!r}") from None
                if not isinstance(data, dict) or ("choices" not in data and not root):
                    raise Retry(f"unexpected reply: {str(data)[:200]}")
                ok = True
                return data, s
            except Retry as e:
                errors.append(f"{s.url}: {e}")
                if e.retry_after is not None:
                    self.pool.hold(s, e.retry_after)
            except httpx.TransportError as e:
                errors.append(f"{s.url}: {type(e).__name__}: {e}")
            finally:
                self.pool.release(s, ok)
            server, avoid = None, s
            if time.monotonic() >= end:
                raise ServerError(f"turn deadline {self.turn_deadline:g}s passed after {len(errors)} attempt(s); "
                                  f"last: {errors[-1]}")
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
        """The profile by the rule a local checkpoint follows (vrthinker.protocol.recognise), applied to the served
        model's name, then its root: vLLM's root names the checkpoint it loaded, whatever --served-model-name
        says; a path there is on the server's machine, so only its spelling is read. Unrecognised: --protocol,
        else refused in one line."""
        from vrthinker.protocol import Profile, recognise, unknown_checkpoint

        names = [n for n in (self.model.id, self.model.root) if n]
        found = next((r for r in (recognise(n, local=False) for n in names) if r is not None), None)
        if found is not None and (found.identity or not requested):
            source = f"{found.source} (served)"
            if requested and requested != found.profile:
                source += f" (overrides --protocol {requested})"
            profile = Profile.load(found.profile)
        elif requested:
            profile, source = Profile.load(requested), "--protocol"
        else:
            root = f" ({self.model.root})" if self.model.root not in ("", self.model.id) else ""
            raise unknown_checkpoint(f"the served model {self.model.id}{root}")
        self.check_profile(profile)
        return profile, source

    def new_session(self):
        from vrthinker.backends.openai.session import OpenAISession

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
