"""`sessionrec serve MODEL_DIR [MODEL_DIR ...]`: the HTTP API and web page."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from sessionrec.cli._app import app, console
from sessionrec.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90`` or ``90s``, ``30m``, ``2h``, ``1d`` → seconds."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        raise ConfigError(
            f"--session-ttl: expected seconds or a duration like 30m, 2h; found {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--session-ttl must be a finite duration > 0, found {text!r}")
    return value


def read_token(path: Path) -> str:
    """The admin token in ``path``: its first line, without surrounding blanks."""
    from sessionrec.errors import DataError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, expected="a file holding the admin token", found=str(exc)) from None
    token = (text.splitlines() or [""])[0].strip()
    if not token:
        raise DataError(path, expected="the admin token on its first line", found="an empty line")
    return token


@app.command()
def serve(
    model_dirs: Annotated[
        list[Path],
        typer.Argument(help="Model folders; the first is the default, others by model=NAME."),
    ],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    state: Annotated[
        str | None,
        typer.Option(
            help="Session store: sqlite:///PATH or a path (default: MODEL_DIR.sessions.sqlite "
            "beside the first folder), redis://HOST:PORT/DB, or memory."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes (on Linux each listens on its own socket, SO_REUSEPORT, "
            "under a parent that restarts them and relays SIGHUP)."
        ),
    ] = 1,
    session_ttl: Annotated[
        str, typer.Option(help="Idle time after which a session expires (30m, 2h, 90s).")
    ] = "30m",
    max_session_events: Annotated[
        int,
        typer.Option(help="Most events a session keeps (past it, the oldest quarter is dropped)."),
    ] = 200,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="SESSIONREC_ADMIN_TOKEN",
            show_envvar=True,
            help="Token that enables POST /admin/reload (Authorization: Bearer ...). Prefer "
            "the environment variable or --admin-token-file: a command line is visible to "
            "every user of the machine (ps).",
        ),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the admin token (its first line)."),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Host headers answered, comma-separated (*.example.com allowed); others get "
            "400, against DNS rebinding. Default: the bound address and localhost (any host "
            "when bound to 0.0.0.0 or ::)."
        ),
    ] = None,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (413 above).")] = (
        64 * 1024
    ),
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    threads: Annotated[int, typer.Option(help="Torch threads per worker.")] = 1,
) -> None:
    """Serve recommendations over HTTP with server-side sessions, and a web page at /."""
    from sessionrec.serving import ServeConfig, require_serve_extra, run

    require_serve_extra()
    ttl = parse_duration(session_ttl)
    if admin_token_file is not None:
        if admin_token is not None:
            raise ConfigError(
                "--admin-token-file and --admin-token (or SESSIONREC_ADMIN_TOKEN): give one"
            )
        admin_token = read_token(admin_token_file)
    config = ServeConfig(
        model_dirs=tuple(str(d) for d in model_dirs),
        host=host,
        port=port,
        state=state,
        workers=workers,
        session_ttl=ttl,
        max_session_events=max_session_events,
        admin_token=admin_token,
        allowed_hosts=(
            None
            if allowed_hosts is None
            else tuple(h.strip() for h in allowed_hosts.split(",") if h.strip())
        ),
        max_body=max_body,
        device=device,
        threads=threads,
    )
    for d in model_dirs:
        if not (d / "config.json").exists():
            from sessionrec.errors import DataError

            raise DataError(d, expected="a model folder with config.json", found="none")
    console.print(
        f"serving {', '.join(d.name for d in model_dirs)} on http://{host}:{port}/ "
        f"(API docs: /docs; sessions: {config.state_url}; Ctrl-C stops)",
        highlight=False,
    )
    run(config)
