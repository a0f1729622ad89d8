"""Request bodies that Python's JSON reader takes but JSON does not (NaN, Infinity, numbers
past a double, deep nesting) and values of the wrong JSON type, on every route: a 4xx with
a one-line JSON error, never a 500, never a coerced value.

Hypothesis writes the bodies (any JSON-like value with non-finite numbers, huge numbers and
nesting mixed in) and the query and path values; each route of the OpenAPI schema is tried,
with the fast event path on and off."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

from _serve_helpers import model_folder
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionrec.serving.app import AppOptions, create_app
from sessionrec.serving.bodies import MAX_DEPTH, BadBody, read_json
from sessionrec.serving.engine import Engine
from sessionrec.serving.state import open_store

NON_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000]


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestClient]:
    root = tmp_path_factory.mktemp("badjson")
    folder = str(model_folder("vsknn", root / "vsknn"))
    out = {}
    for fast in (True, False):
        engine = Engine([folder], open_store(str(root / f"s{fast}.sqlite"), 1800, 200))
        app = create_app(engine, AppOptions(admin_token="secret", fast_events=fast))
        out["fast" if fast else "plain"] = TestClient(app, raise_server_exceptions=False)
    return out


def routes(client: TestClient) -> list[tuple[str, str, bool]]:
    """(method, path with its parameters filled, takes a body) of every route in the schema."""
    schema = client.get("/openapi.json").json()
    out = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            filled = path.replace("{session_id}", "s1").replace("{item_id}", "100")
            out.append((method.upper(), filled, "requestBody" in op))
    return out


def assert_clean_4xx(r: Any) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body["detail"], str) and "\n" not in body["detail"], body


# -- the strict reader ------------------------------------------------------------------------
@pytest.mark.parametrize("number", NON_JSON_NUMBERS)
def test_the_reader_refuses_what_json_does_not_allow(number: str) -> None:
    if len(number) < 100:  # Python's reader takes these (and a 500 followed)
        assert json.loads(f'{{"k": {number}}}') is not None
    with pytest.raises(BadBody) as err:
        read_json(f'{{"k": {number}}}'.encode())
    assert "\n" not in str(err.value)


def test_the_reader_bounds_nesting_but_not_strings() -> None:
    assert read_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    for deep in (MAX_DEPTH + 1, 5000, 100_000):
        with pytest.raises(BadBody, match="nested"):
            read_json(b"[" * deep + b"]" * deep)
    # brackets inside strings are text, not nesting
    text = '"' + "[" * 5000 + '\\"{' * 100 + '"'
    assert read_json(f'{{"item": {text}}}'.encode()) == {"item": json.loads(text)}
    assert read_json(b'{"a": [1.5, -2e10, 0]}') == {"a": [1.5, -2e10, 0]}


# -- every route, fixed cases -----------------------------------------------------------------
BAD_BODIES = [
    *(f'{{"item": {n}}}'.encode() for n in NON_JSON_NUMBERS),
    *(f'{{"item": 100, "k": {n}}}'.encode() for n in NON_JSON_NUMBERS),
    *(f'{{"items": [100, {n}]}}'.encode() for n in NON_JSON_NUMBERS),
    b"[" * 100_000 + b"]" * 100_000,
    b'{"items": ' + b"[" * 500 + b"]" * 500 + b"}",
    b'{"item": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
    b'{"item": 100, "k": NaN, "exclude_seen": Infinity}',
]


@pytest.mark.parametrize("mode", ["fast", "plain"])
@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: b[:24].decode(errors="replace"))
def test_non_json_bodies_are_422_on_every_route(
    clients: dict[str, TestClient], mode: str, body: bytes
) -> None:
    c = clients[mode]
    for method, path, _ in routes(c):
        r = c.request(method, path, content=body, headers={"content-type": "application/json"})
        assert r.status_code != 500, (method, path, r.text[:200])
        if r.status_code >= 400 and r.status_code not in (401, 403, 404, 405):
            assert_clean_4xx(r)
    # nothing reached a session
    assert c.get("/v1/sessions/s1").status_code == 404


WRONG_TYPES: list[dict[str, Any]] = [
    {"item": True},
    {"item": False},
    {"item": None},
    {"item": [100]},
    {"item": {"id": 100}},
    {"item": 100.0},
    {"item": 100, "k": "5"},
    {"item": 100, "k": 5.0},
    {"item": 100, "k": True},
    {"item": 100, "exclude_seen": 1},
    {"item": 100, "exclude_seen": "true"},
    {"item": 100, "model": 3},
    {"item": 100, "event_id": 7},
]


@pytest.mark.parametrize("mode", ["fast", "plain"])
@pytest.mark.parametrize("body", WRONG_TYPES, ids=json.dumps)
def test_values_of_the_wrong_type_are_refused_not_coerced(
    clients: dict[str, TestClient], mode: str, body: dict[str, Any]
) -> None:
    """``true`` is not item 1 and ``"5"`` is not 5: 422, and nothing is stored."""
    c = clients[mode]
    r = c.post("/v1/sessions/typed/events", json=body)
    assert r.status_code == 422, r.text
    assert_clean_4xx(r)
    assert c.get("/v1/sessions/typed").status_code == 404
    if "item" in body:
        rec = {"items": [body["item"]], **{k: v for k, v in body.items() if k != "item"}}
        r = c.post("/v1/recommend", json=rec)
        assert r.status_code == 422, r.text
        assert_clean_4xx(r)


# -- every route, generated cases -------------------------------------------------------------
def _number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NON_JSON_NUMBERS),
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.integers(min_value=300, max_value=5000).map(lambda e: f"1e{e}"),
    )


def _values(depth: int) -> st.SearchStrategy[str]:
    """JSON-like text: non-finite and huge numbers, wrong types, nesting up to ``depth``."""
    leaf = st.one_of(
        _number_text(),
        st.sampled_from(["true", "false", "null", '"Toy Story"', '""', '"\\ud800"', "100"]),
        st.text(max_size=10).map(json.dumps),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.dictionaries(
                st.sampled_from(["item", "items", "k", "exclude_seen", "model", "event_id", "x"]),
                inner,
                max_size=5,
            ).map(lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"),
        ),
        max_leaves=depth,
    )


def _nested() -> st.SearchStrategy[str]:
    return st.tuples(st.integers(min_value=1, max_value=3000), st.sampled_from("[{")).map(
        lambda t: (
            ("[" * t[0] + "]" * t[0]) if t[1] == "[" else ('{"item":' * t[0] + "1" + "}" * t[0])
        )
    )


BODIES = st.one_of(
    _values(20),
    _nested(),
    st.dictionaries(
        st.sampled_from(["item", "items", "k", "exclude_seen", "model", "event_id"]),
        _values(6),
        min_size=1,
        max_size=5,
    ).map(lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"),
)
QUERY = st.one_of(
    _number_text(), st.sampled_from(["true", "", "-0", "0x10", "1_000", "١٢"]), st.text(max_size=8)
)


@pytest.mark.parametrize("mode", ["fast", "plain"])
def test_fuzz_every_route(clients: dict[str, TestClient], mode: str) -> None:
    c = clients[mode]
    table = routes(c)
    assert len(table) >= 11

    @given(
        route=st.sampled_from(table),
        body=BODIES,
        k=QUERY,
        flag=QUERY,
        q=QUERY,
        sid=st.one_of(st.just("s1"), st.text(max_size=12)),
    )
    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(route: tuple[str, str, bool], body: str, k: str, flag: str, q: str, sid: str) -> None:
        method, path, _ = route
        if sid and "/sessions/" in path:
            path = path.replace("/s1", "/" + quote(sid, safe=""))
        r = c.request(
            method,
            path,
            params={"k": k, "exclude_seen": flag, "q": q, "limit": k, "model": q},
            content=body.encode("utf-8", "surrogatepass"),
            headers={"content-type": "application/json"},
        )
        assert r.status_code < 500, (method, path, body[:200], r.text[:300])
        if r.status_code == 200 and r.headers["content-type"].startswith("application/json"):
            _finite(r.json())
        elif r.status_code in (413, 422):
            assert_clean_4xx(r)

    run()


def _finite(value: Any) -> None:
    """Every number in an answer is finite (an answer never carries NaN)."""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, list):
        for v in value:
            _finite(v)
    elif isinstance(value, dict):
        for v in value.values():
            _finite(v)
