"""Live recommendations over HTTP: ``sessionrec serve`` / ``sr.serve(...)``.

The service keeps each visitor's session on the server (the client sends only the latest
click), advances the model's streaming state by one step per event through the same
``start / step / score_rows`` code the evaluator runs (so served ranks equal evaluated ranks),
and serves a web page at ``/``. Sessions live in SQLite (embedded default, survives restarts)
or Redis (shared by several processes or machines); see ``serving.state`` and
``serving.engine`` for what is stored and what is rebuilt.

Needs the ``serve`` extra: ``pip install -e ".[serve]"``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionrec._checks import finite_number, whole_number
from sessionrec.errors import ConfigError
from sessionrec.serving import _supervisor

if TYPE_CHECKING:
    from fastapi import FastAPI

#: the longest session TTL (ten years): Redis keeps expiries in milliseconds, and a longer
#: idle time is a session that never expires, which the store's size cannot afford
MAX_TTL = 10 * 365 * 86400.0
#: the most events a session may keep (a session is read back whole at a rebuild)
MAX_EVENTS_CAP = 1_000_000

INSTALL_HINT = 'the web service needs the serve extra: pip install -e ".[serve]"'


def require_serve_extra() -> None:
    """Raise a ``ConfigError`` naming the extra when FastAPI, uvicorn or prometheus-client
    is missing."""
    import importlib.util

    missing = [
        m
        for m in ("fastapi", "uvicorn", "prometheus_client")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ConfigError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``serve`` is asked for (JSON round-trip: handed to each worker process).

    Attributes:
        model_dirs: model folders; the first is the default, the others are chosen with
            ``model=NAME`` (the folder name).
        state: ``sqlite:///PATH`` or a path (default: ``<first model folder>.sessions.sqlite``
            beside it, so it survives the folder being replaced by a retrained one),
            ``redis://HOST:PORT/DB``, or ``memory`` (lost on restart).
        session_ttl: seconds of inactivity after which a session expires.
        max_session_events: the most events a session keeps (its latest; past it, the
            oldest quarter is dropped at once).
        admin_token: enables ``POST /admin/reload``; None turns admin routes off.
        allowed_hosts: the ``Host`` headers answered (``*.example.com`` matches any
            subdomain, ``*`` any host); others get 400, against DNS rebinding. None: any
            host in ``build_app``; ``run`` makes it ``default_hosts(host)``.
        max_body: request bodies above this many bytes get 413.
        device: where models score (cpu, cuda, auto).
        threads: torch threads per worker (1 is fastest with one request at a time).
        cache_size: sessions whose streaming state a worker keeps in memory.
        metrics_dir: prometheus_client's multiprocess folder; ``run`` creates one (and
            removes it at exit) when ``workers`` > 1, so that ``/metrics`` counts the
            requests of every worker.
    """

    model_dirs: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    state: str | None = None
    workers: int = 1
    session_ttl: float = 1800.0
    max_session_events: int = 200
    admin_token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    max_body: int = 64 * 1024
    device: str = "cpu"
    threads: int = 1
    cache_size: int = 100_000
    log_level: str = "info"
    metrics_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model_dirs:
            raise ConfigError("serve needs at least one model folder")
        whole_number("--workers", self.workers, low=1, high=1024)
        whole_number("--threads", self.threads, low=1, high=1024)
        whole_number("--max-session-events", self.max_session_events, low=1, high=MAX_EVENTS_CAP)
        whole_number("--max-body", self.max_body, low=64, high=1 << 30)
        whole_number("cache_size", self.cache_size, low=1)
        finite_number("--session-ttl", self.session_ttl, high=MAX_TTL)
        if self.workers > 1 and self.state == "memory":
            raise ConfigError(
                f"--state memory keeps the sessions inside one process, so --workers "
                f"{self.workers} would split them: use the SQLite default or --state redis://"
            )
        whole_number("--port", self.port, low=0, high=65535)

    @property
    def state_url(self) -> str:
        if self.state:
            return self.state
        first = Path(self.model_dirs[0])
        return str(first.parent / f"{first.resolve().name}.sessions.sqlite")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        raw = json.loads(text)
        raw["model_dirs"] = tuple(raw["model_dirs"])
        if raw.get("allowed_hosts") is not None:
            raw["allowed_hosts"] = tuple(raw["allowed_hosts"])
        return cls(**raw)


