"""`dqa mcp`: its flags, the HTTP guard (dqa serve's token rules), and the function that runs the server.

  dqa mcp --media-root DIR [--media-root DIR ...] [--db DB] [--transport stdio|http] [--host 127.0.0.1]
          [--port 8701] [--token T | env DQA_TOKEN] [--users FILE] [--job-lease S] [--tune-out DIR] [--tune-max-steps N]
          [--tune-samples K] [--allow-label-swap] [the judge's model flags: --backend, --model, --protocol, ...]
"""
from __future__ import annotations

import argparse
import os
import sys

from vrthinker.errors import UsageError

from dqa.serve.auth import given_token
from dqa.serve.config import TOKEN_ENV, auth_summary, check_listen
from dqa.serve.lease import LEASE_S

NEEDS = 'dqa mcp needs the MCP SDK ({name}): pip install "vrthinker[serve]"'
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def add_parser(sub) -> None:
    from vrthinker.cliutil import add_model_args
    from vrthinker.store import default_path

    s = sub.add_parser("mcp", help="the Verifier and the Tuner as MCP tools for agents (stdio or HTTP)",
                       description="Serve verify_video, compare_videos, get_frames, ask_preference, "
                                   "record_selection, run_tuner and failure_patterns over the Model Context "
                                   "Protocol, on the same store and job queue as dqa serve.")
    s.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default): a client starts this as a subprocess; http: streamable HTTP at /mcp")
    s.add_argument("--host", default="127.0.0.1", help="http: address to bind (default 127.0.0.1; any other "
                                                       "needs a token)")
    s.add_argument("--port", type=int, default=8701, help="http: port (default 8701)")
    s.add_argument("--db", default=default_path(), help="the SQLite store (default $VRTHINKER_DB or "
                                                        "judgments.sqlite)")
    s.add_argument("--media-root", action="append", required=True, metavar="DIR",
                   help="a directory videos may be read from (repeatable); nothing outside is read")
    s.add_argument("--token", default=None, help=f"http: require this Bearer token (default ${TOKEN_ENV}; "
                                                 "prefer the variable: flags show in the process list)")
    s.add_argument("--users", default=None, metavar="FILE",
                   help="http: per-user tokens, one 'NAME SHA256' line each (as dqa serve); a selection is "
                        "recorded as the token's user")
    s.add_argument("--components", action="append", default=None, metavar="C[,C...]",
                   help="verify_video's components when the caller names none (as dqa score --components; "
                        "default: offline with --backend metrics, else offline,semantic,spatial)")
    s.add_argument("--vram-budget", type=float, default=24.0, metavar="GB",
                   help="memory budget for one scoring worker at a time (default 24)")
    s.add_argument("--job-lease", type=float, default=LEASE_S, metavar="S",
                   help=f"as dqa serve: a running job with no heartbeat for S seconds is run again by another "
                        f"process on the store (default {LEASE_S:g})")
    s.add_argument("--tune-out", default=None, metavar="DIR",
                   help="where run_tuner saves the adapter (default: dqa-adapter beside the store)")
    s.add_argument("--tune-max-steps", type=int, default=50, metavar="N", help="run_tuner: DPO steps at most")
    s.add_argument("--tune-samples", type=int, default=None, metavar="K",
                   help="run_tuner: conversations per selection, the greedy one included (as dqa tune --samples)")
    s.add_argument("--allow-label-swap", action="store_true",
                   help="run_tuner: build synthetic rows where no sample reaches a label (as dqa tune)")
    add_model_args(s)


class Guard:
    """ASGI wrapper with dqa serve's rules: without a token only this machine's own host names are answered
    (no DNS rebinding); with one, every request but /health needs `Authorization: Bearer TOKEN`."""

    def __init__(self, app, auth):
        self.app = app
        self.auth = auth

    @staticmethod
    def host(headers: dict) -> str:
        h = headers.get("host", "")
        return h.rsplit("]", 1)[0] + "]" if "]" in h else h.rsplit(":", 1)[0]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.responses import JSONResponse

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refuse = None
        if not self.auth.required and self.host(headers) not in LOOPBACK_NAMES:
            refuse = JSONResponse({"error": {"code": "bad_host", "message": "this server answers only to "
                                             "127.0.0.1 / localhost without a token"}}, status_code=403)
        elif scope.get("path") != "/health" and not self.auth.bearer_ok(headers.get("authorization")):
            refuse = JSONResponse({"error": {"code": "unauthorized", "message": "send Authorization: Bearer TOKEN"}},
                                  status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if refuse is not None:
            return await refuse(scope, receive, send)
        return await self.app(scope, receive, send)


def service_of(a: argparse.Namespace):
    from dqa.mcp.service import Service, ToolFailure, TunerSettings
    from dqa.serve.command import judge_kwargs

    if a.tune_max_steps < 1:
        raise UsageError("--tune-max-steps must be at least 1")
    if a.tune_samples is not None and a.tune_samples < 1:
        raise UsageError("--tune-samples must be at least 1")
    extra = {k: v for k, v in (("samples", a.tune_samples), ("allow_label_swap", a.allow_label_swap or None))
             if v is not None}
    out = a.tune_out or os.path.join(os.path.dirname(os.path.abspath(a.db)), "dqa-adapter")
    tuner = TunerSettings(out=out, max_steps=a.tune_max_steps, extra=extra)
    if a.components:
        from dqa.score.scoring import resolve_components

        resolve_components(a.components)  # an unknown name is a usage error now, not on the first call
    try:
        return Service(a.db, a.media_root, judge_kwargs(a), budget_gb=a.vram_budget, device=a.device, tuner=tuner,
                       components=a.components, job_lease=a.job_lease)
    except ToolFailure as e:
        raise UsageError(str(e)) from None


def run(a: argparse.Namespace) -> int:
    token = given_token(a.token)  # blank: none, as dqa serve
    if a.users and a.transport != "http":
        raise UsageError("--users goes with --transport http (stdio has one user: whoever started it)")
    users = {}
    if a.transport == "http":
        from dqa.serve.users import load_users

        users = load_users(a.users) if a.users else {}
        check_listen(a.host, a.port, token or bool(users))
    try:
        import anyio

        from dqa.mcp.server import build
    except ImportError as e:
        raise UsageError(NEEDS.format(name=(e.name or "mcp").split(".")[0])) from None
    from vrthinker.cliutil import quiet_libraries

    quiet_libraries()
    from dqa.serve.auth import Auth

    auth = Auth(token, users) if a.transport == "http" else None
    service = service_of(a)
    server = build(service, auth=auth)
    service.start()
    try:
        if a.transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            import uvicorn
            from starlette.responses import JSONResponse

            @server.custom_route("/health", methods=["GET"])
            async def health(_request):
                return JSONResponse({"status": "ok"})

            app = Guard(server.streamable_http_app(host=a.host), auth)
            how = auth_summary(token, users)
            print(f"dqa mcp: http://{a.host}:{a.port}/mcp  (streamable HTTP; store {a.db}; "
                  f"auth {how or 'none, loopback only'})", file=sys.stderr, flush=True)
            uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False)
    finally:
        service.stop()
    return 0
