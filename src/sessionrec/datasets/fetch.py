"""Fetch a known dataset into the cache, or import a copy the user already has.

Every route ends the same way: the files land in a temporary folder beside
``cache_dir(name)``, are checked to look like the dataset, get a ``source.json`` saying where
they came from and a ``.complete`` marker (written last), and the folder is renamed into place.
A crash or a bad archive therefore never leaves a cache entry that looks whole.

MovieLens-100K has a fallback for machines that reach only PyPI: the copy shipped inside the
wheel ``recbole==1.2.1`` (downloaded with ``pip download --no-deps``, never installed), whose two
files are checksum-verified and converted to the official ``u.data`` / ``u.item`` layout.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from sessionrec._io import atomic_dir, read_json, write_json
from sessionrec.datasets.movielens import GENRES_100K
from sessionrec.datasets.registry import DatasetSpec, cache_dir, home, is_cached, spec
from sessionrec.errors import ConfigError, DataError, SessionrecError

log = logging.getLogger(__name__)

#: (url, destination file, timeout in seconds) -> None; raises OSError when unreachable.
Downloader = Callable[[str, Path, float], None]

CONNECT_TIMEOUT = 5.0
SOURCE_FILE = "source.json"
COMPLETE = ".complete"

RECBOLE = "recbole==1.2.1"
RECBOLE_DIR = "recbole/dataset_example/ml-100k/"
#: sha256 of the two files inside the wheel that hold MovieLens-100K.
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}

#: A file that marks the top folder of each kind of dataset inside an archive or folder.
_MARKERS = {
    "ml-100k": ("u.data",),
    "ml-1m": ("ratings.dat",),
    "ml-10m": ("ratings.dat",),
    "yoochoose": ("yoochoose-clicks.dat",),
}
_DEFAULT_MARKERS = ("ratings.csv",)


def markers(name: str) -> tuple[str, ...]:
    """The file(s) a folder of dataset ``name`` must hold."""
    return _MARKERS.get(name, _DEFAULT_MARKERS)


def read_source(folder: Path) -> dict[str, Any]:
    """The ``source.json`` record of a cached dataset folder ({} when there is none)."""
    f = folder / SOURCE_FILE
    if not f.exists():
        return {}
    try:
        rec = read_json(f)
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def fetch(
    name: str,
    *,
    force: bool = False,
    downloader: Downloader | None = None,
    wheel: Path | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Path:
    """Download dataset ``name`` into the cache (sha256-verified, atomic) and return its folder.

    Args:
        name: a registry name (``sessionrec data list``).
        force: fetch again even when cached.
        downloader: fetches a URL into a file; defaults to urllib with a progress bar. Tests
            inject one (or point the registry at a ``file://`` URL).
        wheel: for ml-100k's fallback, a local ``recbole-1.2.1`` wheel to use instead of
            running ``pip download``.
        timeout: the connect timeout for the official URL, in seconds.

    Raises:
        UnknownNameError: ``name`` is not in the registry.
        DataError: a checksum mismatch or a corrupt archive (naming the file).
        SessionrecError: the dataset cannot be downloaded from anywhere.
    """
    sp = spec(name)
    if is_cached(name) and not force:
        return cache_dir(name)
    if sp.url is None:
        raise ConfigError(
            f"{name} has no public download; get it by hand, then run "
            f"`sessionrec data import {name} PATH`"
        )
    downloads = home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / Path(sp.url).name
    try:
        if not _archive_ok(archive, sp):
            _download(sp.url, archive, timeout, downloader or http_download)
    except OSError as exc:
        reason = _reason(exc)
        if name == "ml-100k":
            log.warning("%s unreachable (%s); using the copy in the PyPI wheel %s",
                        sp.url, reason, RECBOLE)  # fmt: skip
            return _fetch_recbole(wheel, official_error=f"{sp.url}: {reason}")
        raise SessionrecError(
            f"could not download {sp.url} ({reason}); download it by hand, then run "
            f"`sessionrec data import {name} PATH`"
        ) from exc
    digest = sha256_file(archive)
    if sp.sha256 and digest != sp.sha256:
        archive.unlink(missing_ok=True)
        raise DataError(
            archive, expected=f"sha256 {sp.sha256} (the official archive)", found=digest
        )
    source = {"source_used": f"official archive {sp.url}", "kind": "url", "url": sp.url,
              "sha256": digest}  # fmt: skip
    out = _install_archive(name, archive, source)
    archive.unlink()  # the extracted copy is what counts; the archive would only double the disk
    return out


def ensure(name: str, *, download: bool = True) -> Path:
    """The folder of dataset ``name``, fetching it first when it is not cached."""
    if is_cached(name):
        return cache_dir(name)
    if not download:
        raise SessionrecError(f"dataset {name!r} is not cached; run `sessionrec data fetch {name}`")
    return fetch(name)


def import_dataset(name: str, path: str | Path) -> Path:
    """Put an archive (.zip) or folder of dataset ``name`` that the user has into the cache.

    Raises:
        DataError: the path is missing, not a zip archive or folder, or does not hold the
            dataset's files.
    """
    sp = spec(name)
    path = Path(path)
    if not path.exists():
        raise DataError(path, expected="an archive (.zip) or a folder", found="no such path")
    if path.is_dir():
        top = _find_top(path, name)
        if top is None:
            raise DataError(
                path,
                expected=f"a {name} folder holding {' or '.join(markers(name))}",
                found=_listing(path),
            )
        record = {"source_used": f"imported folder {path.resolve()}", "kind": "import",
                  "path": str(path.resolve())}  # fmt: skip
        with _install(name) as tmp:
            for f in top.iterdir():
                if f.name.startswith("."):
                    continue
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
            _finish(name, tmp, path, record)
        return cache_dir(name)
    digest = sha256_file(path)
    source: dict[str, Any] = {"source_used": f"imported archive {path.resolve()}", "kind": "import",
              "path": str(path.resolve()), "sha256": digest,
              "official": sp.sha256 is not None and digest == sp.sha256}  # fmt: skip
    return _install_archive(name, path, source)


# --- archives -------------------------------------------------------------------------------


def _install_archive(name: str, archive: Path, source: dict[str, Any]) -> Path:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            archive,
            expected="a zip archive (or a folder)",
            found=f"a corrupt or truncated zip ({exc})"
            if archive.suffix.lower() == ".zip"
            else f"a {archive.suffix or 'plain'} file (extract it, then import the folder)",
        ) from None
    with zf, _install(name) as tmp:
        bad = _testzip(zf, archive)
        if bad:
            raise DataError(archive, expected="an intact zip archive", found=f"{bad} is corrupt")
        raw = tmp / ".extract"
        _extract(zf, raw, archive)
        top = _find_top(raw, name)
        if top is None:
            raise DataError(
                archive,
                expected=f"a {name} archive holding {' or '.join(markers(name))}",
                found=_listing(raw, recursive=True),
            )
        for f in top.iterdir():
            os.replace(f, tmp / f.name)
        shutil.rmtree(raw)
        _finish(name, tmp, archive, source)
    return cache_dir(name)


def _testzip(zf: zipfile.ZipFile, archive: Path) -> str | None:
    try:
        return zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(archive, expected="an intact zip archive", found=str(exc)) from None


def _extract(zf: zipfile.ZipFile, dest: Path, archive: Path) -> None:
    dest.mkdir()
    root = dest.resolve()
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        # Never write outside the folder, whatever names the archive holds.
        if not target.is_relative_to(root):
            raise DataError(archive, expected="member names inside the archive",
                            found=repr(info.filename))  # fmt: skip
        zf.extract(info, dest)


@contextmanager
def _install(name: str) -> Iterator[Path]:
    """A temporary folder that replaces ``cache_dir(name)`` when the block succeeds."""
    with atomic_dir(cache_dir(name)) as tmp:
        yield tmp


def _finish(name: str, tmp: Path, origin: Path, source: dict[str, Any]) -> None:
    """Check the files, then write source.json and, last, the .complete marker."""
    if not any((tmp / m).exists() for m in markers(name)):
        raise DataError(
            origin, expected=f"{' or '.join(markers(name))} in the {name} data",
            found=_listing(tmp),
        )  # fmt: skip
    source = {"name": name, **source, "created": datetime.now(UTC).isoformat(timespec="seconds")}
    write_json(tmp / SOURCE_FILE, source)
    (tmp / COMPLETE).write_text(source["created"] + "\n")


def _find_top(folder: Path, name: str) -> Path | None:
    """The folder at or below ``folder`` (two levels at most) that holds the marker file."""
    want = markers(name)
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    candidates += [q for p in candidates[1:] for q in sorted(p.iterdir()) if q.is_dir()]
    for c in candidates:
        if c.name.startswith("__MACOSX"):
            continue
        if any((c / m).is_file() for m in want):
            return c
    return None


def _listing(folder: Path, recursive: bool = False) -> str:
    if not folder.is_dir():
        return "not a folder"
    it = folder.rglob("*") if recursive else folder.iterdir()
    names = sorted(str(p.relative_to(folder)) for p in it if not p.name.startswith("."))
    if not names:
        return "nothing (empty)"
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


# --- downloads ------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _archive_ok(archive: Path, sp: DatasetSpec) -> bool:
    """A previous download that is complete and verified need not be fetched again."""
    return archive.exists() and sp.sha256 is not None and sha256_file(archive) == sp.sha256


def _download(url: str, dest: Path, timeout: float, downloader: Downloader) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        downloader(url, tmp, timeout)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def http_download(url: str, dest: Path, timeout: float) -> None:
    """Download ``url`` into ``dest`` with a progress bar (quiet when stderr is no terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    req = urllib.request.Request(url, headers={"User-Agent": "sessionrec"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        console = Console(stderr=True)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        ) as bar:
            task = bar.add_task(Path(url).name, total=int(total) if total else None)
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                bar.advance(task, len(chunk))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


# --- ml-100k from the recbole wheel ----------------------------------------------------------


def _fetch_recbole(given: Path | None, official_error: str) -> Path:
    wheel = given or download_recbole_wheel(home() / "downloads")
    source = {
        "source_used": f"PyPI wheel {RECBOLE} (official URL unreachable; ml-100k.inter/.item "
        "sha256-verified, converted)",
        "kind": "recbole-wheel",
        "package": RECBOLE,
        "wheel": str(wheel),
        "sha256": dict(RECBOLE_SHA256),
        "official_error": official_error,
    }
    try:
        with _install("ml-100k") as tmp:
            convert_recbole_ml100k(wheel, tmp)
            _finish("ml-100k", tmp, wheel, source)
    except DataError:
        if given is None:
            wheel.unlink(missing_ok=True)  # a bad download must not be reused next time
        raise
    return cache_dir("ml-100k")


def download_recbole_wheel(dest: Path) -> Path:
    """``pip download recbole==1.2.1 --no-deps`` into ``dest`` (never installed); its path."""
    dest.mkdir(parents=True, exist_ok=True)
    have = sorted(dest.glob("recbole-1.2.1-*.whl"))
    if have:
        return have[0]
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", RECBOLE, "--no-deps", "--only-binary",
               ":all:", "--disable-pip-version-check", "-q", "-d", tmp]  # fmt: skip
        log.info("running %s", " ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SessionrecError(f"could not run pip to download {RECBOLE}: {exc}") from exc
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr or proc.stdout).strip().splitlines()
            raise SessionrecError(
                f"MovieLens-100K is unreachable: GroupLens failed and `pip download {RECBOLE}` "
                f"failed ({last[-1] if last else f'exit code {proc.returncode}'})"
            )
        target = dest / wheels[0].name
        os.replace(wheels[0], target)
    return target


def convert_recbole_ml100k(
    wheel: Path, out: Path, *, expected: Mapping[str, str] = RECBOLE_SHA256
) -> None:
    """Write ``u.data`` and ``u.item`` in the official 100K layout from recbole's copy.

    ``ml-100k.inter`` holds the official ratings row for row (user, item, rating, unix time)
    under a typed header; ``ml-100k.item`` holds item id, title without the year, the year
    (the release date's day is lost) and space-separated genres.

    Args:
        wheel: the recbole wheel (a zip).
        out: the folder to write ``u.data`` and ``u.item`` into.
        expected: sha256 per member file name; a mismatch raises DataError.
    """
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(wheel, expected=f"the {RECBOLE} wheel (a zip)", found=str(exc)) from None
    members: dict[str, bytes] = {}
    with zf:
        for fname, want in expected.items():
            try:
                data = zf.read(RECBOLE_DIR + fname)
            except KeyError:
                raise DataError(wheel, expected=f"{RECBOLE_DIR}{fname} in the wheel",
                                found="no such member") from None  # fmt: skip
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DataError(wheel, expected="an intact wheel", found=str(exc)) from None
            got = hashlib.sha256(data).hexdigest()
            if got != want:
                raise DataError(wheel, column=fname, expected=f"sha256 {want}", found=got)
            members[fname] = data
    ratings = _recbole_ratings(members["ml-100k.inter"], wheel)
    ratings.write_csv(out / "u.data", separator="\t", include_header=False)
    items = _recbole_items(members["ml-100k.item"], wheel)
    (out / "u.item").write_bytes(items.encode("latin-1", errors="replace"))


def _recbole_ratings(data: bytes, wheel: Path) -> pl.DataFrame:
    raw = pl.read_csv(io.BytesIO(data), separator="\t", infer_schema_length=0, quote_char=None)
    if raw.width != 4:
        raise DataError(wheel, column="ml-100k.inter", expected="4 tab-separated columns",
                        found=f"{raw.columns}")  # fmt: skip
    raw.columns = ["user", "item", "rating", "time"]
    # Ratings and times are typed float in recbole's header but hold integers, as u.data does.
    out = raw.select(
        pl.col("user").cast(pl.Int64),
        pl.col("item").cast(pl.Int64),
        pl.col("rating").cast(pl.Float64).cast(pl.Int64),
        pl.col("time").cast(pl.Float64).cast(pl.Int64),
    )
    return out


def _recbole_items(data: bytes, wheel: Path) -> str:
    raw = pl.read_csv(io.BytesIO(data), separator="\t", infer_schema_length=0, quote_char=None)
    if raw.width != 4:
        raise DataError(wheel, column="ml-100k.item", expected="4 tab-separated columns",
                        found=f"{raw.columns}")  # fmt: skip
    lines = []
    for item, title, year, classes in raw.iter_rows():
        lines.append(_item_line(item, title or "", year or "", classes or "", wheel))
    return "".join(lines)


def _item_line(item: str, title: str, year: str, classes: str, wheel: Path) -> str:
    """One ``u.item`` line: id|title (year)|release|video release|url|19 genre flags."""
    # recbole's copy spells the one unknown movie "unkonwn" (title and year).
    title = "unknown" if title == "unkonwn" else title
    year = "" if year in ("unkonwn", "unknown") else year
    if year:
        # The official title carries the year, or a tag such as "(V)" that recbole split off.
        title = f"{title} ({year})"
    m = re.search(r"\((\d{4})\)\s*$", title) or re.search(r"\((\d{4})\)", title)
    release = m.group(1) if m else ""
    genres = classes.split()
    unknown = [g for g in genres if g not in GENRES_100K]
    if unknown:
        raise DataError(wheel, column="ml-100k.item", expected="MovieLens-100K genres",
                        found=f"{unknown[0]!r} for item {item}")  # fmt: skip
    flags = ["1" if g in genres else "0" for g in GENRES_100K]
    return "|".join([item, title, release, "", "", *flags]) + "\n"
