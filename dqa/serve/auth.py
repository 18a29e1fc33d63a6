"""Who may call, and who they are: a Bearer token for the API, a signed session cookie for pages, a CSRF token
on page posts.

A token is the shared --token (its holder is the user `admin`) or one person's token from --users (their
name). The session cookie carries the user, its expiry time and a random nonce, signed with the server's
secret (derived from the token, or random bytes per process without one), so the server itself refuses an
expired or altered cookie. The signature also covers the user's token hash: a new token ends old sessions.
The CSRF token is another HMAC of the session's nonce, given to the page and sent back in a header.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from dqa.serve.users import TOKEN_USER, token_hash

TOKEN_ENV = "DQA_TOKEN"  # read by `dqa serve` and `dqa mcp` when --token is not given
COOKIE = "dqa_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Session:
    """A valid session: its nonce (for CSRF), its user ('' without authentication) and when it ends."""

    nonce: str
    user: str
    expires: int


def token_or_none(token: str | None) -> str | None:
    """The shared token, or None for none: an empty or whitespace-only string is no token (never a token that
    lets a server bind beyond 127.0.0.1, nor one a caller could match by sending a blank header)."""
    return token if isinstance(token, str) and token.strip() else None


def given_token(flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token `dqa serve` and `dqa mcp` run with: --token when given (a blank one means none, without
    falling back), else $DQA_TOKEN; blank either way is None (token_or_none)."""
    env = os.environ if environ is None else environ
    return token_or_none(flag if flag is not None else env.get(TOKEN_ENV))


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class Auth:
    def __init__(self, token: str | None, users: Mapping[str, str] | None = None, *,
                 session_seconds: float = SESSION_SECONDS, clock: Callable[[], float] = time.time):
        self.token = token_or_none(token)
        self.users = dict(users or {})  # name -> sha256 of the token
        self._names = {h: n for n, h in self.users.items()}
        self.session_seconds = session_seconds
        self._clock = clock
        self._secret = (hashlib.sha256(b"dqa-serve-session\0" + self.token.encode()).digest() if self.token
                        else os.urandom(32))

    @property
    def required(self) -> bool:
        return self.token is not None or bool(self.users)

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def user_of(self, given: str | None) -> str | None:
        """The user a token belongs to; None for no or a wrong token."""
        if not isinstance(given, str) or not given:
            return None
        if self.token is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return TOKEN_USER
        return self._names.get(token_hash(given))

    def token_ok(self, given: str | None) -> bool:
        return not self.required or self.user_of(given) is not None

    def bearer_user(self, authorization: str | None) -> str | None:
        """The caller's user from `Authorization: Bearer TOKEN` ('' when no token is required); None: refused."""
        if not self.required:
            return ""
        scheme, _, value = (authorization or "").partition(" ")
        return self.user_of(value.strip()) if scheme.lower() == "bearer" else None

    def bearer_ok(self, authorization: str | None) -> bool:
        return self.bearer_user(authorization) is not None

    def _binding(self, user: str) -> str | None:
        """What a session of `user` is tied to; None when no such user can have a session now."""
        if not self.required:
            return "" if user == "" else None
        if user == TOKEN_USER and self.token is not None:
            return "token"
        return self.users.get(user) if user else None

    def new_session(self, user: str = "") -> str:
        nonce = secrets.token_hex(16)
        body = f"{_b64(user)}.{int(self._clock() + self.session_seconds)}.{nonce}"
        return f"{body}.{self._mac('session', body + '|' + (self._binding(user) or ''))}"

    def session(self, cookie: str | None) -> Session | None:
        """The session when the cookie is one this server signed, unexpired, of a user who still has access."""
        parts = (cookie or "").split(".")
        if len(parts) != 4:
            return None
        user = _unb64(parts[0]) if parts[0] else ""
        expires, nonce, mac = parts[1], parts[2], parts[3]
        if user is None or not expires.isdigit() or not nonce:
            return None
        binding = self._binding(user)
        body = ".".join(parts[:3])
        if binding is None or not hmac.compare_digest(mac, self._mac("session", body + "|" + binding)):
            return None
        if int(expires) <= self._clock():
            return None
        return Session(nonce, user, int(expires))

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: Session | None, given: str | None) -> bool:
        return bool(session and given) and hmac.compare_digest(str(given), self.csrf(session))