def build_app(
    config: ServeConfig,
    *,
    handle_sighup: bool = False,
    on_reload: Callable[[], None] | None = None,
) -> FastAPI:
    """Load the models, open the session store and return the ASGI app (not yet running).

    ``on_reload``: called after ``POST /admin/reload`` reloaded this process (a worker of
    ``serve --workers N`` tells the parent, which has the other workers reload)."""
    require_serve_extra()
    import torch

    from sessionrec.serving.app import AppOptions, create_app
    from sessionrec.serving.engine import Engine
    from sessionrec.serving.state import open_store

    torch.set_num_threads(config.threads)
    store = open_store(config.state_url, config.session_ttl, config.max_session_events)
    engine = Engine(config.model_dirs, store, device=config.device, cache_size=config.cache_size)
    options = AppOptions(
        admin_token=config.admin_token,
        allowed_hosts=config.allowed_hosts,
        max_body=config.max_body,
        sweep_seconds=min(60.0, max(1.0, config.session_ttl / 2)),
        handle_sighup=handle_sighup,
        on_reload=on_reload,
        metrics_dir=config.metrics_dir,
    )
    return create_app(engine, options)


def serve(
    model_dirs: str | Path | list[str | Path] | tuple[str | Path, ...],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    state: str | None = None,
    workers: int = 1,
    session_ttl: float = 1800.0,
    max_session_events: int = 200,
    admin_token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    max_body: int = 64 * 1024,
    device: str = "cpu",
    threads: int = 1,
    log_level: str = "info",
) -> None:
    """Serve one or more model folders over HTTP until interrupted (blocks).

    ``http://HOST:PORT/`` is the web page, ``/docs`` the API. SIGHUP reloads the model
    folders (as ``POST /admin/reload``). See ``ServeConfig`` for the parameters.
    """
    dirs = [model_dirs] if isinstance(model_dirs, str | Path) else list(model_dirs)
    config = ServeConfig(
        model_dirs=tuple(str(d) for d in dirs),
        host=host,
        port=port,
        state=state,
        workers=workers,
        session_ttl=session_ttl,
        max_session_events=max_session_events,
        admin_token=admin_token,
        allowed_hosts=allowed_hosts,
        max_body=max_body,
        device=device,
        threads=threads,
        log_level=log_level,
    )
    run(config)


def default_hosts(host: str) -> tuple[str, ...]:
    """The ``Host`` headers a server bound to ``host`` answers by default: that address and
    the names of the loopback; any host when bound to every address (0.0.0.0, ::)."""
    if host in ("0.0.0.0", "::", ""):
        return ("*",)
    return tuple(dict.fromkeys([host, "localhost", "127.0.0.1", "::1"]))


def run(config: ServeConfig) -> None:
    """Run the server for ``config`` (blocks)."""
    require_serve_extra()
    import os
    import shutil
    import tempfile

    import uvicorn

    if config.allowed_hosts is None:
        config = dataclasses.replace(config, allowed_hosts=default_hosts(config.host))
    common: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": False,
    }
    if config.workers == 1:
        uvicorn.run(build_app(config, handle_sighup=True), **common)
        return
    # Several workers share the session store (SQLite in WAL mode across processes, or
    # Redis); each keeps its own cache of streaming states, checked against the store at
    # every event. Their metrics meet in prometheus_client's multiprocess folder, which
    # must be named in the environment before a worker imports prometheus_client.
    build_app(config)  # fail here, once, on a bad folder or store rather than in each worker
    metrics_dir = tempfile.mkdtemp(prefix="sessionrec-metrics-")
    try:
        config = dataclasses.replace(config, metrics_dir=metrics_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        if _supervisor.available():
            # a listening socket per worker, so that connections spread over the workers
            uvicorn.Config("unused", log_level=config.log_level)  # uvicorn's log set-up
            try:
                supervisor = _supervisor.Supervisor(config)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc}") from exc
            if supervisor.run() != 0:
                raise ConfigError("serve's workers could not run: see the log above")
            return
        # elsewhere uvicorn's workers, sharing one socket (the factory reads the config)
        os.environ["SESSIONREC_SERVE_CONFIG"] = config.to_json()
        uvicorn.run(
            "sessionrec.serving._worker:app", factory=True, workers=config.workers, **common
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


__all__ = [
    "INSTALL_HINT",
    "ServeConfig",
    "build_app",
    "default_hosts",
    "require_serve_extra",
    "run",
    "serve",
]
