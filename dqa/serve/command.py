"""`dqa serve`: its command-line flags and the function that starts the server.

  dqa serve [--host 127.0.0.1] [--port 8700] [--db PATH] --media-root DIR [--media-root DIR ...]
            [--token TOKEN | env DQA_TOKEN] [--users FILE] [--session-hours H]
            [--max-queue N] [--max-body BYTES] [--max-videos N] [--score-chunk N] [--job-lease S]
            [the judge's model flags: --backend, --model, --protocol, ...]
"""
from __future__ import annotations

import argparse
import sys

from vrthinker.errors import UsageError

from dqa.serve.lease import LEASE_S
from dqa.serve.auth import given_token
from dqa.serve.config import MAX_QUEUE, MAX_VIDEOS, SCORE_CHUNK, TOKEN_ENV, ServeConfig, auth_summary, check_listen


def add_parser(sub) -> None:
    from vrthinker.cliutil import add_model_args
    from vrthinker.store import default_path

    s = sub.add_parser("serve", help="the Verifier as a local HTTP service, and A/B questions in a browser",
                       description="Serve judgments, scores and A/B questions over HTTP (JSON under /v1, "
                                   "the OpenAPI page at /docs, the A/B page at /ab).")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs a token)")
    s.add_argument("--port", type=int, default=8700, help="port to listen on (default 8700)")
    s.add_argument("--db", default=default_path(), help="the SQLite store (default $VRTHINKER_DB or "
                                                        "judgments.sqlite)")
    s.add_argument("--media-root", action="append", required=True, metavar="DIR",
                   help="a directory videos may be read from (repeatable); nothing outside is served")
    s.add_argument("--token", default=None, help=f"require this Bearer token (default ${TOKEN_ENV}; "
                                                 "prefer the variable: flags show in the process list)")
    s.add_argument("--users", default=None, metavar="FILE",
                   help="per-user tokens: one 'NAME SHA256-OF-TOKEN' line each; an A/B answer is recorded as "
                        "the user whose token or session sent it")
    s.add_argument("--session-hours", type=float, default=168.0, metavar="H",
                   help="a page login lasts this long, checked by the server (default 168)")
    s.add_argument("--max-queue", type=int, default=MAX_QUEUE, metavar="N",
                   help=f"queued jobs at most; past it 429 with Retry-After (default {MAX_QUEUE}; 0: no bound)")
    s.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                   help="larger request bodies are refused with 413 (default 1048576)")
    s.add_argument("--max-videos", type=int, default=MAX_VIDEOS, metavar="N",
                   help=f"videos in one score request at most (default {MAX_VIDEOS})")
    s.add_argument("--score-chunk", type=int, default=SCORE_CHUNK, metavar="N",
                   help=f"a score job yields to waiting compares every N videos (default {SCORE_CHUNK})")
    s.add_argument("--job-lease", type=float, default=LEASE_S, metavar="S",
                   help=f"a running job whose process sends no heartbeat for S seconds is run again by another "
                        f"process on the store (default {LEASE_S:g}; a dead process on this host: at once)")
    s.add_argument("--vram-budget", type=float, default=24.0, metavar="GB",
                   help="memory budget for one scoring worker at a time (default 24)")
    add_model_args(s)


def judge_kwargs(a: argparse.Namespace) -> dict:
    """Judge.from_pretrained's arguments from the model flags (unset ones left out, as `judge` does)."""
    from vrthinker.cliutil import check_model_args, model_options

    check_model_args(a)
    if a.backend == "hf":  # the profile as `judge` picks it; an unknown checkpoint is refused before serving
        from vrthinker.judge import DEFAULT_MODEL
        from vrthinker.protocol import resolve

        resolve(a.model or DEFAULT_MODEL, a.protocol)
    kw = {"model": a.model, "backend": a.backend, **model_options(a)}
    return {k: v for k, v in kw.items() if v is not None}


def run(a: argparse.Namespace) -> int:
    from dqa.serve.users import load_users

    token = given_token(a.token)  # blank: none
    users = load_users(a.users) if a.users else {}
    check_listen(a.host, a.port, token or bool(users))
    try:
        import uvicorn

        from dqa.serve.app import create_app
    except ImportError as e:
        raise UsageError(f"dqa serve needs {e.name}: pip install 'vrthinker[serve]'") from None
    from vrthinker.cliutil import quiet_libraries

    quiet_libraries()
    config = ServeConfig(db=a.db, roots=tuple(a.media_root), judge=judge_kwargs(a), token=token, host=a.host,
                         port=a.port, budget_gb=a.vram_budget, device=a.device, users=users,
                         max_queue=a.max_queue, max_body=a.max_body, max_videos=a.max_videos,
                         score_chunk=a.score_chunk, session_seconds=a.session_hours * 3600,
                         job_lease=a.job_lease)
    app = create_app(config)
    auth = auth_summary(token, users) or "none, loopback only"
    print(f"dqa serve: http://{a.host}:{a.port}  (API /v1, docs /docs, A/B page /ab; store {a.db}; "
          f"auth {auth}; queue {a.max_queue})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False)
    return 0
