"""The HTTP API (FastAPI) over an ``Engine``: sessions, stateless recommend, item search,
models, health, Prometheus metrics, admin reload, and the static web page at ``/``.

Handlers are ``async`` and do their (short) work inline: a request is one store append, one
model step and one top-k, a few milliseconds at most, and running it on the event loop saves
the hand-off to a thread pool. Parallelism comes from ``--workers``.

Session events that reach a worker together (under load: every request read in the same turn
of the event loop) are answered together (``Batcher``): one store transaction for their
appends and, for a model whose states join, one model step and one scoring product for all
of them. Alone, an event waits one turn of the loop more than it would, and no timer is
involved.

The app is put together here from one module per concern: ``schemas`` (request and answer
bodies), ``bodies`` (strict JSON), ``guard`` (the middleware: Host headers, body limits, the
fast event path), ``events`` (applying events, writing answers), ``batcher``, ``metrics``
and ``routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from fastapi import FastAPI

from sessionrec.serving.engine import Engine, folder_report
from sessionrec.serving.guard import Guard
from sessionrec.serving.metrics import Metrics
from sessionrec.serving.options import AppOptions
from sessionrec.serving.routes import add_routes, freeze_heap, reload_models
from sessionrec.serving.schemas import ERRORS
from sessionrec.serving.state import StoreUnavailable

log = logging.getLogger(__name__)


# -- the app -----------------------------------------------------------------------------------
def create_app(engine: Engine, options: AppOptions | None = None) -> FastAPI:
    """The FastAPI app serving ``engine`` (see ``sessionrec.serving.serve`` to run it)."""
    opts = options or AppOptions()
    metrics = Metrics(engine, opts.metrics_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        freeze_heap()
        sweeper = asyncio.create_task(_sweep(engine, opts.sweep_seconds))
        keeper = asyncio.create_task(_maintain(engine, opts.maintain_seconds))
        if opts.handle_sighup:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: asyncio.ensure_future(reload_models(engine))
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
        responses=ERRORS,
    )
    app.state.engine = engine
    app.state.metrics = metrics

    add_routes(app, engine, metrics, opts)
    app.add_middleware(
        Guard,
        max_body=opts.max_body,
        metrics=metrics,
        engine=engine if opts.fast_events else None,
        batch=opts.batch_events,
        allowed_hosts=opts.allowed_hosts,
    )
    return app


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


def _version() -> str:
    from sessionrec._version import __version__

    return __version__
