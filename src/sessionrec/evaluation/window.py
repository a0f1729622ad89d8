"""The session window of the service (``serve --max-session-events``), applied offline.

A live session keeps at most ``max_events`` events: past that, the oldest are dropped until
``trim_to(max_events)`` remain (a quarter of the cap at once), and the model's state is the
state after exactly the kept events. So the list served after a session's n-th event comes
from its latest ``kept(n)`` events, not from all n. ``window_sessions`` rewrites sessions so
that the evaluator sees the same windows: evaluated with it, a long session is ranked as the
service ranks it, prediction by prediction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sessionrec._checks import whole_number
from sessionrec.prepare.data import SessionData


def trim_to(max_events: int) -> int:
    """The events a session keeps when an event takes it past ``max_events``."""
    return max(1, max_events - max_events // 4)


def kept(n: np.ndarray | int, max_events: int) -> np.ndarray:
    """(...,) how many of a session's first ``n`` events the service keeps after the n-th."""
    n = np.asarray(n, dtype=np.int64)
    low = trim_to(max_events)
    period = max_events - low + 1
    past = n > max_events
    return np.where(past, low + (n - max_events - 1) % period, n)


def window_sessions(data: SessionData, max_events: int) -> tuple[SessionData, np.ndarray]:
    """``data`` with each session longer than the window cut into pieces, one per window
    the service would rank from, and the index of each piece's events in ``data``.

    A piece holds the window's events (history: ``target`` False) followed by the events
    predicted from that window (their own ``target`` flags), so the evaluator makes the same
    predictions as on ``data``, each from the events the service would have kept.
    """
    whole_number("max_session_events", max_events, low=1)
    low = trim_to(max_events)
    period = max_events - low + 1
    starts, ends = data.offsets[:-1], data.offsets[1:]
    lengths = ends - starts
    pieces: list[tuple[int, int, int, int]] = []  # (session, first, first target, end)
    for long_s in np.flatnonzero(lengths > max_events + 1):  # a loop per long session
        a, length = int(starts[long_s]), int(lengths[long_s])
        pieces.append((int(long_s), a, a, a + max_events + 1))
        n0 = max_events + 1
        while n0 < length:
            n1 = min(n0 + period, length)
            pieces.append((int(long_s), a + n0 - low, a + n0, a + n1))
            n0 = n1
    if not pieces:
        return data, np.arange(data.n_events, dtype=np.int64)
    long = set(p[0] for p in pieces)
    rows: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    sessions: list[int] = []
    offsets = [0]
    by_session: dict[int, list[tuple[int, int, int, int]]] = {}
    for p in pieces:
        by_session.setdefault(p[0], []).append(p)
    for s in range(data.n_sessions):
        if s in long:
            for _, first, first_target, end in by_session[s]:
                idx = np.arange(first, end, dtype=np.int64)
                t = data.target[idx].copy()
                t[: first_target - first] = False
                rows.append(idx)
                targets.append(t)
                sessions.append(s)
                offsets.append(offsets[-1] + len(idx))
        else:
            idx = np.arange(starts[s], ends[s], dtype=np.int64)
            rows.append(idx)
            targets.append(data.target[idx])
            sessions.append(s)
            offsets.append(offsets[-1] + len(idx))
    origin = np.concatenate(rows)
    which = np.asarray(sessions, dtype=np.int64)
    out = dataclasses.replace(
        data,
        items=data.items[origin],
        offsets=np.asarray(offsets, dtype=np.int64),
        session_ids=data.session_ids[which],
        timestamps=data.timestamps[origin],
        target=np.concatenate(targets),
        users=None if data.users is None else data.users[which],
        ratings=None if data.ratings is None else data.ratings[origin],
    )
    return out, origin
