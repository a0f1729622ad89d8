"""fetch / import into the cache, and ml-100k's fallback from the recbole wheel (no network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import urllib.error
import zipfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import sessionrec as sr
from sessionrec import _schema as S
from sessionrec.datasets import fetch as F
from sessionrec.datasets import registry
from sessionrec.datasets.movielens import load_movielens
from sessionrec.errors import ConfigError, DataError, UnknownNameError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def leftovers(root: Path) -> list[str]:
    """Hidden temp folders/files that a failed install might leave behind."""
    return sorted(p.name for p in root.rglob(".*") if p.name != ".complete")


ML1M_FILES = {
    "ml-1m/ratings.dat": b"1::10::5::978300760\n2::10::3::978300761\n",
    "ml-1m/movies.dat": "10::Amélie (2001)::Comedy|Romance\n".encode("latin-1"),
}


@pytest.fixture
def ml1m_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny ml-1m archive and a registry entry pointing at it by file:// URL."""
    z = make_zip(tmp_path / "ml-1m.zip", ML1M_FILES)
    spec = registry.DatasetSpec(
        "ml-1m", z.as_uri(), sha(z.read_bytes()), "movielens", "tiny", "ml-1m"
    )
    monkeypatch.setitem(registry.DATASETS, "ml-1m", spec)
    return z


def test_fetch_downloads_verifies_extracts_and_records_source(ml1m_zip: Path) -> None:
    assert not registry.is_cached("ml-1m")
    out = F.fetch("ml-1m")
    assert out == registry.cache_dir("ml-1m")
    assert sorted(p.name for p in out.iterdir()) == [
        ".complete",
        "movies.dat",
        "ratings.dat",
        "source.json",
    ]
    rec = F.read_source(out)
    assert rec["kind"] == "url" and rec["url"] == ml1m_zip.as_uri()
    ds = sr.load("ml-1m")  # from the cache, no second download
    assert ds.info["source_used"] == f"official archive {ml1m_zip.as_uri()}"
    assert ds.events[S.ITEM].to_list() == [10, 10]
    assert ds.items is not None and ds.items[S.TITLE].to_list() == ["Amélie (2001)"]
    assert leftovers(registry.home()) == []


def test_fetch_sha_mismatch_leaves_nothing(ml1m_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.DATASETS["ml-1m"]
    monkeypatch.setitem(
        registry.DATASETS, "ml-1m", registry.DatasetSpec(**{**spec.__dict__, "sha256": "0" * 64})
    )
    with pytest.raises(DataError) as e:
        F.fetch("ml-1m")
    assert "ml-1m.zip" in str(e.value) and "sha256" in e.value.expected
    assert not registry.cache_dir("ml-1m").exists()
    assert leftovers(registry.home()) == []


def test_fetch_corrupt_archive_names_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "ml-1m.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    spec = registry.DatasetSpec("ml-1m", bad.as_uri(), None, "movielens", "tiny", "ml-1m")
    monkeypatch.setitem(registry.DATASETS, "ml-1m", spec)
    with pytest.raises(DataError) as e:
        F.fetch("ml-1m")
    assert "ml-1m.zip" in str(e.value) and "zip" in e.value.expected
    assert not registry.cache_dir("ml-1m").exists()


def test_fetch_unreachable_without_fallback_says_how_to_import(ml1m_zip: Path) -> None:
    def offline(url: str, dest: Path, timeout: float) -> None:
        raise urllib.error.URLError("no route")

    with pytest.raises(sr.errors.SessionrecError, match="data import ml-1m"):
        F.fetch("ml-1m", downloader=offline)
    assert not registry.cache_dir("ml-1m").exists()


def test_fetch_unknown_name_and_manual_only() -> None:
    with pytest.raises(UnknownNameError, match="ml-5m"):
        F.fetch("ml-5m")
    with pytest.raises(ConfigError, match="data import yoochoose"):
        F.fetch("yoochoose")


def test_import_folder_and_zip(tmp_path: Path) -> None:
    src = tmp_path / "mine" / "ml-1m"
    src.mkdir(parents=True)
    for name, data in ML1M_FILES.items():
        (src / Path(name).name).write_bytes(data)
    out = F.import_dataset("ml-1m", src.parent)  # finds the inner folder
    assert (out / "ratings.dat").read_bytes() == ML1M_FILES["ml-1m/ratings.dat"]
    assert sr.load("ml-1m").info["source_used"] == f"imported folder {src.parent.resolve()}"
    z = make_zip(tmp_path / "x.zip", ML1M_FILES)
    F.import_dataset("ml-1m", z)  # replaces the cached copy
    assert F.read_source(out)["path"] == str(z.resolve())
    assert leftovers(registry.home()) == []


def test_import_wrong_content_is_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "x.zip", {"readme.txt": b"hi"})
    with pytest.raises(DataError) as e:
        F.import_dataset("ml-100k", z)
    assert "x.zip" in str(e.value) and "u.data" in e.value.expected
    assert "readme.txt" in e.value.found
    assert not registry.cache_dir("ml-100k").exists()
    assert leftovers(registry.home()) == []


# --- ml-100k from the recbole wheel ------------------------------------------------------------

INTER = (
    b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    b"196\t242\t3\t881250949\n186\t1412\t3\t891717742\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tMisérables, Les\t1995\tDrama Musical\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n"
).encode()


