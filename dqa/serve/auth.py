"""Who may call: a Bearer token for the API, a signed session cookie for pages, a CSRF token on page posts.

Sessions are stateless: the cookie is a random nonce and its HMAC under the server's secret (the token,
or random bytes per process when there is none), so a restart with the same token keeps people logged in.
The CSRF token is another HMAC of the same nonce, given to the page and sent back in a header.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets

COOKIE = "dqa_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 7 * 24 * 3600


class Auth:
    def __init__(self, token: str | None):
        self.token = token or None
        self._secret = (token or "").encode() or os.urandom(32)

    @property
    def required(self) -> bool:
        return self.token is not None

    def _mac(self, purpose: str, nonce: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        return self.token is None or (isinstance(given, str)
                                      and hmac.compare_digest(given.encode(), self.token.encode()))

    def bearer_ok(self, authorization: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def new_session(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._mac('session', nonce)}"

    def session(self, cookie: str | None) -> str | None:
        """The session's nonce when the cookie is one this server signed, else None."""
        nonce, _, mac = (cookie or "").partition(".")
        if nonce and mac and hmac.compare_digest(mac, self._mac("session", nonce)):
            return nonce
        return None

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def csrf_ok(self, nonce: str | None, given: str | None) -> bool:
        return bool(nonce and given) and hmac.compare_digest(str(given), self.csrf(nonce))
