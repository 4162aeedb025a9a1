"""A size limit on every request body, before any route parses it.

FastAPI reads a JSON body whole before pydantic looks at it, so a list field without a bound
(or a gigabyte of whitespace) would be read into memory first. This middleware refuses a body
over ``MAX_BODY_BYTES`` with 413 — by its ``Content-Length`` at once, or, for a chunked body, as
soon as the bytes received pass the limit. The routes that take bulk data (events, imports,
telegrams, topology documents) stream their body with their own, larger limits
(``api/ingesting.read_limited``) and pass through here untouched.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY_BYTES", "BodyLimitMiddleware"]

MAX_BODY_BYTES = 1024 * 1024
# routes that read their body with their own limit (api/ingesting.read_limited)
STREAMED = re.compile(
    r"^/api/v1/tenants/[^/]+/(events|imports/[a-z-]+|telegrams/[a-z0-9]+|topology|devices/import)$"
)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or STREAMED.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        # read the body here (it is small by then), refusing it the moment it grows too big
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "PayloadTooLarge",
                "detail": f"request body over {self.limit} bytes; bulk data goes to the "
                "events, imports, telegrams or topology routes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
