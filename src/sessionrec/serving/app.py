"""The HTTP API (FastAPI) over an ``Engine``: sessions, stateless recommend, item search,
models, health, Prometheus metrics, admin reload, and the static web page at ``/``.

Handlers are ``async`` and do their (short) work inline: a request is one store append, one
model step and one top-k, a few milliseconds at most, and running it on the event loop saves
the hand-off to a thread pool. Parallelism comes from ``--workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
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
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from sessionrec.errors import SessionrecError, UnknownNameError
from sessionrec.serving.catalog import LookupFailed, ServedModel
from sessionrec.serving.engine import Engine, Recommendation, describe_models

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
    max_body: int = 64 * 1024
    sweep_seconds: float = 60.0
    handle_sighup: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# -- request and response bodies ---------------------------------------------------------------
def _encodable(v: str | None) -> str | None:
    if v is not None:
        v.encode("utf-8")  # lone surrogates cannot be stored: 422, not 500
    return v


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
    model_config = ConfigDict(extra="forbid")
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
    events: int = Field(description="Events in the session (its latest, at most the cap).")
    applied: bool = Field(description="False when event_id was already recorded.")
    recommendations: list[RecommendationOut]


class RecommendationsOut(BaseModel):
    session_id: str | None
    model: str
    events: int
    recommendations: list[RecommendationOut]


class SessionOut(BaseModel):
    session_id: str
    events: int
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


class ErrorOut(BaseModel):
    detail: Any
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
}


# -- metrics -----------------------------------------------------------------------------------
class Metrics:
    def __init__(self, engine: Engine) -> None:
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
        self.events = Counter("sessionrec_events", "Session events applied.", ["model"], registry=r)
        live = Gauge("sessionrec_live_sessions", "Sessions active within the TTL.", registry=r)
        live.set_function(lambda: engine.store.live(time.time()))
        rebuilds = Gauge(
            "sessionrec_state_rebuilds",
            "Streaming states rebuilt from stored events (restart, reload, eviction).",
            registry=r,
        )
        rebuilds.set_function(lambda: engine.rebuilds)
        steps = Gauge("sessionrec_model_steps", "Model streaming steps run.", registry=r)
        steps.set_function(lambda: engine.steps)


# -- middleware --------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Limits request bodies (413) and records requests, latency and errors."""

    def __init__(self, app: ASGI, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            receive = await self._limited(scope, receive)
        except _TooLarge:
            await _send_json(
                send_status, 413, {"detail": f"request body over {self.max_body} bytes"}
            )
        else:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            m = self.metrics
            m.requests.labels(scope.get("method", ""), name, str(status["code"])).inc()
            m.latency.labels(name).observe(time.perf_counter() - t0)
            if status["code"] >= 400:
                m.errors.labels(str(status["code"])).inc()

    async def _limited(self, scope: Scope, receive: Receive) -> Receive:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = self.max_body + 1
            if n > self.max_body:
                raise _TooLarge
            return receive
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return receive
        # no length given (chunked): read the body here, up to the limit
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_body:
                raise _TooLarge
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


class _AsciiJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, default=str).encode()


class _TooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the app -----------------------------------------------------------------------------------
def create_app(engine: Engine, options: AppOptions | None = None) -> FastAPI:
    """The FastAPI app serving ``engine`` (see ``sessionrec.serving.serve`` to run it)."""
    opts = options or AppOptions()
    metrics = Metrics(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep(engine, opts.sweep_seconds))
        if opts.handle_sighup:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: asyncio.ensure_future(_reload(engine))
                )
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

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
        return _AsciiJSON({"detail": jsonable_encoder(exc.errors())}, 422)

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

    @app.exception_handler(SessionrecError)
    async def _ours(request: Request, exc: SessionrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    # -- health ----------------------------------------------------------------------------
    @app.get("/healthz", response_model=Status, tags=["health"])
    async def healthz() -> Status:
        """200 once the models are loaded (they are before the app exists)."""
        return Status(status="ok")

    @app.get("/readyz", response_model=Status, tags=["health"], responses={503: {"model": Status}})
    async def readyz() -> Any:
        """200 when the models are loaded and the session store answers."""
        try:
            engine.store.live(time.time())
        except Exception as exc:
            log.warning("session store not ready: %s", exc)
            return JSONResponse({"status": f"store unavailable: {type(exc).__name__}"}, 503)
        return Status(status="ok")

    # -- sessions --------------------------------------------------------------------------

    @app.post("/v1/sessions/{session_id}/events", response_model=EventOut, tags=["sessions"])
    async def add_event(session_id: SessionPath, event: EventIn) -> Any:
        """Append one event to the session, advance the model by one step, return the list."""
        sm = engine.model(event.model)
        idx = sm.resolve(event.item)
        rec, applied = engine.add_event(
            session_id, sm, idx, event.k, event.exclude_seen, event.event_id
        )
        if applied:
            metrics.events.labels(sm.name).inc()
        assert rec.session is not None
        # the hot path: JSON written directly (the schema above still documents it)
        return _json(
            {
                "session_id": session_id,
                "model": sm.name,
                "events": len(rec.session.items),
                "applied": applied,
                "recommendations": _recs(rec),
            }
        )

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
        return _json(
            {
                "session_id": session_id,
                "model": sm.name,
                "events": len(rec.session.items),
                "recommendations": _recs(rec),
            }
        )

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
            events=len(rec.items),
            items=items,
            created=rec.created,
            updated=rec.updated,
            expires_at=rec.updated + engine.store.ttl,
        )

    @app.delete("/v1/sessions/{session_id}", response_model=Status, tags=["sessions"])
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
        return _json(
            {
                "session_id": None,
                "model": sm.name,
                "events": len(idx),
                "recommendations": _recs(rec),
            }
        )

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
    async def models() -> ModelsOut:
        """The served models: training data, parameters, evaluate results found beside them."""
        return ModelsOut(default=engine.default, models=describe_models(engine))

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def prometheus() -> Response:
        """Prometheus text format: requests, latency histogram, live sessions, errors."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

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
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), opts.admin_token.encode()):
            return JSONResponse(
                {"detail": "wrong or missing admin token (Authorization: Bearer ...)"}, 401
            )
        t0 = time.perf_counter()
        names = await _reload(engine)
        return ReloadOut(status="reloaded", models=names, seconds=time.perf_counter() - t0)

    # -- the web page ----------------------------------------------------------------------
    static = resources.files("sessionrec.serving") / "static"
    index_html = str(static / "index.html")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(index_html, media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(Guard, max_body=opts.max_body, metrics=metrics)
    return app


async def _reload(engine: Engine) -> list[str]:
    names = await asyncio.to_thread(engine.reload)
    log.info("reloaded %s", ", ".join(names))
    return names


async def _sweep(engine: Engine, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            n = await asyncio.to_thread(engine.expire)
            if n:
                log.info("expired %d idle sessions", n)
        except Exception:  # keep sweeping; the store may come back
            log.exception("expiring sessions failed")


def _no_session(session_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no live session {session_id!r} (unknown or expired)"}, 404)


def _recs(rec: Recommendation) -> list[dict[str, Any]]:
    sm: ServedModel = rec.model
    items = sm.item_dicts
    out = []
    for r, (i, s) in enumerate(zip(rec.idx, rec.scores, strict=True)):
        because = None if rec.because is None else [items[j] for j in rec.because[r]]
        out.append({"rank": r + 1, **items[i], "score": s, "because": because})
    return out


def _json(content: dict[str, Any]) -> Response:
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode(), media_type="application/json")


def _version() -> str:
    from sessionrec import __version__

    return __version__
