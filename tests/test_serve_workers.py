"""`sessionrec serve --workers 2` as a real process: the workers share every session through
the SQLite store (WAL) and /metrics counts the requests of both, whichever answers the scrape;
the metrics folder serve made is gone when it stops."""

from __future__ import annotations

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
EVENTS_ROUTE = 'method="POST",route="/v1/sessions/{session_id}/events",status="200"'


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m is not None, f"{name} not in /metrics"
    return float(m.group(1))


def test_workers_refuse_a_store_of_one_process() -> None:
    with pytest.raises(ConfigError, match="--state memory"):
        ServeConfig(model_dirs=("m",), state="memory", workers=2)
    assert ServeConfig(model_dirs=("m",), state="memory").workers == 1


def test_two_workers_share_sessions_and_metrics(tmp_path: Path) -> None:
    folder = model_folder("gru4rec", tmp_path / "gru", GRU_PARAMS)
    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = [sys.executable, "-c", "from sessionrec.cli import main; main()", "serve", str(folder)]
    args += ["--port", str(port), "--state", str(tmp_path / "s.sqlite"), "--workers", "2"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        (metrics_dir,) = temp.glob("sessionrec-metrics-*")

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
            want = model.recommend(plan, 5, exclude_seen=False)["item_id"].to_list()
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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert not metrics_dir.exists()  # serve removed the folder it made