@pytest.fixture
def tiny_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheel-shaped zip with a tiny ml-100k copy; the expected checksums follow it."""
    monkeypatch.setitem(F.RECBOLE_SHA256, "ml-100k.inter", sha(INTER))
    monkeypatch.setitem(F.RECBOLE_SHA256, "ml-100k.item", sha(ITEM))
    return make_zip(
        tmp_path / "recbole-1.2.1-py3-none-any.whl",
        {F.RECBOLE_DIR + "ml-100k.inter": INTER, F.RECBOLE_DIR + "ml-100k.item": ITEM},
    )


def test_convert_tiny_wheel(tiny_wheel: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    F.convert_recbole_ml100k(tiny_wheel, out)
    assert (out / "u.data").read_text() == "196\t242\t3\t881250949\n186\t1412\t3\t891717742\n"
    lines = (out / "u.item").read_bytes().decode("latin-1").splitlines()
    assert lines[0].split("|")[:5] == ["242", "Misérables, Les (1995)", "1995", "", ""]
    assert lines[1].split("|")[:3] == ["267", "unknown", ""]
    assert lines[2].split("|")[1] == "Land Before Time III: The Time of the Great Giving (1995) (V)"
    ds = load_movielens(out)
    assert ds.items is not None
    items = {r[S.ITEM]: r for r in ds.items.iter_rows(named=True)}
    assert items[242][S.GENRES] == ["Drama", "Musical"]
    assert items[1412][S.YEAR] == 1995
    assert items[267][S.GENRES] == ["unknown"] and items[267][S.YEAR] is None


def test_convert_rejects_wrong_checksum(tiny_wheel: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        F.convert_recbole_ml100k(tiny_wheel, tmp_path, expected={"ml-100k.inter": "0" * 64})
    assert tiny_wheel.name in str(e.value) and e.value.column == "ml-100k.inter"


def test_fetch_falls_back_to_wheel_when_official_url_fails(tiny_wheel: Path) -> None:
    calls: list[float] = []

    def offline(url: str, dest: Path, timeout: float) -> None:
        calls.append(timeout)
        raise urllib.error.URLError("Name or service not known")

    out = F.fetch("ml-100k", downloader=offline, wheel=tiny_wheel)
    assert calls == [F.CONNECT_TIMEOUT]  # the official URL was tried first, with a short timeout
    rec = F.read_source(out)
    assert rec["kind"] == "recbole-wheel" and "Name or service" in rec["official_error"]
    ds = sr.load("ml-100k")
    assert str(ds.info["source_used"]).startswith("PyPI wheel recbole==1.2.1")
    assert ds.events[S.USER].to_list() == [196, 186]
    assert leftovers(registry.home()) == []


def test_wheel_conversion_matches_official_ml100k(tmp_path: Path, ml100k: Path) -> None:
    """Converted from recbole's copy = the official files: same events row for row, same items."""
    wheel_dir = ml100k.parent / "ml-100k-recbole-wheel"
    if not (wheel_dir / "ml-100k.inter").exists():
        pytest.skip("../shared/data/ml-100k-recbole-wheel not present")
    wheel = make_zip(
        tmp_path / "recbole-1.2.1-py3-none-any.whl",
        {F.RECBOLE_DIR + n: (wheel_dir / n).read_bytes() for n in F.RECBOLE_SHA256},
    )
    out = tmp_path / "converted"
    out.mkdir()
    F.convert_recbole_ml100k(wheel, out)  # the real checksums
    ours, official = load_movielens(out), load_movielens(ml100k)
    assert ours.events.equals(official.events)
    assert (out / "u.data").read_bytes() == (ml100k / "u.data").read_bytes()
    assert ours.items is not None and official.items is not None
    cols = [S.ITEM, S.TITLE, S.YEAR, S.GENRES]
    assert ours.items.select(cols).equals(official.items.select(cols))
    assert ours.items.height == 1682
    assert official.items.filter(pl.col(S.ITEM) == 1635)[S.TITLE].item() == "Two Friends (1986)"


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a fresh folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_fetch_over_http(http_dir: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = http_dir
    z = make_zip(root / "ml-1m.zip", ML1M_FILES)
    url = f"{base}/ml-1m.zip"
    monkeypatch.setitem(
        registry.DATASETS,
        "ml-1m",
        registry.DatasetSpec("ml-1m", url, sha(z.read_bytes()), "movielens", "tiny", "ml-1m"),
    )
    out = F.fetch("ml-1m")
    assert (out / "ratings.dat").read_bytes() == ML1M_FILES["ml-1m/ratings.dat"]
    assert F.read_source(out)["url"] == url
    assert list((registry.home() / "downloads").iterdir()) == []  # archive removed once extracted
    # A 404 is an unreachable source: the message says what failed and how to import by hand.
    monkeypatch.setitem(
        registry.DATASETS,
        "ml-1m",
        registry.DatasetSpec("ml-1m", f"{base}/gone.zip", None, "movielens", "tiny", "ml-1m"),
    )
    with pytest.raises(sr.errors.SessionrecError, match=r"404.*data import ml-1m"):
        F.fetch("ml-1m", force=True)
    assert (out / ".complete").exists()  # the cached copy survives a failed re-fetch


def test_corrupt_cached_wheel_is_reported_and_dropped() -> None:
    downloads = registry.home() / "downloads"
    downloads.mkdir(parents=True)
    bad = downloads / "recbole-1.2.1-py3-none-any.whl"  # found there, so pip is not run
    bad.write_bytes(b"PK\x03\x04 truncated")

    def offline(url: str, dest: Path, timeout: float) -> None:
        raise urllib.error.URLError("offline")

    with pytest.raises(DataError) as e:
        F.fetch("ml-100k", downloader=offline)
    assert bad.name in str(e.value)
    assert not bad.exists()  # the next fetch downloads it afresh
    assert not registry.cache_dir("ml-100k").exists()
