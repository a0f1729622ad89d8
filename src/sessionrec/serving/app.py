"""The HTTP API (FastAPI) over an ``Engine``: sessions, stateless recommend, item search,
models, health, Prometheus metrics, admin reload, and the static web page at ``/``.

Handlers are ``async`` and do their (short) work inline: a request is one store append, one
model step and one top-k, a few milliseconds at most, and running it on the event loop saves
the hand-off to a thread pool. Parallelism comes from ``--workers``.

Session events that reach a worker together (under load: every request read in the same turn
of the event loop) are answered together (``_Batcher``): one store transaction for their
appends and, for a model whose states join, one model step and one scoring product for all
of them. Alone, an event waits one turn of the loop more than it would, and no timer is
involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from sessionrec.errors import SessionrecError, UnknownNameError
from sessionrec.serving.bodies import BadBody, is_json_type, one_line, read_json, safe_errors
from sessionrec.serving.catalog import LookupFailed, ServedModel, json_text
from sessionrec.serving.engine import (
    Engine,
    Event,
    Recommendation,
    describe_models,
    folder_report,
)
from sessionrec.serving.state import StoreUnavailable

log = logging.getLogger(__name__)

SESSION_ID = r"^[A-Za-z0-9_.:@-]{1,128}$"
MAX_K = 1000

SessionPath = Annotated[str, Path(pattern=SESSION_ID, description="Any id the client picks.")]
K = Annotated[int, Query(ge=1, le=MAX_K)]
ModelName = Annotated[str | None, Query(max_length=200)]


@dataclass
class AppOptions:
    """Settings of the app itself (the engine holds models and sessions)."""

    admin_token: str | None = None
    #: the Host headers answered (``*.example.com``, ``*``); None: any
    allowed_hosts: tuple[str, ...] | None = None
    max_body: int = 64 * 1024
    sweep_seconds: float = 60.0
    #: how often the store's ``maintain`` runs (SQLite: the WAL checkpoint)
    maintain_seconds: float = 1.0
    handle_sighup: bool = False
    #: called after ``POST /admin/reload`` reloaded this process (``serve --workers N``:
    #: tells the parent, which has the other workers reload)
    on_reload: Callable[[], None] | None = None
    #: answer valid events without FastAPI's routing (``Guard``); False: every request
    #: goes through FastAPI (the reference the fast path is tested against)
    fast_events: bool = True
    #: answer the events read in the same turn of the event loop together (``_Batcher``;
    #: with ``fast_events``); False: one by one
    batch_events: bool = True
    #: prometheus_client's multiprocess folder when several workers serve (``Metrics``)
    metrics_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- request and response bodies ---------------------------------------------------------------
def _encodable(v: str | None) -> str | None:
    if v is not None:
        v.encode("utf-8")  # lone surrogates cannot be stored: 422, not 500
    return v


class EventIn(BaseModel):
    # strict: a JSON value of another type is refused, not coerced (true is not item 1)
    model_config = ConfigDict(extra="forbid", strict=True)
    item: int | Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="An item id or a title (resolved as `sessionrec recommend` does)."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="How many recommendations to return.")
    exclude_seen: bool = Field(False, description="Leave the session's items out of the list.")
    model: str | None = Field(None, max_length=200, description="A served model's name.")
    event_id: str | None = Field(
        None,
        pattern=SESSION_ID,
        description="Optional client id of this event: a retried request with the same id "
        "is not applied twice.",
    )

    @field_validator("item", "model")
    @classmethod
    def _utf8(cls, v: Any) -> Any:
        return _encodable(v) if isinstance(v, str) else v


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    items: list[int | Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        min_length=1, max_length=1000, description="The session: item ids or titles, oldest first."
    )
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = False
    model: str | None = Field(None, max_length=200)

    @field_validator("items")
    @classmethod
    def _utf8(cls, v: list[Any]) -> list[Any]:
        for x in v:
            if isinstance(x, str):
                _encodable(x)
        return v

    @field_validator("model")
    @classmethod
    def _utf8_model(cls, v: str | None) -> str | None:
        return _encodable(v)


class ItemOut(BaseModel):
    item_id: int | str
    title: str | None
    year: int | None
    genres: list[str]


class RecommendationOut(BaseModel):
    rank: int
    item_id: int | str
    title: str | None
    year: int | None
    genres: list[str]
    score: float
    because: list[ItemOut] | None = Field(
        None, description="kNN models: the session's items that led to this one."
    )


class EventOut(BaseModel):
    session_id: str
    model: str
    events: int = Field(description="Every event the session received (the cap included).")
    kept: int = Field(
        description="The latest events kept (at most --max-session-events), which the list "
        "is ranked from."
    )
    applied: bool = Field(description="False when event_id was already recorded.")
    recommendations: list[RecommendationOut]


class RecommendationsOut(BaseModel):
    session_id: str | None
    model: str
    events: int
    kept: int
    recommendations: list[RecommendationOut]


class SessionOut(BaseModel):
    session_id: str
    events: int = Field(description="Every event the session received.")
    kept: int = Field(description="The latest events kept, listed in items.")
    items: list[ItemOut]
    created: float
    updated: float
    expires_at: float


class ItemsOut(BaseModel):
    items: list[ItemOut]


class ModelsOut(BaseModel):
    default: str
    models: list[dict[str, Any]]


class Status(BaseModel):
    status: str
    detail: str | None = None


class NotReady(BaseModel):
    status: str
    detail: str = Field(description="Why the service is not ready.")


class ErrorOut(BaseModel):
    detail: Any = Field(description="What is wrong, in one line.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Invalid requests: each field's error (location, message, type)."
    )
    closest: list[str] | None = None
    candidates: list[str] | None = None


class ReloadOut(BaseModel):
    status: str
    models: list[str]
    seconds: float


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "Unknown session, item (with the closest titles) or model.",
    },
    413: {"model": ErrorOut, "description": "Request body too large."},
    422: {"model": ErrorOut, "description": "Invalid request."},
    503: {
        "model": ErrorOut,
        "description": "The session store is unavailable: nothing was stored; retry.",
    },
}


# -- metrics -----------------------------------------------------------------------------------
class Metrics:
    """The service's Prometheus metrics.

    With ``multiprocess_dir`` (``serve --workers N``, N > 1) the counters and the histogram
    live in prometheus_client's multiprocess files in that folder (the variable
    ``PROMETHEUS_MULTIPROC_DIR`` names it to every worker before prometheus_client is
    imported there), and a scrape, whichever worker answers it, reads and sums every
    worker's. The live-session count is read from the shared store at scrape time; the
    per-process model steps and rebuilds are gauges each worker sets after its requests and
    a scrape sums over the live workers.
    """

    def __init__(self, engine: Engine, multiprocess_dir: str | None = None) -> None:
        self.engine = engine
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sessionrec_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "sessionrec_request_seconds",
            "Request latency (seconds), in the server.",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.errors = Counter("sessionrec_errors", "Error answers.", ["kind"], registry=r)
        self.batches = Histogram(
            "sessionrec_event_batch_size",
            "Session events answered together (read in the same turn of the event loop).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.events = Counter("sessionrec_events", "Session events applied.", ["model"], registry=r)
        self._live = _LiveSessions(engine)
        r.register(self._live)
        self.rebuilds = Gauge(
            "sessionrec_state_rebuilds",
            "Streaming states rebuilt from stored events (restart, reload, eviction).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.steps = Gauge(
            "sessionrec_model_steps",
            "Model streaming steps run.",
            registry=r,
            multiprocess_mode="livesum",
        )
        # with several workers, one series per worker (label pid): how evenly they share
        self.worker_requests = Gauge(
            "sessionrec_worker_requests",
            "Requests answered by this worker process (several workers: one series each).",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._answered = 0
        if multiprocess_dir is None:
            self.worker_requests.set_function(lambda: self._answered)
            self.rebuilds.set_function(lambda: engine.rebuilds)
            self.steps.set_function(lambda: engine.steps)
        # labelled children by label values: ``labels()`` looks them up under a lock
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self._errors: dict[int, Any] = {}
        self._events: dict[str, Any] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(method, route, str(status))
        child.inc()
        hist = self._latency.get(route)
        if hist is None:
            hist = self._latency[route] = self.latency.labels(route)
        hist.observe(seconds)
        if status >= 400:
            err = self._errors.get(status)
            if err is None:
                err = self._errors[status] = self.errors.labels(str(status))
            err.inc()
        self._answered += 1
        if self.multiprocess_dir is not None:
            self.worker_requests.set(self._answered)
            self.steps.set(self.engine.steps)
            self.rebuilds.set(self.engine.rebuilds)

    def event(self, model: str) -> None:
        """Count one applied session event."""
        child = self._events.get(model)
        if child is None:
            child = self._events[model] = self.events.labels(model)
        child.inc()

    def exposition(self) -> bytes:
        """The Prometheus text of every worker's metrics."""
        if self.multiprocess_dir is None:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self._live)
        return bytes(generate_latest(registry))


