"""The format tags of the folders sessionrec writes (``sessionrec.model/1``, ...): a folder
written by a newer version, with a tag this version does not know, is refused in one line
naming the file, rather than read as if it were one of ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sessionrec.errors import DataError

#: the newest version of each format this version reads
KNOWN = {
    "sessionrec.model": 1,
    "sessionrec.rating-model": 1,
    "sessionrec.prepared": 1,
    "sessionrec.item-index": 1,
}


def check_format(path: Path, tag: Any, families: tuple[str, ...]) -> None:
    """Refuse ``tag`` (the ``format`` field of the JSON file ``path``) unless it is one of
    ``families`` at a version this sessionrec reads; a file without a tag (written before
    tags) is read as version 1."""
    if tag is None:
        return
    want = " or ".join(f"{f}/{KNOWN[f]}" for f in families)
    family, _, version = tag.rpartition("/") if isinstance(tag, str) else ("", "", "")
    if family not in families or not version.isdigit():
        raise DataError(path, column="format", expected=want, found=repr(tag))
    if int(version) > KNOWN[family]:
        from sessionrec._version import __version__

        raise DataError(
            path,
            column="format",
            expected=f"{want} (sessionrec {__version__} reads up to it; a newer sessionrec "
            "wrote this folder: upgrade to read it)",
            found=repr(tag),
        )
