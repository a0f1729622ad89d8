"""Tiny titled model folders for the service tests (no MovieLens needed)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _helpers import session_data

from sessionrec.models import create

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


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port, started and stopped by the test;
    skips the test when it is not installed (CI installs it: .ci/run). ``durable``: an
    append-only file fsynced at every write in ``work``, so that what it acknowledged survives
    its restart; otherwise no persistence."""

    def __init__(self, work: Path, *, durable: bool = True) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("no redis-server (Debian: apt-get install -y redis-server; .ci/run does)")
        self.exe, self.work, self.port, self.durable = exe, work, free_port(), durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.work)]
            if self.durable
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence],
            cwd=self.work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


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


async def asgi_call(app: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request straight into the ASGI app (no client library): (status, decoded JSON).

    For replays of thousands of requests, where a client library's own per-request work
    (httpx's ASGI transport looks for trio at every call) would dominate the time."""
    import json

    raw = b"" if body is None else json.dumps(body).encode()
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"serve"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("serve", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    data = b"".join(chunks)
    return status, json.loads(data) if data else None


def batch_counts(app: Any) -> tuple[float, float]:
    """(events, batches) the app's event batcher has answered, from its Prometheus metrics."""
    total = count = 0.0
    for line in app.state.metrics.exposition().decode().splitlines():
        if line.startswith("sessionrec_event_batch_size_sum"):
            total = float(line.split()[-1])
        elif line.startswith("sessionrec_event_batch_size_count"):
            count = float(line.split()[-1])
    return total, count