class _LiveSessions(Collector):
    """``sessionrec_live_sessions``, counted in the (shared) store when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "sessionrec_store_up", "1 when the session store answered this scrape, else 0."
        )
        yield from self.folders()
        try:
            live = self.engine.store.live(time.time())
        except StoreUnavailable:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        g = GaugeMetricFamily("sessionrec_live_sessions", "Sessions active within the TTL.")
        g.add_metric([], float(live))
        yield g

    def folders(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "sessionrec_model_folder_problems",
            "Files of a served model's folder removed or changed since it was loaded.",
            labels=["model"],
        )
        found = folder_report(self.engine)
        for name in self.engine.models:
            g.add_metric([name], float(len(found.get(name, []))))
        yield g


# -- middleware --------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Limits request bodies (413), records requests, latency and errors, and answers the
    hot route's valid requests itself.

    ``POST /v1/sessions/{id}/events`` with a JSON body that validates as ``EventIn`` and
    names a served model and a known item is answered here, by the same ``_apply_event``
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
        self.batcher = _Batcher(engine, metrics) if engine is not None and batch else None

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
                await _send_json(send_status, 400, {"detail": detail})
                return
            if scope["method"] in _BODY_METHODS:
                try:
                    body, receive = await self._read(scope, receive)
                except _TooLarge:
                    await _send_json(
                        send_status, 413, {"detail": f"request body over {self.max_body} bytes"}
                    )
                    return
                ctype = _header(scope, b"content-type")
                if body and is_json_type(ctype):
                    try:
                        parsed = read_json(body)
                    except BadBody as exc:
                        await _send_json(send_status, 422, {"detail": f"request body: {exc}"})
                        return
                    hot = _EVENTS_PATH.fullmatch(scope["path"])
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
                out = _apply_event(self.engine, self.metrics, ev)
        except StoreUnavailable as exc:
            await _send_json(send, 503, {"detail": str(exc)}, retry_after=True)
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


class _Batcher:
    """Answers the session events submitted in one turn of the event loop as one
    ``Engine.add_events`` call, run as a callback after the tasks already ready have run
    (so every request read in the same turn has submitted its event). Pending events are
    kept per loop: an app driven from another loop (a test client's) never waits on a
    callback scheduled in a loop that has stopped."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Event, asyncio.Future[bytes]]]]
        self._pending = {}

    def submit(self, event: Event) -> asyncio.Future[bytes]:
        """A future of the event's answer (``EventOut`` as JSON bytes), or of its error."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._run, loop)
        pending.append((event, fut))
        return fut

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        self.metrics.batches.observe(len(batch))
        try:
            answers = _apply_events(self.engine, self.metrics, [e for e, _ in batch])
        except Exception as exc:  # never leave a request waiting
            answers = [exc] * len(batch)
        for (_, fut), answer in zip(batch, answers, strict=True):
            if fut.done():
                continue
            if isinstance(answer, Exception):
                fut.set_exception(answer)
            else:
                fut.set_result(answer)


def _replay(read: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages already read, then reads on."""
    pending = list(read)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class _AsciiJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, default=str).encode()


