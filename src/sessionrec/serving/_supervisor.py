"""``serve --workers N`` on Linux: N worker processes on one port, each with a listening
socket of its own (``SO_REUSEPORT``), so that the kernel spreads the connections over them.

Why not uvicorn's own ``--workers``: its workers share one listening socket, and the first
worker to wake accepts every connection waiting in the queue. A client that opens its
keep-alive connections together — a load balancer, a connection pool, wrk — can then have
all of them on one worker: on this project's 2-core machine wrk's 16 connections went 16 to 0
in at least 5 of 15 two-worker runs, and two workers then answered no more events/s than one
(BENCHMARKS.md, "A listening socket per worker"). With a socket per worker the kernel
hashes each new connection to one of the sockets.

The parent supervises: a worker exits when the parent dies (even of ``kill -9``: the kernel
sends it SIGTERM), the parent restarts a worker that dies (on the same socket, so connections
queued there are served by the replacement), stops everything on SIGINT/SIGTERM, and on
SIGHUP has every worker reload its model folders in place (no process restarted, no session
lost). ``POST /admin/reload``, answered by one worker, reloads that worker and tells the
parent (a queue the workers share), which has the others reload.

The parent waits with signal handlers, not ``sigwait``: it has loaded the models once (to
fail early on a bad folder), so torch's threads run in it, and a signal blocked in the main
thread alone would be delivered to one of them and kill the process with its default action.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from sessionrec.serving import ServeConfig

log = logging.getLogger("uvicorn.error")

#: uvicorn's exit code for a worker that could not start (bad app, port taken): restarting
#: it would fail the same way
STARTUP_FAILURE = 3
#: a worker that dies this many times within ``CRASH_WINDOW`` seconds stops the service
MAX_CRASHES = 5
CRASH_WINDOW = 60.0


def available() -> bool:
    """True where ``SO_REUSEPORT`` spreads connections over sockets (Linux); elsewhere
    (macOS, BSD: the last socket bound gets them all; Windows: none) uvicorn's workers run."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other ``SO_REUSEPORT`` sockets may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _free_port(host: str, port: int) -> int:
    """``port`` (0: a free one), after checking that nothing listens on it (``OSError``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def _die_with(parent: int) -> None:
    """Have the kernel send this process SIGTERM when ``parent`` dies (even of ``kill -9``),
    so that no worker is left holding the port; exit now if it is already gone."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent:
        os._exit(0)


def _worker(
    config_json: str, sock: socket.socket, log_level: str, reloads: Any, parent: int
) -> None:  # pragma: no cover (runs in the child; tests see it through HTTP)
    """One worker process: the app on its own socket, until SIGTERM or SIGINT."""
    _die_with(parent)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's handler (a reload) is set
    import uvicorn

    from sessionrec.serving import ServeConfig, build_app

    config = ServeConfig.from_json(config_json)
    try:
        app = build_app(config, handle_sighup=True, on_reload=lambda: reloads.put(os.getpid()))
    except Exception:
        logging.getLogger("uvicorn.error").exception("worker failed to start")
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))
    server.run(sockets=[sock])


class Supervisor:
    """Starts ``config.workers`` workers on ``config.host:config.port`` and keeps them up
    until SIGINT or SIGTERM (``run``)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        # The port must be free: SO_REUSEPORT would otherwise let these sockets join those of
        # another server of the same user already listening there, and share its traffic.
        port = _free_port(config.host, config.port)
        self.sockets = [bind(config.host, port) for _ in range(config.workers)]
        self.port = port
        self._ctx = multiprocessing.get_context("spawn")
        self.procs: list[BaseProcess | None] = [None] * config.workers
        self._crashes: list[float] = []
        self._reloads = self._ctx.SimpleQueue()  # pids of workers that reloaded themselves
        self._signals: list[int] = []

    def _start(self, slot: int) -> None:
        proc = self._ctx.Process(
            target=_worker,
            args=(
                self.config.to_json(),
                self.sockets[slot],
                self.config.log_level,
                self._reloads,
                os.getpid(),
            ),
            name=f"sessionrec-worker-{slot}",
        )
        proc.start()
        self.procs[slot] = proc
        log.info("started worker %d [%s] on port %d", slot, proc.pid, self.port)

    def run(self) -> int:
        """Serve until told to stop; the exit code (0, or 1 when workers could not run)."""
        caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in caught}
        code = 0
        try:
            for slot in range(len(self.sockets)):
                self._start(slot)
            while True:
                time.sleep(0.1)  # a signal cuts it short (its handler runs first)
                signals, self._signals = self._signals, []
                if signal.SIGINT in signals or signal.SIGTERM in signals:
                    log.info("stopping the workers")
                    break
                if signal.SIGHUP in signals:
                    self._signal_workers(signal.SIGHUP)
                while not self._reloads.empty():
                    # a worker reloaded itself (POST /admin/reload): the others follow
                    self._signal_workers(signal.SIGHUP, but=self._reloads.get())
                if not self._keep_alive():
                    code = 1
                    break
        finally:
            self._stop()
            for sock in self.sockets:
                sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _on_signal(self, sig: int, frame: Any) -> None:
        self._signals.append(sig)

    def _signal_workers(self, sig: int, but: int | None = None) -> None:
        for proc in self.procs:
            if proc is not None and proc.pid is not None and proc.pid != but and proc.is_alive():
                os.kill(proc.pid, sig)

    def _keep_alive(self) -> bool:
        """Restart dead workers; False when a worker cannot start or keeps dying."""
        for slot, proc in enumerate(self.procs):
            if proc is None or proc.is_alive() or self._signals:
                continue
            proc.join()
            _mark_dead(proc.pid)
            if proc.exitcode == STARTUP_FAILURE:
                log.error("worker %d [%s] failed to start; stopping", slot, proc.pid)
                return False
            now = time.monotonic()
            self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW] + [now]
            if len(self._crashes) > MAX_CRASHES:
                log.error(
                    "workers died %d times within %.0f s; stopping", MAX_CRASHES, CRASH_WINDOW
                )
                return False
            log.warning(
                "worker %d [%s] died (exit code %s); restarting it", slot, proc.pid, proc.exitcode
            )
            self._start(slot)
        return True

    def _stop(self, grace: float = 30.0) -> None:
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker [%s] did not stop in %.0f s; killing it", proc.pid, grace)
                proc.kill()
                proc.join()


def _mark_dead(pid: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)
