"""The settings of the HTTP app itself (``AppOptions``); the engine holds models and sessions.

Its own module so that ``app`` (which assembles the app) and ``routes`` (which reads the
settings) both import it, and not each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
    #: answer the events read in the same turn of the event loop together (``Batcher``;
    #: with ``fast_events``); False: one by one
    batch_events: bool = True
    #: prometheus_client's multiprocess folder when several workers serve (``Metrics``)
    metrics_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = ["AppOptions"]
