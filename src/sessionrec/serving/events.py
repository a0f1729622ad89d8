"""Session events applied and answered: the JSON of an answer written from the items'
JSON made at load (``answer``), and its plain reference (``answer_reference``)."""

from __future__ import annotations

import math
import re
from typing import Any

from sessionrec.serving.catalog import ServedModel, json_text
from sessionrec.serving.engine import Engine, Event, Recommendation
from sessionrec.serving.metrics import Metrics

EVENTS_ROUTE = "/v1/sessions/{session_id}/events"
EVENTS_PATH = re.compile(r"/v1/sessions/([A-Za-z0-9_.:@-]{1,128})/events")


def apply_event(engine: Engine, metrics: Metrics, event: Event) -> bytes:
    """Append the event, step the model, and write the answer (``EventOut``) as JSON."""
    (out,) = apply_events(engine, metrics, [event])
    if isinstance(out, Exception):
        raise out
    return out


def apply_events(engine: Engine, metrics: Metrics, events: list[Event]) -> list[bytes | Exception]:
    """``apply_event`` of several events at once (``Engine.add_events``); an event that
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
            out.append(answer(e.session_id, e.model.name, len(rec.session.items), applied, rec))
        except Exception as exc:
            out.append(exc)
    return out


def answer(
    session_id: str | None, model: str, events: int, applied: bool | None, rec: Recommendation
) -> bytes:
    """``EventOut`` (``applied`` given) or ``RecommendationsOut`` as JSON bytes, joined from
    the items' JSON written at load: the bytes ``answer_reference`` writes (tested).
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
        f'"kept":{kept},"exclude_seen":{"true" if rec.exclude_seen else "false"},{flag}'
        f'"recommendations":[{",".join(parts)}]}}'
    ).encode()


def _counts(events: int, rec: Recommendation) -> tuple[int, int]:
    """(events received, events kept): a session's from its record, else ``events`` twice."""
    if rec.session is None:
        return events, events
    return rec.session.total, len(rec.session.items)


def answer_reference(
    session_id: str | None, model: str, events: int, applied: bool | None, rec: Recommendation
) -> bytes:
    """``answer`` written plainly: a dict through ``json.dumps``."""
    events, kept = _counts(events, rec)
    content: dict[str, Any] = {
        "session_id": session_id,
        "model": model,
        "events": events,
        "kept": kept,
        "exclude_seen": rec.exclude_seen,
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
