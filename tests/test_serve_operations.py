"""The service as an operator runs it: model folders damaged after start, the admin token
kept off the command line, no server paths for anonymous clients, Host headers checked
against DNS rebinding; and Markdown reports that show titles as text."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')

from _helpers import run_cli
from _serve_helpers import model_folder
from fastapi.testclient import TestClient

import sessionrec.serving
from sessionrec._report import Table, blocks_html, blocks_markdown
from sessionrec.serving import ServeConfig, build_app, default_hosts


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = model_folder("vsknn", tmp_path / "vsknn")
    (out / "data_meta.json").write_text(
        json.dumps({"path": str(tmp_path / "prepared"), "part": "train",
                    "source": {"files": [str(tmp_path / "raw" / "u.data")]}})
    )  # fmt: skip
    (out / "eval.json").write_text(
        json.dumps({"predictions": 10, "protocol": {"ties": "conservative"}, "recall@20": 0.5})
    )
    return out


def client(folder: Path, **kw: Any) -> TestClient:
    config = ServeConfig(model_dirs=(str(folder),), state="memory", **kw)
    return TestClient(build_app(config), raise_server_exceptions=False)


DAMAGE = {
    "NaN in a results file": ("eval.json", '{"predictions": NaN, "protocol": {}, "r@1": 1}'),
    "Infinity in data_meta": ("data_meta.json", '{"path": Infinity}'),
    "not JSON": ("data_meta.json", "{half a file"),
    "deep nesting": ("training.json", "[" * 50_000 + "]" * 50_000),
    "not UTF-8": ("training.json", b"\xff\xfe\x00"),
    "config.json replaced": ("config.json", "garbage"),
    "weights removed": ("weights.safetensors", None),
    "folder removed": (".", None),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_model_folder_damaged_after_start_keeps_serving(folder: Path, case: str) -> None:
    name, content = DAMAGE[case]
    with client(folder) as c:
        assert c.post("/v1/sessions/a/events", json={"item": 100}).status_code == 200
        target = folder / name
        if content is None:
            if name == ".":
                shutil.rmtree(folder)
            else:
                target.unlink()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        r = c.get("/v1/models")
        assert r.status_code == 200, r.text
        (entry,) = r.json()["models"]
        assert entry["problems"], entry  # the damage is said, not hidden
        r = c.post("/v1/sessions/a/events", json={"item": 101, "k": 3})
        assert r.status_code == 200 and r.json()["events"] == 2  # the loaded model serves on
        assert c.post("/v1/recommend", json={"items": [100, 101]}).status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200
        if name in ("config.json", "weights.safetensors", "."):
            assert "vsknn" in ready.json()["detail"]
            assert (
                'sessionrec_model_folder_problems{model="vsknn"} 0.0' not in c.get("/metrics").text
            )


def test_an_intact_folder_has_no_problems(folder: Path) -> None:
    with client(folder) as c:
        (entry,) = c.get("/v1/models").json()["models"]
        assert entry["problems"] == [] and entry["evaluations"][0]["metrics"] == {"recall@20": 0.5}
        assert c.get("/readyz").json() == {"status": "ok"}
        assert 'sessionrec_model_folder_problems{model="vsknn"} 0.0' in c.get("/metrics").text


# -- no server paths for anonymous clients ---------------------------------------------------
def test_models_route_hides_server_paths_from_anonymous_clients(
    folder: Path, tmp_path: Path
) -> None:
    with client(folder, admin_token="s3cret") as c:
        anonymous = c.get("/v1/models")
        assert anonymous.status_code == 200
        assert str(tmp_path) not in anonymous.text and "/vsknn" not in anonymous.text
        (entry,) = anonymous.json()["models"]
        assert "path" not in entry and entry["data"]["path"] == "prepared"
        assert entry["data"]["source"]["files"] == ["u.data"]
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert str(tmp_path) not in wrong.text
        admin = c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).json()
        assert admin["models"][0]["path"] == str(folder)


# -- the admin token off the command line ------------------------------------------------------
@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``serve``'s configs, captured instead of running a server."""
    got: list[Any] = []
    monkeypatch.setattr(sessionrec.serving, "run", got.append)
    return got