class _TooLarge(Exception):
    pass


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, key: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == key:
            return bytes(v)
    return None


async def _send_json(
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


# -- the app -----------------------------------------------------------------------------------
def create_app(engine: Engine, options: AppOptions | None = None) -> FastAPI:
    """The FastAPI app serving ``engine`` (see ``sessionrec.serving.serve`` to run it)."""
    opts = options or AppOptions()
    metrics = Metrics(engine, opts.metrics_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _freeze_heap()
        sweeper = asyncio.create_task(_sweep(engine, opts.sweep_seconds))
        keeper = asyncio.create_task(_maintain(engine, opts.maintain_seconds))
        if opts.handle_sighup:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: asyncio.ensure_future(_reload(engine))
                )
        try:
            yield
        finally:
            for task in (sweeper, keeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="sessionrec",
        summary="Next-item recommendations for live sessions, with server-side session state.",
        version=_version(),
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.engine = engine
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # ASCII-escaped: the echoed input may hold lone surrogates UTF-8 cannot encode
        errors = safe_errors(exc.errors())
        return _AsciiJSON({"detail": one_line(errors), "errors": errors}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # a body that is not JSON (or not UTF-8) is a bad body: 422 like any other
        code = 422 if exc.status_code == 400 else exc.status_code
        if code in (204, 304):
            return Response(status_code=code, headers=exc.headers)
        return _AsciiJSON({"detail": exc.detail}, code, headers=exc.headers)

    @app.exception_handler(LookupFailed)
    async def _lookup(request: Request, exc: LookupFailed) -> JSONResponse:
        if exc.ambiguous:
            return JSONResponse({"detail": str(exc), "candidates": exc.candidates}, 422)
        return JSONResponse({"detail": str(exc), "closest": exc.candidates}, 404)

    @app.exception_handler(UnknownNameError)
    async def _unknown(request: Request, exc: UnknownNameError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(StoreUnavailable)
    async def _store(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(SessionrecError)
    async def _ours(request: Request, exc: SessionrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    def is_admin(authorization: str | None) -> bool:
        if not opts.admin_token:
            return False
        given = (authorization or "").removeprefix("Bearer ").strip()
        return secrets.compare_digest(given.encode(), opts.admin_token.encode())

    # -- health ----------------------------------------------------------------------------
    @app.get("/healthz", response_model=Status, response_model_exclude_none=True, tags=["health"])
    async def healthz() -> Status:
        """200 once the models are loaded (they are before the app exists)."""
        return Status(status="ok")

    @app.get(
        "/readyz",
        response_model=Status,
        response_model_exclude_none=True,
        tags=["health"],
        responses={503: {"model": NotReady}},
    )
    async def readyz() -> Any:
        """200 when the models are loaded and the session store answers; ``detail`` names
        served model folders damaged or changed since they were loaded (they keep serving)."""
        try:
            await asyncio.to_thread(engine.store.check)
        except StoreUnavailable as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, 503)
        folders = folder_report(engine)
        if folders:
            said = "; ".join(f"model {m}: {', '.join(p)}" for m, p in folders.items())
            return Status(status="ok", detail=said)
        return Status(status="ok")

    # -- sessions --------------------------------------------------------------------------

    @app.post("/v1/sessions/{session_id}/events", response_model=EventOut, tags=["sessions"])
    async def add_event(session_id: SessionPath, event: EventIn) -> Any:
        """Append one event to the session, advance the model by one step, return the list."""
        sm = engine.model(event.model)
        idx = sm.resolve(event.item)
        ev = Event(session_id, sm, idx, event.k, event.exclude_seen, event.event_id)
        return Response(_apply_event(engine, metrics, ev), media_type="application/json")

    @app.get(
        "/v1/sessions/{session_id}/recommendations",
        response_model=RecommendationsOut,
        tags=["sessions"],
    )
    async def session_recommendations(
        session_id: SessionPath, k: K = 10, exclude_seen: bool = False, model: ModelName = None
    ) -> Any:
        """The list for the session as it stands."""
        sm = engine.model(model)
        rec = engine.recommendations(session_id, sm, k, exclude_seen)
        if rec is None or rec.session is None:
            return _no_session(session_id)
        body = _answer(session_id, sm.name, len(rec.session.items), None, rec)
        return Response(body, media_type="application/json")

    @app.get("/v1/sessions/{session_id}", response_model=SessionOut, tags=["sessions"])
    async def get_session(session_id: SessionPath, model: ModelName = None) -> SessionOut:
        """The session's events, oldest first, with titles."""
        sm = engine.model(model)
        rec = engine.get(session_id)
        if rec is None:
            return _no_session(session_id)  # type: ignore[return-value]
        items = []
        for raw in rec.items:
            i = sm.idx_of_id.get(raw)
            if i is None:
                items.append(ItemOut(item_id=raw, title=None, year=None, genres=[]))
            else:
                items.append(ItemOut(**sm.item_json(i)))
        return SessionOut(
            session_id=session_id,
            events=rec.total,
            kept=len(rec.items),
            items=items,
            created=rec.created,
            updated=rec.updated,
            expires_at=rec.updated + engine.store.ttl,
        )

    @app.delete(
        "/v1/sessions/{session_id}",
        response_model=Status,
        response_model_exclude_none=True,
        tags=["sessions"],
    )
    async def delete_session(session_id: SessionPath) -> Any:
        """Forget the session."""
        if not engine.delete(session_id):
            return _no_session(session_id)
        return Status(status="deleted")

    # -- stateless, items, models -------------------------------------------------------------
    @app.post("/v1/recommend", response_model=RecommendationsOut, tags=["recommend"])
    async def recommend(body: RecommendIn) -> Any:
        """Stateless: the list `sessionrec recommend` prints for these items."""
        sm = engine.model(body.model)
        idx = [sm.resolve(x) for x in body.items]
        rec = engine.stateless(sm, idx, body.k, body.exclude_seen)
        out = _answer(None, sm.name, len(idx), None, rec)
        return Response(out, media_type="application/json")

    @app.get("/v1/items", response_model=ItemsOut, tags=["items"])
    async def search_items(
        q: Annotated[
            str,
            Query(
                max_length=200,
                description="Words of a title (partial, any case, accents optional).",
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        model: ModelName = None,
    ) -> ItemsOut:
        """Title search for autocomplete."""
        sm = engine.model(model)
        return ItemsOut(items=[ItemOut(**sm.item_json(i)) for i in sm.search(q, limit)])

    @app.get("/v1/items/{item_id}", response_model=ItemOut, tags=["items"])
    async def get_item(
        item_id: Annotated[str, Path(max_length=500)], model: ModelName = None
    ) -> Any:
        """One item by id."""
        sm = engine.model(model)
        i = sm.idx_of_id.get(item_id)
        if i is None:
            return JSONResponse({"detail": f"unknown item id {item_id!r}"}, 404)
        return ItemOut(**sm.item_json(i))

    @app.get("/v1/models", response_model=ModelsOut, tags=["models"])
    async def models(
        authorization: Annotated[str | None, Header(max_length=500)] = None,
    ) -> ModelsOut:
        """The served models: training data, parameters, evaluate results found beside them.
        Where the folders are on the server is said only to a client with the admin token."""
        out = describe_models(engine)
        if not is_admin(authorization):
            out = [hide_paths(m) for m in out]
        return ModelsOut(default=engine.default, models=out)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency histogram, live sessions, errors."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # -- admin -----------------------------------------------------------------------------
    @app.post(
        "/admin/reload",
        response_model=ReloadOut,
        tags=["admin"],
        responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
    )
    async def reload(
        authorization: Annotated[str | None, Header(max_length=500)] = None,
    ) -> Any:
        """Load the model folders again and swap them in atomically (needs --admin-token)."""
        if not opts.admin_token:
            return JSONResponse(
                {"detail": "admin routes are off: start serve with --admin-token"}, 403
            )
        if not is_admin(authorization):
            return JSONResponse(
                {"detail": "wrong or missing admin token (Authorization: Bearer ...)"}, 401
            )
        t0 = time.perf_counter()
        names = await _reload(engine)
        if opts.on_reload is not None:
            opts.on_reload()
        return ReloadOut(status="reloaded", models=names, seconds=time.perf_counter() - t0)

    # -- the web page ----------------------------------------------------------------------
    static = resources.files("sessionrec.serving") / "static"
    index_html = str(static / "index.html")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(index_html, media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(
        Guard,
        max_body=opts.max_body,
        metrics=metrics,
        engine=engine if opts.fast_events else None,
        batch=opts.batch_events,
        allowed_hosts=opts.allowed_hosts,
    )
    return app


def _freeze_heap() -> None:
    """Move everything alive now (the app, the models, the catalogues) out of the cyclic
    garbage collector's sight: a full collection over them paused every request for about
    85 ms on the development machine; after ``gc.freeze`` it scans only what requests make.
    Unfrozen first, so that what a reload dropped is collected, not kept frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def _reload(engine: Engine) -> list[str]:
    names = await asyncio.to_thread(engine.reload)
    _freeze_heap()
    log.info("reloaded %s", ", ".join(names))
    return names


async def _sweep(engine: Engine, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            n = await asyncio.to_thread(engine.expire)
            if n:
                log.info("expired %d idle sessions", n)
        except StoreUnavailable:  # logged by the store, once per outage
            pass
        except Exception:  # keep sweeping; the store may come back
            log.exception("expiring sessions failed")


async def _maintain(engine: Engine, every: float) -> None:
    """The store's housekeeping (SQLite: the WAL checkpoint) in a thread, off the requests;
    and every 10 s, the served model folders (a change since loading is logged, once)."""
    said: dict[str, list[str]] = {}
    turn = 0
    while True:
        await asyncio.sleep(every)
        turn += 1
        if turn % max(1, round(10 / every)) == 0:
            try:
                found = await asyncio.to_thread(folder_report, engine)
            except Exception:
                log.exception("checking the model folders failed")
                found = said
            for name, problems in found.items():
                if said.get(name) != problems:
                    log.warning(
                        "model %s: its folder differs from what was loaded (%s); the loaded "
                        "model keeps serving",
                        name,
                        "; ".join(problems),
                    )
            said = found
        try:
            await asyncio.to_thread(engine.store.maintain)
        except StoreUnavailable:  # logged by the store, once per outage
            pass
        except Exception:  # keep going; the store may come back
            log.exception("store maintenance failed")


def hide_paths(model: dict[str, Any]) -> dict[str, Any]:
    """``/v1/models``' entry of a model without the server's paths: no ``path``, and any
    absolute path inside (the training data's files, ...) by its last part only."""
    out = _names_only({k: v for k, v in model.items() if k != "path"})
    assert isinstance(out, dict)
    return out


_ABSOLUTE = re.compile(r"^(?:/|~|[A-Za-z]:[\\/]|\\\\)")


def _names_only(value: Any) -> Any:
    if isinstance(value, str):
        return PurePath(value.replace("\\", "/")).name if _ABSOLUTE.match(value) else value
    if isinstance(value, dict):
        return {k: _names_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_names_only(v) for v in value]
    return value


def _no_session(session_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no live session {session_id!r} (unknown or expired)"}, 404)


EVENTS_ROUTE = "/v1/sessions/{session_id}/events"
_EVENTS_PATH = re.compile(r"/v1/sessions/([A-Za-z0-9_.:@-]{1,128})/events")


def _apply_event(engine: Engine, metrics: Metrics, event: Event) -> bytes:
    """Append the event, step the model, and write the answer (``EventOut``) as JSON."""
    (out,) = _apply_events(engine, metrics, [event])
    if isinstance(out, Exception):
        raise out
    return out


def _apply_events(engine: Engine, metrics: Metrics, events: list[Event]) -> list[bytes | Exception]:
    """``_apply_event`` of several events at once (``Engine.add_events``); an event that
    fails gets its error."""
    out: list[bytes | Exception] = []
    for e, res in zip(events, engine.add_events(events), strict=True):
        if isinstance(res, Exception):
            out.append(res)
            continue
        rec, applied = res
        if applied:
            metrics.event(e.model.name)
        assert rec.session is not None
        try:
            out.append(_answer(e.session_id, e.model.name, len(rec.session.items), applied, rec))
        except Exception as exc:
            out.append(exc)
    return out


def _answer(
    session_id: str | None, model: str, events: int, applied: bool | None, rec: Recommendation
) -> bytes:
    """``EventOut`` (``applied`` given) or ``RecommendationsOut`` as JSON bytes, joined from
    the items' JSON written at load: the bytes ``_answer_reference`` writes (tested).
    ``events``: those the request sent (stateless), else the session's count comes from
    ``rec.session``: every event it received, and ``kept``, those in its window."""
    events, kept = _counts(events, rec)
    sm: ServedModel = rec.model
    fields, objects = sm.item_fields, sm.item_objects
    parts = []
    for r, (i, score) in enumerate(zip(rec.idx, rec.scores, strict=True)):
        if rec.because is None:
            because = "null"
        else:
            because = "[" + ",".join([objects[j] for j in rec.because[r]]) + "]"
        num = float.__repr__(score) if type(score) is float and math.isfinite(score) else None
        parts.append(
            f'{{"rank":{r + 1},{fields[i]},"score":{num or json_text(score)},"because":{because}}}'
        )
    flag = "" if applied is None else f'"applied":{"true" if applied else "false"},'
    return (
        f'{{"session_id":{json_text(session_id)},"model":{json_text(model)},"events":{events},'
        f'"kept":{kept},{flag}"recommendations":[{",".join(parts)}]}}'
    ).encode()


def _counts(events: int, rec: Recommendation) -> tuple[int, int]:
    """(events received, events kept): a session's from its record, else ``events`` twice."""
    if rec.session is None:
        return events, events
    return rec.session.total, len(rec.session.items)


def _answer_reference(
    session_id: str | None, model: str, events: int, applied: bool | None, rec: Recommendation
) -> bytes:
    """``_answer`` written plainly: a dict through ``json.dumps``."""
    events, kept = _counts(events, rec)
    content: dict[str, Any] = {
        "session_id": session_id,
        "model": model,
        "events": events,
        "kept": kept,
    }
    if applied is not None:
        content["applied"] = applied
    content["recommendations"] = _recs(rec)
    return json_text(content).encode()


def _recs(rec: Recommendation) -> list[dict[str, Any]]:
    sm: ServedModel = rec.model
    items = sm.item_dicts
    out = []
    for r, (i, s) in enumerate(zip(rec.idx, rec.scores, strict=True)):
        because = None if rec.because is None else [items[j] for j in rec.because[r]]
        out.append({"rank": r + 1, **items[i], "score": s, "because": because})
    return out


def _version() -> str:
    from sessionrec import __version__

    return __version__
