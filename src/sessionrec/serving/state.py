"""Where live sessions are kept: SQLite (the embedded default) or Redis.

A session is the list of its latest events (item ids as text), stored under its id with:

* ``epoch``: a random token drawn when the session is created (again after it expires or is
  deleted), so that a cached streaming state of an older incarnation of the same id is never
  continued;
* ``first_seq``: the sequence number of the first kept event. Events are numbered from 0 for
  the life of an epoch; when a session passes ``max_events`` its oldest events are dropped and
  ``first_seq`` moves on, so ``first_seq + len(items)`` is the number of events ever appended.
  They are dropped a quarter of the cap at a time (``trim_to``: a session of the default cap
  of 200 goes back to 150): a served model's state is the state after exactly the kept
  events, so each trim makes the service rebuild it over them, and trimming one event at a
  time would rebuild it at every event past the cap (200 GRU steps per event).

Every append is one transaction (SQLite ``BEGIN IMMEDIATE``; a Lua script in Redis), so several
threads, workers or machines may append to the same session without losing or doubling events.
An optional ``event_id`` makes an append idempotent: a retried request whose first attempt was
recorded (e.g. the server was killed before it answered) is not applied twice.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed event survives the process
being killed (``kill -9``); only a power cut or OS crash may lose the last transactions. The
WAL is copied back into the database (a checkpoint, which waits for the disk) by ``maintain``,
which the service calls from a background thread every second, not by the request that
happens to fill the WAL: on the development machine an automatic checkpoint stalled that
request for 14–22 ms every ~300 events (BENCHMARKS.md, "Serving"). SQLite's automatic
checkpoint stays on as a backstop, at a larger WAL (``_AUTOCHECKPOINT_PAGES``).

Several worker processes contend for SQLite's one write lock. SQLite's own busy handler
sleeps 1, 2, 5, 10 ... 100 ms between tries, with the worker's event loop blocked the whole
time, while the lock is held for a fraction of a millisecond per transaction. The store
instead retries ``BEGIN IMMEDIATE`` itself after 0.05 ms doubling to 1 ms (``_retry``). At
saturation with two workers the two ways measured the same (BENCHMARKS.md, "A listening
socket per worker"); the short steps bound how long a waiting worker oversleeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sessionrec._checks import finite_number, whole_number
from sessionrec.errors import ConfigError, SessionrecError
from sessionrec.evaluation.window import trim_to

log = logging.getLogger(__name__)


class StoreError(ConfigError):
    """The session store cannot be opened (at start): names the store and what is wrong."""


class StoreUnavailable(SessionrecError):
    """The session store failed while serving: the request is answered 503, nothing of it
    is acknowledged, and the store is tried again by the next request (and by
    ``maintain``), so the service recovers by itself when the store comes back."""


@dataclass(frozen=True)
class SessionRecord:
    """A session as stored: ``items`` are its latest events, oldest first."""

    session_id: str
    epoch: str
    first_seq: int
    items: tuple[str, ...]
    created: float
    updated: float

    @property
    def total(self) -> int:
        """Events ever appended in this epoch (kept or dropped)."""
        return self.first_seq + len(self.items)


@dataclass(frozen=True)
class Append:
    """One event to append (the arguments of ``SessionStore.append``)."""

    session_id: str
    item: str
    now: float
    event_id: str | None = None
    known: SessionRecord | None = None


#: what ``append_many`` gives for each event: the session after it and whether it was
#: appended, or the error that kept it out
AppendResult = tuple[SessionRecord, bool] | Exception


class SessionStore(ABC):
    """Sessions by id, with idle expiry after ``ttl`` seconds and at most ``max_events`` kept."""

    def __init__(self, ttl: float, max_events: int) -> None:
        self.ttl = finite_number("session ttl", ttl)
        whole_number("max session events", max_events, low=1)
        self.max_events = int(max_events)
        #: the events a session keeps when an append takes it past ``max_events``
        self.trim_to = trim_to(self.max_events)

    @abstractmethod
    def append(
        self,
        session_id: str,
        item: str,
        now: float,
        *,
        event_id: str | None = None,
        known: SessionRecord | None = None,
    ) -> tuple[SessionRecord, bool]:
        """Append one event; returns the session after it and whether it was appended
        (False: ``event_id`` was already recorded). ``known`` is the caller's cached copy:
        when the store still matches it, the events need not be read back."""

    def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        """Append several events, in order, as ``append`` would one after the other; an
        event that fails gets its error and the others go on. Stores override this to pay
        one transaction (SQLite) or one round trip (Redis) for all of them."""
        out: list[AppendResult] = []
        for a in appends:
            try:
                out.append(
                    self.append(a.session_id, a.item, a.now, event_id=a.event_id, known=a.known)
                )
            except Exception as exc:
                out.append(exc)
        return out

    @abstractmethod
    def get(self, session_id: str, now: float) -> SessionRecord | None:
        """The live session, or None (unknown or expired)."""

    @abstractmethod
    def delete(self, session_id: str) -> bool:
        """Forget a session; whether it existed."""

    @abstractmethod
    def expire(self, now: float) -> int:
        """Delete the sessions idle for longer than ``ttl``; how many."""

    @abstractmethod
    def live(self, now: float) -> int:
        """Sessions active within the last ``ttl`` seconds."""

    @abstractmethod
    def describe(self) -> str:
        """Where the sessions are (for logs and /readyz)."""

    def maintain(self) -> None:  # noqa: B027  (optional hook)
        """Housekeeping the service runs off the request path, about once a second."""

    def check(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers now (``/readyz``)."""
        self.live(time.time())

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""