def test_admin_token_from_the_environment(
    folder: Path, started: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("SESSIONREC_ADMIN_TOKEN", "from-env")
    code, _, err = run_cli(["serve", str(folder)], capsys)
    assert code == 0, err
    assert started[-1].admin_token == "from-env"


def test_admin_token_from_a_file(
    folder: Path, started: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("SESSIONREC_ADMIN_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("from-file\n")
    code, _, err = run_cli(["serve", str(folder), "--admin-token-file", str(token)], capsys)
    assert code == 0, err
    assert started[-1].admin_token == "from-file"
    token.write_text("\n")
    code, _, err = run_cli(["serve", str(folder), "--admin-token-file", str(token)], capsys)
    assert code == 2 and "token" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        ["serve", str(folder), "--admin-token-file", str(tmp_path / "none")], capsys
    )
    assert code == 2 and "none" in err
    monkeypatch.setenv("SESSIONREC_ADMIN_TOKEN", "x")
    token.write_text("t\n")
    code, _, err = run_cli(["serve", str(folder), "--admin-token-file", str(token)], capsys)
    assert code == 2 and "give one" in err


# -- Host headers ------------------------------------------------------------------------------
def test_default_hosts() -> None:
    assert set(default_hosts("127.0.0.1")) == {"127.0.0.1", "localhost", "::1"}
    assert "10.0.0.5" in default_hosts("10.0.0.5") and "localhost" in default_hosts("10.0.0.5")
    assert default_hosts("0.0.0.0") == ("*",) == default_hosts("::")


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost:8000", True),
        ("127.0.0.1:8000", True),
        ("LOCALHOST", True),
        ("[::1]:8000", True),
        ("api.example.com", True),
        ("rebind.attacker.example", False),
        ("localhost.attacker.example", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_other_host_headers_are_refused(folder: Path, host: str, ok: bool) -> None:
    hosts = (*default_hosts("127.0.0.1"), "*.example.com")
    with client(folder, allowed_hosts=hosts) as c:
        for method, path in (("GET", "/healthz"), ("POST", "/v1/sessions/h/events")):
            r = c.request(method, path, json={"item": 100}, headers={"host": host})
            if ok:
                assert r.status_code == 200, r.text
            else:
                assert r.status_code == 400 and "--allowed-hosts" in r.json()["detail"]
        if not ok:
            assert c.get("/v1/sessions/h", headers={"host": "localhost"}).status_code == 404


def test_run_applies_the_default_hosts(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    sessionrec.serving.run(ServeConfig(model_dirs=(str(folder),), state="memory"))
    with TestClient(apps[0], base_url="http://evil.example") as c:
        assert c.get("/healthz").status_code == 400
    with TestClient(apps[0], base_url="http://localhost:8000") as c:
        assert c.get("/healthz").status_code == 200


# -- Markdown reports --------------------------------------------------------------------------
def test_markdown_tables_show_titles_as_text() -> None:
    hostile = [
        "<script>alert(1)</script>",
        "[click](javascript:alert(1))",
        "![x](http://tracker.example/p.png)",
        "a | b",
        "line\nbreak",
        "`code`",
        "Amélie & <b>bold</b>",
    ]
    table = Table(["rank", "title"], [[str(i), t] for i, t in enumerate(hostile)])
    md = blocks_markdown([table], {})
    body = md.splitlines()[2:]
    assert len([line for line in body if line.strip()]) == len(hostile)  # one row each
    for raw in ("<script>", "<b>"):
        assert raw not in md
    assert not re.search(r"(?<!\\)\]\(", md)  # no link or image: every ] is escaped
    assert not re.search(r"(?<!\\)`", md)  # no code span
    assert "&lt;script&gt;" in md and "a \\| b" in md and "Amélie &amp;" in md
    assert "&lt;script&gt;" in blocks_html([table], {}, title="t")
