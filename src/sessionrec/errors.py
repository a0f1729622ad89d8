"""Errors a user can act on: each names the file, the line or column, what was expected and
what was found. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class SessionrecError(Exception):
    """Base class of every error meant for the user rather than for a traceback."""


class DataError(SessionrecError):
    """Bad input data: names where it is and what was wrong."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        expected: str,
        found: str,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.expected = expected
        self.found = found
        where = self.path or "<data>"
        if line is not None:
            where += f":{line}"
        if column is not None:
            where += f": column {column!r}"
        super().__init__(f"{where}: expected {expected}, found {found}")


class ConfigError(SessionrecError):
    """An invalid parameter, option or name."""


class UnknownNameError(ConfigError):
    """An unknown dataset, model or option name; lists what is known."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


class OutputError(ConfigError):
    """An output that cannot or must not be written: a folder holding other files, a file where
    a folder should go, a location that refuses writes. Nothing is written or deleted."""


class TrainingDivergedError(SessionrecError):
    """Training produced a non-finite loss, parameter or valid metric; names the epoch and step."""

    def __init__(self, model: str, what: str, epoch: int, step: int | None = None) -> None:
        self.epoch = epoch
        self.step = step
        where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        super().__init__(
            f"{model} diverged: {what} at {where}; nothing from this epoch is kept "
            "(try a lower learning rate, or gradient-friendlier settings)"
        )


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (what a user sees of a library's error)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"
