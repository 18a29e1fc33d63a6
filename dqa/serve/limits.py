"""Request bodies past a size are refused with 413 before the application reads them (ASGI middleware).

A declared Content-Length over the limit is refused at once; a body without one (chunked) is read up to
the limit and refused as soon as it passes it; a body within the limit is handed on unchanged.
"""
from __future__ import annotations

import json

MAX_BODY = 1 << 20  # bytes; the JSON of a 64-video request is a few KiB


class BodyLimit:
    def __init__(self, app, max_bytes: int = MAX_BODY):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH") or self.max_bytes <= 0:
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            if declared is not None and int(declared) > self.max_bytes:
                return await self._refuse(send)
        except ValueError:
            pass
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(body)
            more = message.get("more_body", False)
        whole, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": {"code": "body_too_large",
                                     "message": f"the request body is over {self.max_bytes} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
