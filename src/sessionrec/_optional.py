"""Optional dependencies (extras): import them with an error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from sessionrec.errors import ConfigError

#: module → (the extra that installs it, who needs it). Every optional import goes through here.
OPTIONAL: dict[str, tuple[str, str]] = {
    "implicit": ("cf", "the bpr and als models need"),
    "threadpoolctl": ("cf", "the bpr and als models need"),
    "faiss": ("ann", "the approximate item index (sessionrec index, --index) needs"),
}


class MissingExtraError(ConfigError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str) -> ModuleType:
    """``import module``, or a ``MissingExtraError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        extra, what = OPTIONAL[top]
        raise MissingExtraError(
            f"{what} the optional package {top!r}, which is not installed: "
            f'pip install -e ".[{extra}]" in a clone of sessionrec '
            f'(pip install "sessionrec[{extra}]" from an index)'
        ) from exc
