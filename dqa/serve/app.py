"""The FastAPI application of `dqa serve`: JSON endpoints under /v1, the A/B page, media with ranges."""
from __future__ import annotations

import secrets
import sys
from contextlib import asynccontextmanager
from typing import Any, Optional, Union
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from vrthinker.errors import JudgeError, VideoError

from dqa.serve import page
from dqa.serve.auth import COOKIE, CSRF_HEADER, Auth, Session
from dqa.serve.config import MAX_PROMPT, ServeConfig
from dqa.serve.errors import ApiError
from dqa.serve.jobs import Jobs, QueueFull
from dqa.serve.limits import BodyLimit
from dqa.serve.media import Prober, file_response, resolve
from dqa.serve.questions import Questions, dimension_of
from dqa.serve.tables import Connections
from dqa.serve.thumbs import FrameCache

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")
DOC_PATHS = ("/docs", "/openapi.json")  # /docs is our own page (page.api_docs_page): no Swagger UI from a CDN


class CompareRequest(BaseModel):
    video1: Optional[str] = None
    video2: Optional[str] = None
    prompt: Optional[str] = None
    orders: str = "one"


class ScoreRequest(BaseModel):
    videos: Optional[list[str]] = None
    prompt: str = ""
    components: Optional[Union[list[str], str]] = None


class AbRequest(BaseModel):
    prompt: Optional[str] = None
    a: Optional[str] = None
    b: Optional[str] = None
    dimension: Optional[str] = None


class AnswerRequest(BaseModel):
    chosen: Optional[str] = None
    dimension: Optional[str] = None
    user: Optional[str] = None


class PageAnswer(BaseModel):
    answers: dict[str, str]
    user: Optional[str] = None


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message).to_dict(), status_code=status, headers=headers)


def _prompt(value: Any, required: bool = True) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(422, "missing_field", "prompt: give the text the videos were generated from")
        return ""
    if not isinstance(value, str):
        raise ApiError(422, "bad_prompt", "prompt must be text")
    if len(value) > MAX_PROMPT:
        raise ApiError(422, "prompt_too_long", f"prompt: {len(value)} characters; at most {MAX_PROMPT}")
    return value.strip()


def _local(url: str | None) -> str:
    """A redirect target on this server only (no scheme, no host, no '//')."""
    return url if isinstance(url, str) and url.startswith("/") and not url.startswith(("//", "/\\")) else "/ab"


