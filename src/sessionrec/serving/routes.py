"""The routes of the HTTP API and its error answers, added to a FastAPI app."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import secrets
import time
from importlib import resources
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from sessionrec.errors import SessionrecError, UnknownNameError
from sessionrec.serving.bodies import one_line, safe_errors
from sessionrec.serving.catalog import LookupFailed
from sessionrec.serving.engine import Engine, Event, describe_models, folder_report
from sessionrec.serving.events import answer, apply_event
from sessionrec.serving.metrics import Metrics
from sessionrec.serving.schemas import (
    ErrorOut,
    EventIn,
    EventOut,
    ItemOut,
    ItemsOut,
    K,
    ModelName,
    ModelsOut,
    NotReady,
    RecommendationsOut,
    RecommendIn,
    ReloadOut,
    SessionOut,
    SessionPath,
    Status,
)
from sessionrec.serving.state import StoreUnavailable

if TYPE_CHECKING:
    from sessionrec.serving.options import AppOptions

log = logging.getLogger(__name__)


def add_routes(app: FastAPI, engine: Engine, metrics: Metrics, opts: AppOptions) -> None:
    """Every route of the API, the error handlers and the web page, on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # ASCII-escaped: the echoed input may hold lone surrogates UTF-8 cannot encode
        errors = safe_errors(exc.errors())
        return AsciiJSON({"detail": one_line(errors), "errors": errors}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # a body that is not JSON (or not UTF-8) is a bad body: 422 like any other
        code = 422 if exc.status_code == 400 else exc.status_code
        if code in (204, 304):
            return Response(status_code=code, headers=exc.headers)
        return AsciiJSON({"detail": exc.detail}, code, headers=exc.headers)

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
        return Response(apply_event(engine, metrics, ev), media_type="application/json")

    @app.get(
        "/v1/sessions/{session_id}/recommendations",
        response_model=RecommendationsOut,
        tags=["sessions"],
    )
    async def session_recommendations(
        session_id: SessionPath, k: K = 10, exclude_seen: bool = True, model: ModelName = None
    ) -> Any:
        """The list for the session as it stands."""
        sm = engine.model(model)
        rec = engine.recommendations(session_id, sm, k, exclude_seen)
        if rec is None or rec.session is None:
            return no_session(session_id)
        body = answer(session_id, sm.name, len(rec.session.items), None, rec)
        return Response(body, media_type="application/json")

    @app.get("/v1/sessions/{session_id}", response_model=SessionOut, tags=["sessions"])
    async def get_session(session_id: SessionPath, model: ModelName = None) -> SessionOut:
        """The session's events, oldest first, with titles."""
        sm = engine.model(model)
        rec = engine.get(session_id)
        if rec is None:
            return no_session(session_id)  # type: ignore[return-value]
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
            return no_session(session_id)
        return Status(status="deleted")

    # -- stateless, items, models -------------------------------------------------------------
    @app.post("/v1/recommend", response_model=RecommendationsOut, tags=["recommend"])
    async def recommend(body: RecommendIn) -> Any:
        """Stateless: the list `sessionrec recommend` prints for these items."""
        sm = engine.model(body.model)
        idx = [sm.resolve(x) for x in body.items]
        rec = engine.stateless(sm, idx, body.k, body.exclude_seen)
        out = answer(None, sm.name, len(idx), None, rec)
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
        names = await reload_models(engine)
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


def no_session(session_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no live session {session_id!r} (unknown or expired)"}, 404)


class AsciiJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, default=str).encode()


def freeze_heap() -> None:
    """Move everything alive now (the app, the models, the catalogues) out of the cyclic
    garbage collector's sight: a full collection over them paused every request for about
    85 ms on the development machine; after ``gc.freeze`` it scans only what requests make.
    Unfrozen first, so that what a reload dropped is collected, not kept frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def reload_models(engine: Engine) -> list[str]:
    names = await asyncio.to_thread(engine.reload)
    freeze_heap()
    log.info("reloaded %s", ", ".join(names))
    return names
