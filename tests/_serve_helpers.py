"""Tiny titled model folders for the service tests (no MovieLens needed)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from sessionrec.models import create
from tests._helpers import session_data

TITLES = [
    "Toy Story (1995)",
    "GoldenEye (1995)",
    "Four Rooms (1995)",
    "Get Shorty (1995)",
    "Copycat (1995)",
    "Amélie (2001)",
    "Heat (1995)",
    "Heat (1986)",
    "Shawshank Redemption, The (1994)",
    "Babe (1995)",
    "Toy Story 2 (1999)",
    "Fargo (1996)",
]
# cyclic sessions 0→1→2→3, 4→5→6, plus noise: kNN and GRU4Rec learn what follows what
SESSIONS = [[0, 1, 2, 3], [4, 5, 6, 9], [0, 1, 2], [4, 5, 6], [8, 9, 10, 11], [1, 2, 3]] * 6 + [
    [7, 11],
    [3, 8],
]


def items_table() -> pl.DataFrame:
    n = len(TITLES)
    counts = [0] * n
    for s in SESSIONS:
        for i in s:
            counts[i] += 1
    return pl.DataFrame(
        {
            "item_idx": list(range(n)),
            "item_id": [100 + i for i in range(n)],
            "title": TITLES,
            "year": [int(t.rsplit("(", 1)[1][:4]) for t in TITLES],
            "genres": [["Comedy"] if i % 2 else ["Drama", "Thriller"] for i in range(n)],
            "count": counts,
        }
    )


def model_folder(kind: str, out: Path, params: dict[str, Any] | None = None) -> Path:
    """Fit ``kind`` on the tiny sessions and save it, titled, to ``out``."""
    data = session_data(SESSIONS, len(TITLES))
    model = create(kind, params).fit(data)
    model.items = items_table()
    model.save(out)
    return out


GRU_PARAMS: dict[str, Any] = {
    "layers": [16],
    "n_epochs": 3,
    "batch_size": 4,
    "n_sample": 8,
    "loss": "bpr-max",
    "elu_param": 0.5,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
