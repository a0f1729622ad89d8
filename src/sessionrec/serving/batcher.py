"""Session events read in the same turn of the event loop, answered together."""

from __future__ import annotations

import asyncio

from sessionrec.serving.engine import Engine, Event
from sessionrec.serving.events import apply_events
from sessionrec.serving.metrics import Metrics


class Batcher:
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
            answers = apply_events(self.engine, self.metrics, [e for e, _ in batch])
        except Exception as exc:  # never leave a request waiting
            answers = [exc] * len(batch)
        for (_, fut), answer in zip(batch, answers, strict=True):
            if fut.done():
                continue
            if isinstance(answer, Exception):
                fut.set_exception(answer)
            else:
                fut.set_result(answer)