#: SQLite's own checkpoint when nothing called ``maintain`` (a WAL of about 40 MB; SQLite's
#: default of 1,000 pages would checkpoint inside a request every few hundred events)
_AUTOCHECKPOINT_PAGES = 10_000
T = TypeVar("T")
#: how long a transaction waits for the write lock (other workers) before it fails
_BUSY_SECONDS = 30.0


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _begin(db: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` (the write lock) on a connection without a busy timeout."""
    _retry(lambda: db.execute("BEGIN IMMEDIATE"))


def _retry(fn: Callable[[], T], wait: float = _BUSY_SECONDS) -> T:
    """``fn()``, tried again after short sleeps (0.05 ms doubling to 1 ms) while SQLite
    answers busy (another connection holds a lock it needs), for at most ``wait`` s."""
    pause, deadline = 0.00005, None
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + wait
            elif now > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.001)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated);
CREATE TABLE IF NOT EXISTS events (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item TEXT NOT NULL,
    event_id TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (session, event_id)
    WHERE event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS event_ids (
    session TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (session, event_id)
) WITHOUT ROWID;
"""


class SQLiteStore(SessionStore):
    """Sessions in one SQLite file (WAL), shared safely by the workers of one machine.

    The file is checked when the store opens (``PRAGMA quick_check``, and a write), so that
    a file that is not a database, a damaged one, a folder or a read-only file stops the
    service at start with one line (``StoreError``). While serving, a failure of SQLite (a
    disk that fills, a file made read-only or damaged) is the request's ``StoreUnavailable``
    (503) and the connection is opened again by the next request. After each use the path
    is checked to still be the file that was opened: a database deleted or replaced under
    the service would otherwise take the events into an unlinked file (acknowledged, then
    lost); instead the request that finds it is answered 503 (its event is not
    acknowledged, a retry stores it) and the path is opened again.
    """

    def __init__(self, path: str | Path, ttl: float, max_events: int) -> None:
        super().__init__(ttl, max_events)
        self.path = Path(path)
        # One connection behind a lock: SQLite serialises writers anyway, and the service
        # runs requests on one event loop per worker. No busy timeout: writes wait in
        # ``_begin``; reads (WAL) do not wait for writers, and the one place they may be
        # busy (set-up, while another process creates the file) waits below.
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._ident: tuple[int, int] | None = None
        self._down: str | None = None  # why the store failed last (logged once per outage)
        # the checkpoints' own connection, so that a checkpoint waiting for the disk never
        # holds the requests' lock (WAL lets writers go on while it runs)
        self._ckpt: sqlite3.Connection | None = None
        self._ckpt_ident: tuple[int, int] | None = None
        self._ckpt_lock = threading.Lock()
        try:
            self._open(verify=True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"session store {self.describe()}: {_reason(exc)}") from None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"  # an absolute path gives sqlite:////...

    def _open(self, verify: bool) -> None:
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            db.executescript(_SCHEMA)
            if verify:
                found = [str(r[0]) for r in db.execute("PRAGMA quick_check(4)").fetchall()]
                if found != ["ok"]:
                    lines = [x for f in found for x in f.splitlines()]
                    said = [x for x in lines if not x.startswith("***")][:2]
                    raise sqlite3.DatabaseError(f"damaged: {'; '.join(said)[:200]}")
            # event ids of stores written before ``event_ids`` existed; also a write, so a
            # read-only file is found here and not at the first event
            db.execute(
                "INSERT OR IGNORE INTO event_ids (session, event_id) "
                "SELECT session, event_id FROM events WHERE event_id IS NOT NULL"
            )
            db.execute("PRAGMA busy_timeout=0")
            st = os.stat(self.path)
        except BaseException:
            db.close()
            raise
        self._db, self._ident = db, (st.st_dev, st.st_ino)

    def _drop(self) -> None:
        """Close the connections; the next use opens the path again. The checkpoints' one
        too: the last connection to close checkpoints the WAL into the file it was opened
        on and removes the WAL, so that a file put in its place never meets it."""
        db, self._db = self._db, None
        with self._ckpt_lock:
            for conn in (db, self._ckpt):
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
            self._ckpt = None

    def _set_aside(self) -> None:
        """Move the WAL of a file that was deleted or replaced out of the new file's way.

        SQLite does not checkpoint into a file that has moved, so the old file's WAL stays
        beside the path, and a connection opened on the file now there would read the old
        file's pages from it. It is renamed (kept, never deleted: it holds the old file's
        last events), and the shared-memory index, which only caches the WAL, is removed."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        with contextlib.suppress(OSError):
            if wal.exists():
                aside = wal.with_name(f"{wal.name}.orphaned-{stamp}")
                wal.rename(aside)
                log.error("kept the WAL of the %s that was there as %s", self.path, aside)
            shm.unlink(missing_ok=True)

    def _unavailable(self, why: str) -> StoreUnavailable:
        if self._down != why:
            log.error("session store %s unavailable: %s", self.describe(), why)
        self._down = why
        return StoreUnavailable(f"session store unavailable: {why}")

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock (opened again after a failure). Any SQLite error
        inside becomes ``StoreUnavailable``; after the work, the path must still be the
        file that was opened (else what was written went to a deleted file)."""
        with self._lock:
            if self._db is None:
                try:
                    self._open(verify=False)
                except (sqlite3.Error, OSError) as exc:
                    raise self._unavailable(_reason(exc)) from None
            assert self._db is not None
            try:
                yield self._db
            except sqlite3.Error as exc:
                self._drop()
                raise self._unavailable(_reason(exc)) from None
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._ident
            except OSError:
                same = False
            if not same:
                self._drop()
                self._set_aside()
                raise self._unavailable(
                    "the database file was deleted or replaced while serving (opened again "
                    "at the next request)"
                )
            if self._down is not None:
                log.warning("session store %s answers again", self.describe())
                self._down = None

    def _head(self, session_id: str) -> tuple[str, int, int, float, float] | None:
        assert self._db is not None
        row = self._db.execute(
            "SELECT epoch, first_seq, next_seq, created, updated FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        return None if row is None else (row[0], int(row[1]), int(row[2]), row[3], row[4])

    def _items(self, session_id: str) -> tuple[str, ...]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT item FROM events WHERE session = ? ORDER BY seq", (session_id,)
        ).fetchall()
        return tuple(r[0] for r in rows)

    def append(
        self,
        session_id: str,
        item: str,
        now: float,
        *,
        event_id: str | None = None,
        known: SessionRecord | None = None,
    ) -> tuple[SessionRecord, bool]:
        with self._conn() as db:
            _begin(db)
            try:
                out = self._append(session_id, item, now, event_id, known)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        return out

    def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        """All the events in one transaction. When any of them fails the transaction is
        rolled back (nothing of it is kept) and each event is appended in its own, so that
        the failure stays with its event. A store that is down fails them all."""
        if len(appends) < 2:
            return super().append_many(appends)
        try:
            with self._conn() as db:
                _begin(db)
                try:
                    out: list[AppendResult] = [
                        self._append(a.session_id, a.item, a.now, a.event_id, a.known)
                        for a in appends
                    ]
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
            return out
        except StoreUnavailable as exc:
            return [exc] * len(appends)
        except Exception:
            return super().append_many(appends)

    def _append(
        self,
        sid: str,
        item: str,
        now: float,
        event_id: str | None,
        known: SessionRecord | None,
    ) -> tuple[SessionRecord, bool]:
        db = self._db
        assert db is not None
        head = self._head(sid)
        if head is not None and head[4] + self.ttl < now:  # expired: a new session
            _forget(db, sid)
            head = None
        if head is None:
            epoch, first, nxt, created = secrets.token_hex(8), 0, 0, now
            db.execute("DELETE FROM event_ids WHERE session = ?", (sid,))  # none should be left
            db.execute(
                "INSERT INTO sessions (id, epoch, first_seq, next_seq, created, updated) "
                "VALUES (?, ?, 0, 0, ?, ?)",
                (sid, epoch, now, now),
            )
            items: tuple[str, ...] = ()
        else:
            epoch, first, nxt, created, _ = head
            fresh = (
                known is not None
                and known.epoch == epoch
                and known.first_seq == first
                and known.total == nxt
            )
            items = known.items if fresh and known is not None else self._items(sid)
        if event_id is not None:
            # ids live apart from the events, so that one stays recorded after the cap has
            # trimmed its event away (a retry is then still not applied twice)
            added = db.execute(
                "INSERT OR IGNORE INTO event_ids (session, event_id) VALUES (?, ?)",
                (sid, event_id),
            ).rowcount
            if added == 0:
                db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, sid))
                return SessionRecord(sid, epoch, first, items, created, now), False
        db.execute(
            "INSERT INTO events (session, seq, item, event_id, at) VALUES (?, ?, ?, ?, ?)",
            (sid, nxt, item, event_id, now),
        )
        nxt += 1
        items = (*items, item)
        if len(items) > self.max_events:
            drop = len(items) - self.trim_to
            first += drop
            items = items[drop:]
            db.execute("DELETE FROM events WHERE session = ? AND seq < ?", (sid, first))
        db.execute(
            "UPDATE sessions SET first_seq = ?, next_seq = ?, updated = ? WHERE id = ?",
            (first, nxt, now, sid),
        )
        return SessionRecord(sid, epoch, first, items, created, now), True

    def get(self, session_id: str, now: float) -> SessionRecord | None:
        def read() -> tuple[tuple[str, int, int, float, float] | None, tuple[str, ...]]:
            assert self._db is not None
            db = self._db
            db.execute("BEGIN")
            try:
                head = self._head(session_id)
                if head is None or head[4] + self.ttl < now:
                    return None, ()
                return head, self._items(session_id)
            finally:
                db.execute("COMMIT")

        with self._conn():
            head, items = _retry(read)
        if head is None:
            return None
        epoch, first, _, created, updated = head
        return SessionRecord(session_id, epoch, first, items, created, updated)

    def delete(self, session_id: str) -> bool:
        with self._conn() as db:
            _begin(db)
            try:
                n = _forget(db, session_id)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        return n > 0

    def expire(self, now: float) -> int:
        cutoff = now - self.ttl
        with self._conn() as db:
            _begin(db)
            try:
                old = "(SELECT id FROM sessions WHERE updated < ?)"
                db.execute(f"DELETE FROM events WHERE session IN {old}", (cutoff,))
                db.execute(f"DELETE FROM event_ids WHERE session IN {old}", (cutoff,))
                n = db.execute("DELETE FROM sessions WHERE updated < ?", (cutoff,)).rowcount
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        return int(n)

    def live(self, now: float) -> int:
        with self._conn() as db:
            row = _retry(
                lambda: db.execute(
                    "SELECT COUNT(*) FROM sessions WHERE updated >= ?", (now - self.ttl,)
                ).fetchone()
            )
        return int(row[0])

    def maintain(self) -> None:
        """Checkpoint the WAL (PASSIVE: copies what no reader still needs, never waits for
        readers or writers); before that, open the store again if it failed, or find a
        file deleted or replaced while no request came."""
        with self._conn():
            ident = self._ident
        with self._ckpt_lock:
            try:
                if self._ckpt is not None and self._ckpt_ident != ident:
                    self._ckpt.close()
                    self._ckpt = None
                if self._ckpt is None:
                    self._ckpt = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False, timeout=30.0
                    )
                    self._ckpt_ident = ident
                self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                if self._ckpt is not None:
                    self._ckpt.close()
                self._ckpt = None
                raise StoreUnavailable(f"session store checkpoint failed: {_reason(exc)}") from None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _forget(db: sqlite3.Connection, session_id: str) -> int:
    """Delete a session, its events and its event ids; 1 when it existed."""
    db.execute("DELETE FROM events WHERE session = ?", (session_id,))
    db.execute("DELETE FROM event_ids WHERE session = ?", (session_id,))
    return int(db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount)


def _rollback(db: sqlite3.Connection) -> None:
    """ROLLBACK, when a transaction is open (a failed COMMIT may have ended it)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _reason(exc: BaseException) -> str:
    """What is wrong with a store, in words, from the error that showed it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = text.lower()
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a database file"
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return f"its folder cannot be made: a file stands in the way ({text})"
    if isinstance(exc, PermissionError):
        return f"permission denied ({text})"
    if "file is not a database" in low:
        return "not an SQLite database (file is not a database)"
    if "malformed" in low or "damaged" in low or "corrupt" in low:
        return f"a damaged database ({text})"
    if "readonly" in low or "read-only" in low:
        return f"read-only ({text})"
    if "unable to open" in low:
        return f"cannot be opened: a missing or read-only folder? ({text})"
    if "disk" in low and "full" in low:
        return f"the disk is full ({text})"
    return f"{type(exc).__name__}: {text}"


class MemoryStore(SessionStore):
    """Sessions in this process only (``--state memory``): lost on restart; for tests and
    benchmarks that measure the model without the store."""

    def __init__(self, ttl: float, max_events: int) -> None:
        super().__init__(ttl, max_events)
        self._s: dict[str, tuple[SessionRecord, set[str]]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "memory"

    def append(
        self,
        session_id: str,
        item: str,
        now: float,
        *,
        event_id: str | None = None,
        known: SessionRecord | None = None,
    ) -> tuple[SessionRecord, bool]:
        with self._lock:
            cur = self._s.get(session_id)
            if cur is None or cur[0].updated + self.ttl < now:
                cur = (SessionRecord(session_id, secrets.token_hex(8), 0, (), now, now), set())
            rec, ids = cur
            if event_id is not None and event_id in ids:
                rec = SessionRecord(
                    session_id, rec.epoch, rec.first_seq, rec.items, rec.created, now
                )
                self._s[session_id] = (rec, ids)
                return rec, False
            items = (*rec.items, item)
            first = rec.first_seq
            if len(items) > self.max_events:
                first += len(items) - self.trim_to
                items = items[-self.trim_to :]
            if event_id is not None:
                ids.add(event_id)
            rec = SessionRecord(session_id, rec.epoch, first, items, rec.created, now)
            self._s[session_id] = (rec, ids)
            return rec, True

    def get(self, session_id: str, now: float) -> SessionRecord | None:
        with self._lock:
            cur = self._s.get(session_id)
        if cur is None or cur[0].updated + self.ttl < now:
            return None
        return cur[0]

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._s.pop(session_id, None) is not None

    def expire(self, now: float) -> int:
        with self._lock:
            old = [k for k, (r, _) in self._s.items() if r.updated + self.ttl < now]
            for k in old:
                del self._s[k]
        return len(old)

    def live(self, now: float) -> int:
        with self._lock:
            return sum(1 for r, _ in self._s.values() if r.updated + self.ttl >= now)


# KEYS: meta hash, events list, event-id set, live zset. ARGV: item, event_id ('' = none),
# now, ttl seconds, max events, new epoch, session id, the caller's copy (epoch, first, total),
# the events kept when past max events.
_REDIS_APPEND = """
local meta, ev, ids, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local item, eid, now, ttl, maxn = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl_ms = math.ceil(ttl * 1000)
local applied = 1
if redis.call('EXISTS', meta) == 0 then
  redis.call('DEL', ev, ids)
  redis.call('HSET', meta, 'epoch', ARGV[6], 'first', 0, 'created', ARGV[3])
end
local first0 = tonumber(redis.call('HGET', meta, 'first'))
local before = first0 + redis.call('LLEN', ev)
if eid ~= '' and redis.call('SADD', ids, eid) == 0 then
  applied = 0
else
  local n = redis.call('RPUSH', ev, item)
  if n > maxn then
    local keep = tonumber(ARGV[11])
    redis.call('LTRIM', ev, n - keep, -1)
    redis.call('HINCRBY', meta, 'first', n - keep)
  end
end
redis.call('HSET', meta, 'updated', ARGV[3])
redis.call('PEXPIRE', meta, ttl_ms)
redis.call('PEXPIRE', ev, ttl_ms)
if redis.call('EXISTS', ids) == 1 then redis.call('PEXPIRE', ids, ttl_ms) end
redis.call('ZADD', live, now, ARGV[7])
local m = redis.call('HMGET', meta, 'epoch', 'first', 'created')
if applied == 1 and m[1] == ARGV[8] and first0 == tonumber(ARGV[9])
    and before == tonumber(ARGV[10]) then
  return {applied, m[1], m[2], m[3]}  -- the caller holds the rest: no list sent back
end
return {applied, m[1], m[2], m[3], redis.call('LRANGE', ev, 0, -1)}
"""


class RedisStore(SessionStore):
    """Sessions in Redis (``--state redis://HOST:PORT/DB``): shared by every process and
    machine that points at the same server; Redis expires idle sessions by itself."""

    def __init__(self, url: str, ttl: float, max_events: int, prefix: str = "sessionrec:") -> None:
        super().__init__(ttl, max_events)
        try:
            import redis
        except ImportError:
            raise ConfigError(
                '--state redis:// needs the redis client: pip install -e ".[redis]"'
            ) from None
        self.url = url
        self.prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._down: str | None = None
        try:
            # bounded waits (the URL's own options win): a server that stops answering is
            # a 503 after seconds, not a request that hangs
            self._r: Any = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=5.0, socket_connect_timeout=3.0
            )
            self._append = self._r.register_script(_REDIS_APPEND)
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"session store {self.describe()}: not a usable redis:// URL ({exc})"
            ) from None
        try:
            self._r.ping()
        except self._errors as exc:
            self._r.close()
            raise StoreError(
                f"session store {self.describe()}: cannot reach Redis "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None

    def describe(self) -> str:
        return _without_password(self.url)

    def ping(self) -> bool:
        with self._calls():
            return bool(self._r.ping())

    def check(self) -> None:
        self.ping()

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        """Redis's errors (connection lost, timeouts, a server refusing writes) as
        ``StoreUnavailable``; redis-py connects again by itself at the next call."""
        try:
            yield
        except self._errors as exc:
            raise self._unavailable(exc) from None
        if self._down is not None:
            log.warning("session store %s answers again", self.describe())
            self._down = None

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if self._down != why:
            log.error("session store %s unavailable: %s", self.describe(), why)
        self._down = why
        return StoreUnavailable(f"session store unavailable: {why}")

    def _keys(self, sid: str) -> list[str]:
        p = f"{self.prefix}s:{sid}"
        return [f"{p}:m", f"{p}:e", f"{p}:i", f"{self.prefix}live"]

    def append(
        self,
        session_id: str,
        item: str,
        now: float,
        *,
        event_id: str | None = None,
        known: SessionRecord | None = None,
    ) -> tuple[SessionRecord, bool]:
        a = Append(session_id, item, now, event_id, known)
        with self._calls():
            res = self._append(keys=self._keys(session_id), args=self._args(a))
        return self._record(a, res)

    def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        """The events' scripts in one pipeline: one round trip. Redis runs them one after
        the other, each atomic. An error that loses the connection is every event's (some
        may have been applied, as with a single append whose answer is lost: a client
        retries with its ``event_id``)."""
        if len(appends) < 2:
            return super().append_many(appends)
        try:
            with self._calls():
                pipe = self._r.pipeline(transaction=False)
                for a in appends:
                    self._append(keys=self._keys(a.session_id), args=self._args(a), client=pipe)
                results = pipe.execute(raise_on_error=False)
        except StoreUnavailable as exc:
            return [exc] * len(appends)
        out: list[AppendResult] = []
        for a, res in zip(appends, results, strict=True):
            if isinstance(res, self._errors):
                out.append(self._unavailable(res))
            elif isinstance(res, Exception):
                out.append(res)
            else:
                out.append(self._record(a, res))
        return out

    def _args(self, a: Append) -> list[Any]:
        known = a.known
        return [
            a.item,
            a.event_id or "",
            repr(a.now),
            repr(self.ttl),
            self.max_events,
            secrets.token_hex(8),
            a.session_id,
            known.epoch if known is not None else "",
            known.first_seq if known is not None else -1,
            known.total if known is not None else -1,
            self.trim_to,
        ]

    @staticmethod
    def _record(a: Append, res: list[Any]) -> tuple[SessionRecord, bool]:
        known = a.known
        if len(res) == 4:  # ``known`` was the stored session: only the new event is added
            assert known is not None
            applied, epoch, first = res[0], res[1], int(res[2])
            kept = known.total + 1 - first
            items = (*known.items, a.item)[-kept:]
        else:  # the events as stored (sent back only when the caller's copy is stale)
            applied, epoch, first, items = res[0], res[1], int(res[2]), tuple(res[4])
        rec = SessionRecord(a.session_id, epoch, first, items, float(res[3]), float(a.now))
        return rec, bool(applied)

    def get(self, session_id: str, now: float) -> SessionRecord | None:
        meta, ev, _, _ = self._keys(session_id)
        with self._calls():
            pipe = self._r.pipeline(transaction=True)
            pipe.hgetall(meta)
            pipe.lrange(ev, 0, -1)
            m, items = pipe.execute()
        if not m or "epoch" not in m:
            return None
        return SessionRecord(
            session_id,
            m["epoch"],
            int(m["first"]),
            tuple(items),
            float(m["created"]),
            float(m.get("updated", m["created"])),
        )

    def delete(self, session_id: str) -> bool:
        meta, ev, ids, live = self._keys(session_id)
        with self._calls():
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(meta, ev, ids)
            pipe.zrem(live, session_id)
            n, _ = pipe.execute()
        return bool(n)

    def expire(self, now: float) -> int:
        # Redis drops the session keys itself; this trims the index of live sessions.
        with self._calls():
            return int(self._r.zremrangebyscore(f"{self.prefix}live", "-inf", now - self.ttl))

    def live(self, now: float) -> int:
        with self._calls():
            return int(self._r.zcount(f"{self.prefix}live", now - self.ttl, "+inf"))

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._r.close()


def _without_password(url: str) -> str:
    """A store URL as logs and errors may show it: ``redis://user:***@host``."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "redis://(a malformed URL)"


def open_store(url: str, ttl: float, max_events: int) -> SessionStore:
    """``sqlite:///PATH`` or a plain path, ``redis://HOST:PORT/DB``, or ``memory``."""
    if url == "memory":
        return MemoryStore(ttl, max_events)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, ttl, max_events)
    if url.startswith("sqlite:///"):  # as SQLAlchemy: sqlite:///rel.db, sqlite:////abs.db
        url = url[len("sqlite:///") :]
    if "://" in url:
        raise ConfigError(
            f"--state {url!r}: expected sqlite:///PATH, a file path, redis://HOST:PORT/DB or memory"
        )
    return SQLiteStore(url, ttl, max_events)
