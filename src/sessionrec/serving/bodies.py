"""Request bodies read as JSON, strictly: what Python's ``json`` module accepts but JSON does
not is a bad body, not a value.

Python reads ``NaN``, ``Infinity`` and ``-Infinity``, turns a number such as ``1e999`` into
an infinite float, and recurses once per level of nesting (a body of ten thousand ``[`` ends
in ``RecursionError``). None of that is JSON (RFC 8259 has no non-finite numbers), none of it
can be echoed back in a JSON error, and every route of the service reads its body here first,
so each of them answers such a body with a 422 and one line saying what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

#: the deepest nesting a body may have (the service's bodies have two levels)
MAX_DEPTH = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class BadBody(ValueError):
    """A request body that is not strict JSON; the message is one line."""


def _constant(name: str) -> Any:
    raise BadBody(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody(f"number {text[:40]} is out of range of a double")
    return value


def _depth(body: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (numpy, no loop per byte)."""
    text = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    steps = (
        (text == ord("[")).astype(np.int32)
        + (text == ord("{"))
        - (text == ord("]"))
        - (text == ord("}"))
    )
    return int(np.cumsum(steps).max(initial=0))


def read_json(body: bytes) -> Any:
    """``body`` parsed as strict JSON (UTF-8, finite numbers, at most ``MAX_DEPTH`` levels).

    Raises:
        BadBody: with a one-line message saying what is wrong and where.
    """
    # counting brackets is C speed; the exact depth only when there are many
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise BadBody(f"nested deeper than {MAX_DEPTH} levels")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except BadBody:
        raise
    except json.JSONDecodeError as exc:
        raise BadBody(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadBody("nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise BadBody(f"not a usable number: {str(exc).splitlines()[0][:120]}") from None


def is_json_type(content_type: bytes | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (it does when none is given)."""
    if content_type is None:
        return True
    main = content_type.split(b";", 1)[0].strip().lower()
    return main == b"application/json" or (
        main.startswith(b"application/") and main.endswith(b"+json")
    )


def safe_errors(errors: Any) -> list[dict[str, Any]]:
    """pydantic's validation errors without what cannot be written back: each error keeps
    its location, message and type; its input only when short and plain (else a short
    ASCII ``repr``), so that no echoed value can break the answer."""
    out = []
    for e in errors:
        item: dict[str, Any] = {
            "type": str(e.get("type", "")),
            "loc": [x if isinstance(x, int | str) else str(x) for x in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
        }
        if "input" in e:
            item["input"] = _short(e["input"])
        out.append(item)
    return out


def one_line(errors: list[dict[str, Any]]) -> str:
    """``safe_errors`` as one line: ``body.k: Input should be ... (found "5")``."""
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e["loc"])
        found = f" (found {json.dumps(e['input'])})" if "input" in e else ""
        parts.append(f"{where}: {e['msg']}{found}")
    return "; ".join(parts) or "invalid request"


def _short(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**18 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= 200:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
    text = ascii(value) if not isinstance(value, list | dict) else f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."
