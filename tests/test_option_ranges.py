"""Numeric options of `serve` and `tune` out of range (NaN, infinities, negatives, zero where
it makes no sense): exit code 2 and one line naming the option, before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers import run_cli

from sessionrec.errors import ConfigError

SERVE_BAD = [
    ("--session-ttl", "nan"),
    ("--session-ttl", "inf"),
    ("--session-ttl", "-5m"),
    ("--session-ttl", "0"),
    ("--session-ttl", "1e400s"),
    ("--session-ttl", "99999d"),
    ("--max-session-events", "0"),
    ("--max-session-events", "-1"),
    ("--max-body", "0"),
    ("--max-body", "-10"),
    ("--workers", "0"),
    ("--workers", "-2"),
    ("--threads", "0"),
    ("--port", "-1"),
    ("--port", "70000"),
]


@pytest.mark.parametrize(("option", "value"), SERVE_BAD)
def test_serve_refuses_out_of_range_options(
    option: str, value: str, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')
    import sessionrec.serving

    def started(config: Any) -> None:
        pytest.fail(f"serve started with {option}={value}")

    monkeypatch.setattr(sessionrec.serving, "run", started)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, out, err = run_cli(["serve", str(folder), f"{option}={value}"], capsys)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and option in lines[0], err
    assert "Traceback" not in err and "serving" not in out


TUNE_BAD = [
    ("--timeout", "nan"),
    ("--timeout", "inf"),
    ("--timeout", "0"),
    ("--timeout", "-3"),
    ("--trials", "-1"),
    ("--cutoffs", "0"),
    ("--cutoffs", "-5"),
]


@pytest.mark.parametrize(("option", "value"), TUNE_BAD)
def test_tune_refuses_out_of_range_options(
    option: str, value: str, tmp_path: Path, capsys: Any
) -> None:
    pytest.importorskip("optuna", reason="needs optuna (the tune extra)")
    argv = ["tune", str(tmp_path / "data"), "--model", "pop", "--out", str(tmp_path / "t")]
    code, out, err = run_cli([*argv, f"{option}={value}"], capsys)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and option in lines[0], err
    assert not (tmp_path / "t").exists()  # nothing was started


def test_python_serve_config_refuses_them_too() -> None:
    pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')
    from sessionrec.serving import ServeConfig
    from sessionrec.serving.state import MemoryStore

    for kw in (
        {"session_ttl": float("nan")},
        {"session_ttl": float("inf")},
        {"max_session_events": 0},
        {"max_body": -1},
        {"cache_size": 0},
        {"workers": True},
    ):
        with pytest.raises(ConfigError):
            ServeConfig(model_dirs=("m",), **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="session ttl"):
        MemoryStore(float("nan"), 10)
