"""The ASGI middleware in front of the app: Host headers, body limits, strict JSON, the
requests' metrics, and the hot route's valid events answered without FastAPI's routing."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError

from sessionrec.serving.batcher import Batcher
from sessionrec.serving.bodies import BadBody, is_json_type, read_json
from sessionrec.serving.engine import Engine, Event
from sessionrec.serving.events import EVENTS_PATH, EVENTS_ROUTE, apply_event
from sessionrec.serving.metrics import Metrics
from sessionrec.serving.schemas import EventIn
from sessionrec.serving.state import StoreUnavailable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Limits request bodies (413), records requests, latency and errors, and answers the
    hot route's valid requests itself.

    ``POST /v1/sessions/{id}/events`` with a JSON body that validates as ``EventIn`` and
    names a served model and a known item is answered here, by the same ``apply_event``
    the FastAPI route calls, without FastAPI's routing, dependency solving and exception
    middleware (about a third of the CPU of an event). Every other request, and any event
    that is not valid in every respect, goes to the FastAPI app with its body replayed, so
    errors (422, 404 with the closest titles, 413) are FastAPI's, unchanged.
    """

    def __init__(
        self,
        app: ASGI,
        max_body: int,
        metrics: Metrics,
        engine: Engine | None = None,
        batch: bool = True,
        allowed_hosts: tuple[str, ...] | None = None,
    ) -> None:
        self.app = app
        self.hosts = HostCheck(allowed_hosts)
        self.max_body = max_body
        self.metrics = metrics
        self.engine = engine
        self.batcher = Batcher(engine, metrics) if engine is not None and batch else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}
        name: str | None = None

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            host = self.hosts.refused(scope)
            if host is not None:
                detail = f"Host {host!r} is not served here (serve --allowed-hosts)"
                await send_json(send_status, 400, {"detail": detail})
                return
            if scope["method"] in _BODY_METHODS:
                try:
                    body, receive = await self._read(scope, receive)
                except _TooLarge:
                    await send_json(
                        send_status, 413, {"detail": f"request body over {self.max_body} bytes"}
                    )
                    return
                ctype = _header(scope, b"content-type")
                if body and is_json_type(ctype):
                    try:
                        parsed = read_json(body)
                    except BadBody as exc:
                        await send_json(send_status, 422, {"detail": f"request body: {exc}"})
                        return
                    hot = EVENTS_PATH.fullmatch(scope["path"])
                    if (
                        hot is not None
                        and self.engine is not None
                        and scope["method"] == "POST"
                        and not scope.get("root_path")
                        and isinstance(parsed, dict)
                        and await self._event(hot.group(1), parsed, send_status)
                    ):
                        name = EVENTS_ROUTE
                        return
            await self.app(scope, receive, send_status)
        finally:
            if name is None:
                name = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request(
                scope.get("method", ""), name, status["code"], time.perf_counter() - t0
            )

    async def _event(self, session_id: str, raw: dict[str, Any], send: Send) -> bool:
        """Answer a valid event; False (nothing sent, nothing changed) for any other, which
        the FastAPI route then answers with its own error."""
        try:
            event = EventIn.model_validate(raw)
        except (ValueError, ValidationError):
            return False
        assert self.engine is not None
        try:
            sm = self.engine.model(event.model)
            idx = sm.resolve(event.item)
        except Exception:  # nothing is changed yet: FastAPI answers it as it always did
            return False
        ev = Event(session_id, sm, idx, event.k, event.exclude_seen, event.event_id)
        try:
            if self.batcher is not None:
                out = await self.batcher.submit(ev)
            else:
                out = apply_event(self.engine, self.metrics, ev)
        except StoreUnavailable as exc:
            await send_json(send, 503, {"detail": str(exc)}, retry_after=True)
            return True
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(out)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": out})
        return True

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, Receive]:
        """The whole body (413 past ``max_body``, told by its length or found while
        reading a chunked one) and a receive that replays it."""
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = self.max_body + 1
            if n > self.max_body:
                raise _TooLarge
        read: list[Message] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body:
                raise _TooLarge
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in read if m["type"] == "http.request")
        return body, _replay(read, receive)


class HostCheck:
    """The ``Host`` header against the allowed names (as Starlette's TrustedHostMiddleware:
    ``*.example.com`` matches its subdomains, ``*`` anything), port removed, any case."""

    def __init__(self, allowed: tuple[str, ...] | None) -> None:
        names = [h.lower().strip("[]") for h in allowed or ("*",)]
        self.any = "*" in names
        self.exact = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def refused(self, scope: Scope) -> str | None:
        """The Host header when it is not allowed (``""`` when missing), else None."""
        if self.any:
            return None
        raw = _header(scope, b"host")
        text = raw.decode("latin-1") if raw is not None else ""
        name = text.lower()
        if name.startswith("["):  # [::1]:8000
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        if name in self.exact or (name and name.endswith(self.suffixes)):
            return None
        return text[:100]


def _replay(read: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages already read, then reads on."""
    pending = list(read)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class _TooLarge(Exception):
    pass


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, key: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == key:
            return bytes(v)
    return None


async def send_json(
    send: Send, status: int, payload: dict[str, Any], retry_after: bool = False
) -> None:
    body = json.dumps(payload, ensure_ascii=True).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
