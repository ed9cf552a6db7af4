"""What every request passes before a route: the API key and the body limit (an ASGI middleware).

The key is taken from ``X-API-Key``, ``Authorization: Bearer <key>`` or the ``egorag_key``
cookie (set by the page's sign-in form, so that ``<video>`` and ``<img>`` elements, which send no
headers, are authorised too). ``/health`` needs none. A body is refused at its declared
``Content-Length`` when that is over the limit, and while it streams in otherwise (chunked).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

COOKIE = "egorag_key"
OPEN_PATHS = ("/health",)
MAX_BODY = 32 << 20  # bytes: an uploaded or base64 image query, with room to spare
BODY_TIMEOUT_S = 30.0  # a body whose next part takes longer than this to arrive is given up (408)

SIGN_IN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>egorag: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto">
<h1>egorag</h1><p>This server needs its API key.</p>
<form method="post" action="/login"><input type="password" name="api_key" placeholder="API key" autofocus required>
<button>Sign in</button></form></body></html>"""


class BodyTooLarge(Exception):
    """A request body over the limit (answered 413)."""


class BodyTimeout(Exception):
    """A request body that stopped arriving (answered 408)."""


class Guard:
    def __init__(self, app, api_key: str | None, max_body: int = MAX_BODY):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            status = 400 if not declared.isdigit() else 413
            message = f"bad Content-Length: {declared!r}" if status == 400 else \
                f"request body of {declared} bytes is over the limit of {self.max_body}"
            return await _reply(send, status, {"error": message}, close=True)
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            if scope["path"] == "/login" and scope["method"] == "POST":
                receive = await self._check_login(receive)
                if receive is None:
                    return await _reply(send, 401, {"error": "wrong API key"})
            elif not self._authorised(headers):
                if scope["path"] == "/" and "text/html" in headers.get("accept", ""):
                    return await _reply_html(send, 401, SIGN_IN)
                return await _reply(send, 401, {"error": "this server needs its API key: send it as the X-API-Key header "
                                                "(or Authorization: Bearer KEY)"})
        await self.app(scope, self._limited(receive), send)

    def _authorised(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given is None and "cookie" in headers:
            try:
                morsel = SimpleCookie(headers["cookie"]).get(COOKIE)
            except CookieError:
                morsel = None
            given = morsel.value if morsel is not None else None
        return given is not None and hmac.compare_digest(given.encode(), self.api_key.encode())

    async def _check_login(self, receive):
        """The sign-in form's body, read whole (it is small) and checked; a ``receive`` that
        replays it for the route, or None when the key is wrong."""
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > 4096:
                return None
        given = parse_qs(body.decode("latin-1")).get("api_key", [""])[-1]
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return None
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _limited(self, receive):
        """``receive`` that counts the body against the limit and gives up on one that stalls
        (only while the body is incomplete: afterwards it waits for a disconnect, unbounded)."""
        seen, complete = 0, False

        async def counted():
            nonlocal seen, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise BodyTimeout(f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_body:
                    raise BodyTooLarge(f"request body over the limit of {self.max_body} bytes")
            else:
                complete = True
            return message

        return counted


async def _reply(send, status: int, payload: dict, close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reply_html(send, status: int, html: str) -> None:
    body = html.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
