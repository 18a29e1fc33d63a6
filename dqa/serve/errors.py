"""One error type for the service: an HTTP status, a short code and a plain sentence (never a traceback)."""
from __future__ import annotations


class ApiError(Exception):
    """A request the service refuses; rendered as {"error": {"code", "message"}} with `status`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}
