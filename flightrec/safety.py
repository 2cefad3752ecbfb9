"""An ASGI guard: an unexpected exception becomes a clean 500 that closes its connection.

Starlette's error middleware answers 500 and then re-raises, and uvicorn then cuts the
connection under a keep-alive client, whose next request on it is reset. Caught here
instead, the 500 carries ``Connection: close``, so clients open a fresh connection and
no other request is harmed; the exception is still logged with its traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("flightrec.errors")

Scope = dict[str, Any]


class CloseOnErrorMiddleware:
    """Wraps an ASGI app; only HTTP requests are guarded."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: only closing the connection is left
            body = json.dumps({"detail": "internal server error; the server log has the details"}).encode()
            await send({
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            })
            await send({"type": "http.response.body", "body": body})
