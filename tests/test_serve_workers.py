"""`sessionrec serve --workers 2` as a real process: the workers share every session through
the SQLite store (WAL) and /metrics counts the requests of both, whichever answers the scrape;
the metrics folder serve made is gone when it stops."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

import httpx
from _serve_helpers import GRU_PARAMS, free_port, model_folder

from sessionrec.errors import ConfigError
from sessionrec.models import load_model
from sessionrec.serving import ServeConfig

ITEMS = [100, 101, 102, 103, 104, 105, 106, 108, 109, 110, 111]
JSON = {"Content-Type": "application/json"}
EVENTS_ROUTE = 'method="POST",route="/v1/sessions/{session_id}/events",status="200"'


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m is not None, f"{name} not in /metrics"
    return float(m.group(1))


def test_workers_refuse_a_store_of_one_process() -> None:
    with pytest.raises(ConfigError, match="--state memory"):
        ServeConfig(model_dirs=("m",), state="memory", workers=2)
    assert ServeConfig(model_dirs=("m",), state="memory").workers == 1


class Workers:
    """``sessionrec serve --workers 2`` as a real process, for one test."""

    def __init__(
        self, tmp_path: Path, folder: Path, *extra: str, port: int | None = None, run: str = ""
    ) -> None:
        self.port = port or free_port()
        self.temp = tmp_path / f"tmp{run}"
        self.temp.mkdir()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(self.temp)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        args = [sys.executable, "-c", "from sessionrec.cli import main; main()", "serve"]
        args += [str(folder), "--port", str(self.port), "--state", str(tmp_path / "s.sqlite")]
        args += ["--workers", "2", *extra]
        self.log = tmp_path / f"serve{run}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"serve did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.3)

    def worker_requests(self) -> dict[str, float]:
        """Requests answered so far by each live worker, by pid (from /metrics)."""
        text = httpx.get(self.base + "/metrics").text
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^sessionrec_worker_requests\{pid="(\d+)"\} (\S+)$', text, re.M)
        }

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def test_two_workers_share_sessions_and_metrics(tmp_path: Path) -> None:
    folder = model_folder("gru4rec", tmp_path / "gru", GRU_PARAMS)
    server = Workers(tmp_path, folder)
    base = server.base
    try:
        (metrics_dir,) = server.temp.glob("sessionrec-metrics-*")

        plans = {f"w{i}": [ITEMS[(i + 2 * j) % len(ITEMS)] for j in range(8)] for i in range(6)}
        failures: list[Any] = []

        def client(sid: str, plan: list[int]) -> None:
            for n, item in enumerate(plan, 1):
                # a new connection for every event: the kernel hands it to either worker
                r = httpx.post(f"{base}/v1/sessions/{sid}/events", json={"item": item, "k": 5})
                if r.status_code != 200 or r.json()["events"] != n:
                    failures.append((sid, n, r.status_code, r.text))

        threads = [threading.Thread(target=client, args=kv) for kv in plans.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert failures == []  # every event counted once, whichever worker took it

        model = load_model(folder)
        for sid, plan in plans.items():
            items = httpx.get(f"{base}/v1/sessions/{sid}").json()["items"]
            assert [x["item_id"] for x in items] == plan
            got = httpx.get(f"{base}/v1/sessions/{sid}/recommendations", params={"k": 5}).json()
            want = model.recommend(plan, 5)["item_id"].to_list()  # seen left out
            assert [x["item_id"] for x in got["recommendations"]] == want

        n_events = sum(len(p) for p in plans.values())
        for _ in range(8):  # new connections: both workers answer scrapes, with the same sums
            text = httpx.get(base + "/metrics").text
            assert metric(text, f"sessionrec_requests_total{{{EVENTS_ROUTE}}}") == n_events
            assert metric(text, 'sessionrec_events_total{model="gru"}') == n_events
            assert metric(text, "sessionrec_live_sessions") == len(plans)
            assert metric(text, "sessionrec_model_steps") >= n_events
        assert any(metrics_dir.iterdir())
    finally:
        server.stop()
    assert not metrics_dir.exists()  # serve removed the folder it made


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads on Linux")
def test_connections_opened_together_spread_over_the_workers(tmp_path: Path) -> None:
    """Keep-alive connections opened at once (a pool, a load balancer) are not all taken by
    the first worker to wake: each worker has its own socket and the kernel spreads them.
    With one shared socket (uvicorn's workers) all 16 went to one worker."""
    server = Workers(tmp_path, model_folder("pop", tmp_path / "pop"))
    try:
        # 16 connections opened back to back (they wait in the kernel's accept queue
        # together), then 5 events over each, kept alive
        conns = [http.client.HTTPConnection("127.0.0.1", server.port) for _ in range(16)]
        for c in conns:
            c.connect()
        for j in range(5):
            for n, c in enumerate(conns):
                body = json.dumps({"item": ITEMS[j]})
                c.request("POST", f"/v1/sessions/c{n}/events", body, JSON)
                r = c.getresponse()
                assert r.status == 200, r.read()
                assert json.loads(r.read())["events"] == j + 1
        for c in conns:
            c.close()
        served = server.worker_requests()
        assert len(served) == 2, served
        # each worker answered events (16 connections hashed over two sockets: all on one
        # has probability 2 ** -15), plus the health checks and this scrape
        assert all(n > 5 for n in served.values()), served
        assert sum(served.values()) >= 16 * 5
    finally:
        assert server.stop() == 0


def generations(server: Workers, tries: int = 12) -> set[int]:
    """The model generations the workers report, over new connections (either worker)."""
    return {
        httpx.get(server.base + "/v1/models").json()["models"][0]["generation"]
        for _ in range(tries)
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor runs on Linux")
def test_reload_reaches_every_worker_and_a_dead_worker_comes_back(tmp_path: Path) -> None:
    server = Workers(tmp_path, model_folder("pop", tmp_path / "pop"), "--admin-token", "t0k")
    try:
        assert generations(server) == {1}
        r = httpx.post(server.base + "/admin/reload", headers={"Authorization": "Bearer t0k"})
        assert r.status_code == 200
        deadline = time.monotonic() + 30
        while generations(server) != {2}:  # the other worker reloads when the parent says
            assert time.monotonic() < deadline, "a worker did not reload"
            time.sleep(0.2)
        server.proc.send_signal(signal.SIGHUP)  # SIGHUP to the parent: every worker reloads
        deadline = time.monotonic() + 30
        while generations(server) != {3}:
            assert time.monotonic() < deadline, "SIGHUP did not reload every worker"
            time.sleep(0.2)

        before = server.worker_requests()
        assert len(before) == 2, before
        victim = int(next(iter(before)))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:  # the parent starts a new worker on the dead one's socket
            try:
                now = server.worker_requests()
            except httpx.HTTPError:
                now = {}
            if len(now) == 2 and str(victim) not in now:
                break
            assert time.monotonic() < deadline, f"no worker replaced {victim}: {now}"
            time.sleep(0.3)
        for n in range(20):  # new connections reach both sockets: every one is answered
            r = httpx.post(f"{server.base}/v1/sessions/k/events", json={"item": ITEMS[0]})
            assert r.status_code == 200 and r.json()["events"] == n + 1
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor runs on Linux")
def test_workers_refuse_a_port_another_server_listens_on() -> None:
    """SO_REUSEPORT must not let a second server join the first one's port and share its
    connections: the port is checked free first, whoever listens there."""
    import socket

    from sessionrec.serving._supervisor import Supervisor

    first = Supervisor(ServeConfig(model_dirs=("m",), port=0, workers=2))
    try:
        assert first.sockets[0].getsockname()[1] == first.sockets[1].getsockname()[1]
        with pytest.raises(OSError):
            Supervisor(ServeConfig(model_dirs=("m",), port=first.port, workers=2))
    finally:
        for s in first.sockets:
            s.close()
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError):
            Supervisor(ServeConfig(model_dirs=("m",), port=plain.getsockname()[1], workers=2))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor runs on Linux")
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    """kill -9 of serve's parent leaves no worker holding the port: the next serve on the
    same port starts and has every session."""
    import psutil

    folder = model_folder("pop", tmp_path / "pop")
    server = Workers(tmp_path, folder)
    r = httpx.post(f"{server.base}/v1/sessions/p/events", json={"item": ITEMS[0]})
    assert r.status_code == 200
    workers = psutil.Process(server.proc.pid).children()
    assert len([w for w in workers if "spawn" in " ".join(w.cmdline())]) >= 2
    server.proc.kill()
    server.proc.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], f"workers outlived the parent: {alive}"

    again = Workers(tmp_path, folder, port=server.port, run="again")
    try:
        r = httpx.post(f"{again.base}/v1/sessions/p/events", json={"item": ITEMS[1]})
        assert r.status_code == 200 and r.json()["events"] == 2
    finally:
        assert again.stop() == 0
