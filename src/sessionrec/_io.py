"""Atomic writes, the output-folder rule, and checked readers of the files a model folder holds.

A crash never leaves a half-written file or directory that looks whole, and no verb deletes
what it did not write. Every verb that writes a directory goes through ``output_dir`` (written
whole, then renamed into place) or ``claim_dir`` (written step by step, e.g. training with its
checkpoints). Both apply one rule:

- a new or empty folder is written;
- a folder sessionrec wrote (it holds the marker file ``.sessionrec.json``) is replaced only
  when asked (``overwrite=True``, ``--overwrite``), and only while it holds nothing else;
- anything else (a folder with other files, a file, a link) is refused with one line naming it
  and what is in it. A file never becomes a folder.

Temporary folders and files are hidden siblings of the output with short names (a legal long
name stays legal) that carry the writer's process id; those of a process that no longer runs
(a killed run) are removed the next time the same output is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionrec.errors import DataError, OutputError, one_line

if TYPE_CHECKING:  # both imported where used: importing this module loads neither
    import polars as pl
    import torch

#: The file that says "sessionrec wrote this folder" (and which entries it wrote).
MARKER = ".sessionrec.json"


def _prefix(target: Path, kind: str) -> str:
    """``.NAME.HASH.tmp-PID-``: short whatever the name's length, unique to the name."""
    digest = hashlib.sha1(os.fsencode(target.name)).hexdigest()[:10]
    return f".{target.name[:24]}.{digest}.{kind}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale(target: str | Path) -> list[Path]:
    """Remove the hidden temporary siblings of ``target`` left by processes that are gone."""
    target = Path(target)
    removed: list[Path] = []
    parent = target.parent
    try:
        if not parent.is_dir():
            return removed
    except OSError:
        return removed
    for kind in ("tmp", "old"):
        start = _prefix(target, kind)
        try:
            names = [n for n in os.listdir(parent) if n.startswith(start)]
        except OSError:
            return removed
        for name in names:
            pid = name[len(start) :].partition("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                path = parent / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
                removed.append(path)
    return removed


def _oserror(target: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"cannot write {target}: {reason}")


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _legacy(path: Path) -> str | None:
    """The verb of a folder sessionrec wrote before the marker existed, recognised by its
    format tags and file names; None for anything else."""
    for name, verb in (("meta.json", "prepare"), ("config.json", "train"), ("index.json", "index")):
        f = path / name
        if f.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if str(json.loads(f.read_text()).get("format", "")).startswith("sessionrec."):
                    return verb
    if (path / "checkpoint" / "progress.json").is_file():
        return "train"
    if (path / "sweep.json").is_file():
        return "sweep"
    if (path / "summary.json").is_file() and (path / "report.html").is_file():
        return "explore"
    return None


def written_by(path: str | Path) -> str | None:
    """The verb whose output ``path`` is (its marker, or an older folder's files), or None
    when sessionrec did not write it."""
    path = Path(path)
    if not path.is_dir():
        return None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads((path / MARKER).read_text()).get("verb") or "") or "?"
    return _legacy(path)


def written_by_sessionrec(path: str | Path) -> bool:
    """Whether ``path`` is a folder sessionrec wrote (its marker, or an older format tag)."""
    return written_by(path) is not None


def check_output(target: str | Path, *, overwrite: bool = False, verb: str = "") -> bool:
    """Apply the output rule to ``target`` before anything is written.

    Returns True when ``target`` is a folder to replace (empty, or sessionrec's own with
    ``overwrite``), False when nothing is there. Raises ``OutputError`` (one line, naming the
    folder and what is in it) for everything else.
    """
    target = Path(target)
    flag = f"--overwrite{f' (sessionrec {verb})' if verb else ''}"
    try:
        link, exists, is_dir = target.is_symlink(), target.exists(), target.is_dir()
    except OSError as exc:  # a name too long, a loop of links, ...
        raise _oserror(target, exc) from None
    if link:
        raise OutputError(f"{target}: expected a new or empty directory, found a symbolic link")
    if not exists:
        return False
    if not is_dir:
        raise OutputError(
            f"{target}: expected a directory (new or empty) to write into, found a file; "
            "choose another output"
        )
    try:
        names = sorted(os.listdir(target))
    except OSError as exc:
        raise _oserror(target, exc) from None
    if not names:
        return True
    owner = written_by(target)
    if owner is not None:
        if verb and owner not in (verb, "?"):
            raise OutputError(
                f"{target}: holds the output of `sessionrec {owner}`, not of `sessionrec "
                f"{verb}`; choose another output"
            )
        foreign = _foreign(target, names)
        if foreign:
            raise OutputError(
                f"{target}: holds files sessionrec did not write ({_listing(foreign)}); "
                "move them away or choose another output"
            )
        if not overwrite:
            raise OutputError(
                f"{target}: already holds sessionrec output ({_listing(names)}); "
                f"give {flag} to replace it, or choose another output"
            )
        return True
    raise OutputError(
        f"{target}: is not empty ({_listing(names)}) and was not written by sessionrec; "
        "choose a new or empty directory"
    )


def check_output_file(target: str | Path, option: str = "--json") -> None:
    """A results file may replace an earlier JSON result only: never a file of a sessionrec
    folder (meta.json of a prepared dataset, a model's config.json) nor any other file."""
    target = Path(target)
    try:
        exists, is_dir = target.exists(), target.is_dir()
    except OSError as exc:
        raise _oserror(target, exc) from None
    if is_dir:
        raise OutputError(f"cannot write {target}: expected a file name, found a directory")
    if not exists:
        return
    owner = written_by(target.parent)
    if owner is not None and target.name != MARKER:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            listed = json.loads((target.parent / MARKER).read_text()).get("files") or []
            if target.name in listed:
                raise OutputError(
                    f"{option} {target}: is part of the output of `sessionrec {owner}` in "
                    f"{target.parent}; choose another file"
                )
    try:
        ok = isinstance(json.loads(target.read_bytes()), dict)
    except (OSError, ValueError):
        ok = False
    if not ok or target.name == MARKER or (owner is not None and owner != "?" and
                                            target.name in _LEGACY_FILES):  # fmt: skip
        raise OutputError(
            f"{option} {target}: exists and is not an earlier results file; choose another file"
        )