def create_app(config: ServeConfig) -> FastAPI:
    """The application for one configuration; the job worker starts and stops with the app's lifespan."""
    conns = Connections(config.db)
    jobs = Jobs(conns, config.judge, budget_gb=config.budget_gb, device=config.device, max_queue=config.max_queue,
                score_chunk=config.score_chunk, lease_s=config.job_lease)
    questions = Questions(conns)
    auth = Auth(config.token, config.users, session_seconds=config.session_seconds)
    prober = Prober()
    frame_cache = FrameCache()
    roots = config.roots

    @asynccontextmanager
    async def lifespan(_app):
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()
            conns.close()

    app = FastAPI(title="dqa serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="The Verifier as a service: pairwise judgments, absolute scores and A/B "
                              "questions for people, on the project's SQLite store.")
    app.state.jobs, app.state.questions, app.state.config = jobs, questions, config
    app.add_middleware(BodyLimit, max_bytes=config.max_body)

    # -------------------------------------------------------------------------------------------------------
    # errors: always {"error": {"code", "message"}}, never a traceback

    @app.exception_handler(ApiError)
    async def _api_error(_request, e: ApiError):
        return _error(e.status, e.code, e.message)

    @app.exception_handler(QueueFull)
    async def _queue_full(_request, e: QueueFull):
        return _error(429, "queue_full", str(e), {"Retry-After": str(e.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, e: RequestValidationError):
        errs = e.errors()
        if any(x.get("type") == "json_invalid" for x in errs):
            return _error(400, "malformed_json", "the request body is not valid JSON")
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception):
        print(f"dqa serve: {request.method} {request.url.path} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return _error(500, "internal", "the server failed on this request; its log says why")

    # -------------------------------------------------------------------------------------------------------
    # who may call

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        host = (request.headers.get("host") or "").rsplit(":", 1)[0] if "]" not in (request.headers.get(
            "host") or "") else (request.headers.get("host") or "").rsplit("]", 1)[0] + "]"
        if not auth.required and host not in LOOPBACK_NAMES:
            # no token: only this machine's own names, so a web page cannot rebind a DNS name to us
            return _error(403, "bad_host", "this server answers only to 127.0.0.1 / localhost without a token")
        path = request.url.path
        if auth.required and (path in DOC_PATHS or path.startswith("/docs/")) and not media_allowed(request):
            if path == "/openapi.json":
                return _error(401, "unauthorized", "send Authorization: Bearer TOKEN or log in at /login",
                              {"WWW-Authenticate": "Bearer"})
            return RedirectResponse("/login?next=" + quote(path), status_code=303)
        if path.startswith("/v1/"):
            if not auth.bearer_ok(request.headers.get("authorization")):
                return _error(401, "unauthorized", "send Authorization: Bearer TOKEN",
                              {"WWW-Authenticate": "Bearer"})
            if request.method == "POST":
                ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
                if ctype != "application/json":
                    return _error(415, "unsupported_media_type", "send the body as JSON "
                                                                 "(Content-Type: application/json)")
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    def page_session(request: Request) -> Session | None:
        return auth.session(request.cookies.get(COOKIE))

    def who(request: Request, given: Any, session: Session | None = None) -> Any:
        """The user an answer is recorded as: with authentication, whoever the token or session says (a
        different `user` in the body is refused); without, the body's free text."""
        if not auth.required:
            return given
        user = session.user if session is not None else auth.bearer_user(request.headers.get("authorization"))
        if user is None:
            raise ApiError(401, "unauthorized", "send Authorization: Bearer TOKEN")
        if given not in (None, "", user):
            raise ApiError(403, "wrong_user", f"you are signed in as {user}; leave user out or give {user}")
        return user

    def media_allowed(request: Request) -> bool:
        if not auth.required:
            return True
        return page_session(request) is not None or (
            "authorization" in request.headers and auth.bearer_ok(request.headers["authorization"]))

    def html(body: str, nonce: str, status: int = 200, cookie: str | None = None) -> HTMLResponse:
        r = HTMLResponse(body, status_code=status)
        r.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; media-src 'self'; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        r.headers["Cache-Control"] = "no-store"
        if cookie:
            r.set_cookie(COOKIE, cookie, max_age=int(config.session_seconds), httponly=True, samesite="strict",
                         path="/")
        return r

    # -------------------------------------------------------------------------------------------------------
    # checks shared by the endpoints

    def video(path: Any, field: str) -> tuple[str, str]:
        """(real path, content hash) of a video inside the roots that decodes."""
        real = resolve(path, roots, field)
        prober.check(real, field)
        try:
            return real, conns.get().file_hash(real)
        except VideoError as e:
            raise ApiError(422, "unreadable", f"{field}: {e}") from None

    # -------------------------------------------------------------------------------------------------------
    # the API

    @app.get("/health", summary="the worker's state, the queue's depth and its oldest job's age (503: worker dead)")
    def health():
        try:
            h = jobs.health()
        except Exception as e:  # noqa: BLE001 - an unreadable store is an unhealthy service, said plainly
            return JSONResponse({"status": "store_error", "message": f"{type(e).__name__}: {e}"}, status_code=503)
        ok = h.pop("ok")
        return JSONResponse({"status": "ok" if ok else "dead", **h}, status_code=200 if ok else 503)

    @app.get("/", include_in_schema=False)
    def landing():
        nonce = secrets.token_urlsafe(12)
        return html(page.landing_page(nonce), nonce)

    @app.get("/docs", include_in_schema=False)
    def api_docs():
        nonce = secrets.token_urlsafe(12)
        return html(page.api_docs_page(app.openapi(), nonce), nonce)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(page.FAVICON_SVG, media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.post("/v1/compare", status_code=202, summary="judge two videos (a job)")
    def compare(body: CompareRequest):
        prompt = _prompt(body.prompt)
        if body.orders not in ("one", "both"):
            raise ApiError(422, "bad_orders", f"orders must be 'one' or 'both', not {body.orders!r}")
        v1, h1 = video(body.video1, "video1")
        v2, h2 = video(body.video2, "video2")
        job = jobs.submit("compare", {"video1": v1, "video2": v2, "prompt": prompt, "orders": body.orders}, [h1, h2])
        return {"job": job.id, "state": job.state}

    @app.post("/v1/score", status_code=202, summary="absolute scores and a grade per video (a job)")
    def score(body: ScoreRequest):
        from dqa.score.scoring import resolve_components

        prompt = _prompt(body.prompt, required=False)
        if not body.videos:
            raise ApiError(422, "missing_field", "videos: give a list of video paths")
        if len(body.videos) > config.max_videos:
            raise ApiError(422, "too_many_videos", f"videos: at most {config.max_videos} per job")
        comps = [body.components] if isinstance(body.components, str) else body.components
        try:
            components = list(resolve_components(comps))
        except JudgeError as e:
            raise ApiError(422, "bad_components", f"components: {e}") from None
        checked = [video(v, f"videos[{i}]") for i, v in enumerate(body.videos)]
        job = jobs.submit("score", {"videos": [p for p, _ in checked], "prompt": prompt, "components": components},
                          [h for _, h in checked])
        return {"job": job.id, "state": job.state}

    @app.get("/v1/jobs/{job_id}", summary="a job's state and, when done, its result")
    def job(job_id: str):
        j = jobs.get(job_id)
        if j is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        return j.to_dict()

    @app.post("/v1/ab", status_code=201, summary="ask a person which of two videos is better")
    def ask(body: AbRequest):
        prompt = _prompt(body.prompt)
        dimension = dimension_of(body.dimension)
        a, ha = video(body.a, "a")
        b, hb = video(body.b, "b")
        if ha == hb:
            raise ApiError(422, "same_video", "a and b have the same content")
        j = jobs.submit("compare", {"video1": a, "video2": b, "prompt": prompt, "orders": "one"}, [ha, hb])
        return {"question": questions.ask(prompt, a, b, dimension, j.id).id}

    def page_user(request: Request) -> str | None:
        """With authentication, the session's user: each person's page shows and counts only their answers."""
        session = page_session(request) if auth.required else None
        return session.user if session is not None else None

    def question_doc(qid: int, user: str | None = None) -> dict:
        q = questions.get(qid)
        if q is None:
            raise ApiError(404, "not_found", f"no A/B question {qid}")
        q = q.seen_by(user)
        d = q.to_dict()
        d["verdict"] = None
        if q.answered:  # the judge's view only after the person's, so it cannot anchor them
            j = jobs.get(q.job) if q.job else None
            d.update(job=q.job, state=j.state if j else None, verdict=j.result if j else None,
                     error=j.error if j else None)
        return d

    def page_doc(qid: int, user: str | None = None) -> dict:
        """The question as the page sees it: once answered and judged, with thumbnails of the frames the
        judge looked at (data URIs, read only from inside the roots)."""
        d = question_doc(qid, user)
        d["frames"] = None
        if d["answered"] and isinstance(d.get("verdict"), dict):
            q = questions.get(qid)
            d["frames"] = frame_cache.get(q.job, d["verdict"], (q.a, q.b), lambda p: resolve(p, roots))
        return d

    @app.get("/v1/ab/{qid}", summary="an A/B question and, once answered, the answers and the judge's verdict")
    def get_question(qid: int):
        return question_doc(qid)

    @app.post("/v1/ab/{qid}/answer", status_code=201, summary="answer an A/B question (stored as a selection)")
    def answer(qid: int, body: AnswerRequest, request: Request):
        user = who(request, body.user)
        return {"question": qid, **questions.answer(qid, body.chosen, body.dimension, user).to_dict()}

    # -------------------------------------------------------------------------------------------------------
    # pages

    def page_or_login(request: Request, render) -> Response:
        nonce = secrets.token_urlsafe(12)
        session = page_session(request)
        cookie = None
        if session is None:
            if auth.required:
                return RedirectResponse("/login?next=" + quote(request.url.path), status_code=303)
            cookie = auth.new_session()
            session = auth.session(cookie)
        return html(render(auth.csrf(session), nonce), nonce, cookie=cookie)

    @app.get("/ab", include_in_schema=False)
    def ab_next(request: Request):
        q = questions.next_open(user=page_user(request))
        if q is None:
            return page_or_login(request, lambda _csrf, nonce: page.empty_page(nonce))
        return ab_question(q.id, request)

    @app.get("/ab/{qid}", include_in_schema=False)
    def ab_question(qid: int, request: Request):
        q = questions.get(qid)
        if q is None:
            raise ApiError(404, "not_found", f"no A/B question {qid}")
        user = page_user(request)
        q = q.seen_by(user)
        nxt = questions.next_open(after=qid, user=user)
        next_url = f"/ab/{nxt.id}" if nxt and nxt.id != qid else None
        signed_in = (page_session(request) or Session("", "", 0)).user if auth.required else None
        return page_or_login(request, lambda csrf, nonce: page.ab_page(q, csrf, nonce, next_url, signed_in))

    def page_post_allowed(request: Request) -> None:
        session = page_session(request)
        if session is None and auth.required:
            raise ApiError(401, "unauthorized", "log in at /login first")
        if not auth.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise ApiError(403, "csrf", "missing or wrong CSRF token: reload the page")

    @app.post("/ab/{qid}/answer", include_in_schema=False)
    def ab_answer(qid: int, body: PageAnswer, request: Request):
        page_post_allowed(request)
        q = questions.get(qid)
        if q is None:
            raise ApiError(404, "not_found", f"no A/B question {qid}")
        mine = page_user(request)
        q = q.seen_by(mine)
        if q.answered:
            raise ApiError(409, "already_answered", f"question {qid} is already answered")
        picks = {dimension_of(d): c for d, c in body.answers.items()}
        if set(picks) != set(q.dimensions):
            raise ApiError(422, "incomplete", f"answer every dimension asked: {', '.join(q.dimensions)}")
        for d, c in picks.items():
            if str(c).lower() not in ("a", "b", "tie"):
                raise ApiError(422, "bad_choice", f"{d}: chosen must be 'a', 'b' or 'tie', not {c!r}")
        user = who(request, body.user, page_session(request))
        given = [questions.answer(qid, picks[d], d, user).to_dict() for d in q.dimensions]
        nxt = questions.next_open(after=qid, user=mine)
        return {**page_doc(qid, mine), "answers": given, "next": f"/ab/{nxt.id}" if nxt else None}

    @app.get("/ab/{qid}/verdict", include_in_schema=False)
    def ab_verdict(qid: int, request: Request):
        if auth.required and page_session(request) is None:
            raise ApiError(401, "unauthorized", "log in at /login first")
        d = page_doc(qid, page_user(request))
        if not d["answered"]:
            raise ApiError(409, "not_answered", "answer the question first")
        return d

    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/ab"):  # noqa: A002 - the query parameter's name
        nonce = secrets.token_urlsafe(12)
        return html(page.login_page(nonce, _local(next), failed=False), nonce)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given, target = (form.get("token") or [""])[0], _local((form.get("next") or ["/ab"])[0])
        if not auth.required:
            return RedirectResponse(target, status_code=303)
        user = auth.user_of(given)
        if user is None:
            nonce = secrets.token_urlsafe(12)
            return html(page.login_page(nonce, target, failed=True), nonce, status=401)
        r = RedirectResponse(target, status_code=303)
        r.set_cookie(COOKIE, auth.new_session(user), max_age=int(config.session_seconds), httponly=True,
                     samesite="strict", path="/")
        return r

    def media_file(path: str, request: Request) -> Response:
        if not media_allowed(request):
            raise ApiError(401, "unauthorized", "send Authorization: Bearer TOKEN or log in at /login")
        return file_response(resolve(path, roots), request.headers.get("range"), head=request.method == "HEAD")

    @app.get("/media", summary="a video file from the media roots (HTTP range requests)")
    def media(path: str, request: Request):
        return media_file(path, request)

    @app.head("/media", summary="the headers GET /media would send, without the body")
    def media_head(path: str, request: Request):
        return media_file(path, request)

    return app