_LEGACY_FILES = ("meta.json", "config.json", "index.json", "data_meta.json", "training.json",
                 "summary.json", "sweep.json", "run.json", "spec.json")  # fmt: skip


def _foreign(target: Path, names: list[str]) -> list[str]:
    """Entries of a marked folder that its marker does not list (and that are not sessionrec
    folders themselves, e.g. an index beside a model)."""
    try:
        listed = json.loads((target / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(listed, list):
        return []
    known = {*listed, MARKER}
    return [
        n
        for n in names
        if n not in known and not n.startswith(".") and not written_by_sessionrec(target / n)
    ]


def write_marker(folder: str | Path, verb: str, files: list[str] | None = None) -> None:
    """Mark ``folder`` as sessionrec output of ``verb`` (listing its entries when given)."""
    from sessionrec._version import __version__

    folder = Path(folder)
    record: dict[str, Any] = {"written_by": "sessionrec", "verb": verb, "version": __version__}
    if files is not None:
        record["files"] = sorted(files)
    write_json(folder / MARKER, record)


def mark_complete(folder: str | Path, verb: str) -> None:
    """Rewrite the marker listing every entry now in ``folder`` (at the end of a claimed run)."""
    folder = Path(folder)
    names = [n for n in os.listdir(folder) if n != MARKER and not n.startswith(".")]
    write_marker(folder, verb, names)


@contextlib.contextmanager
def output_dir(target: str | Path, *, overwrite: bool = False, verb: str = "") -> Iterator[Path]:
    """Yield a fresh hidden folder; on success it becomes ``target``, marked as ``verb`` output.

    ``target`` must be new, empty, or (with ``overwrite``) a folder sessionrec wrote; see the
    module docstring. On an exception nothing is left behind and ``target`` is untouched.
    """
    target = Path(target)
    check_output(target, overwrite=overwrite, verb=verb)
    with atomic_dir(target) as tmp:
        yield tmp
        names = [n for n in os.listdir(tmp) if not n.startswith(".")]
        write_marker(tmp, verb, names)
        # The check again, just before the rename: another process may have written meanwhile.
        check_output(target, overwrite=overwrite, verb=verb)


def claim_dir(target: str | Path, *, overwrite: bool = False, verb: str = "") -> Path:
    """Make ``target`` an empty folder marked as ``verb`` output, for outputs written step by
    step (training with checkpoints). Same rule as ``output_dir``; returns ``target``."""
    target = Path(target)
    replace = check_output(target, overwrite=overwrite, verb=verb)
    clean_stale(target)
    try:
        if replace and any(os.scandir(target)):
            old = Path(tempfile.mkdtemp(prefix=_prefix(target, "old") + f"{os.getpid()}-",
                                        dir=target.parent))  # fmt: skip
            os.replace(target, old / "x")
            shutil.rmtree(old, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        write_marker(target, verb)
    except OSError as exc:
        raise _oserror(target, exc) from None
    return target


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success it replaces ``target``.

    On an exception the temporary directory is removed and an existing ``target`` is untouched.
    This is the mechanism only: verbs writing user outputs go through ``output_dir``.
    """
    target = Path(target)
    clean_stale(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_prefix(target, "tmp") + f"{os.getpid()}-",
                                    dir=target.parent))  # fmt: skip
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    except OSError as exc:
        raise _oserror(target, exc) from None
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _oserror(target, exc) from exc
        raise
    try:
        old = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=_prefix(target, "old") + f"{os.getpid()}-",
                                        dir=target.parent))  # fmt: skip
            os.replace(target, old / "x")
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _oserror(target, exc) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``target``; on success it is renamed onto ``target``."""
    target = Path(target)
    try:
        is_dir = target.is_dir()
    except OSError as exc:
        raise _oserror(target, exc) from None
    if is_dir:
        raise OutputError(f"cannot write {target}: expected a file name, found a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=_prefix(target, "tmp") + f"{os.getpid()}-",
                                    dir=target.parent)  # fmt: skip
        os.close(fd)
    except OSError as exc:
        raise _oserror(target, exc) from None
    tmp = Path(name)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _oserror(target, exc) from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object from a file sessionrec wrote, or a ``DataError`` naming the file (and the
    line of a syntax error): for the config/meta files of model, data and index folders."""
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DataError(path, line=exc.lineno, expected="JSON", found=exc.msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        found = " ".join(str(exc).split())
        raise DataError(path, expected="a readable JSON file", found=found) from None
    if not isinstance(obj, dict):
        raise DataError(path, expected="a JSON object", found=type(obj).__name__)
    return obj


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def load_weights(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's arrays; a missing, truncated or foreign file is a ``DataError``."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(path, expected="the model's weights", found="no such file")
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError, ...)
        raise DataError(path, expected="a safetensors file", found=one_line(exc)) from None


def read_parquet(path: Path) -> pl.DataFrame:
    """A Parquet file; a missing or damaged one is a ``DataError`` naming it."""
    import polars as pl

    if not path.is_file():
        raise DataError(path, expected="a Parquet file", found="no such file")
    try:
        return pl.read_parquet(path, glob=False)
    except Exception as exc:  # polars' ComputeError, OSError, ...
        raise DataError(path, expected="a Parquet file", found=one_line(exc)) from None
