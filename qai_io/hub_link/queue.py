"""The hub link's on-disk message queue: SQLite in WAL mode, bounded, by priority. No rclpy import.

Every outgoing message (telemetry, command replies, drop reports) is written here before it is published
and taken out of the queue only when the broker acknowledged it (QoS 1) or it was written to the socket
(QoS 0). So what the queue accepted survives a broker outage, a restart of the node and a SIGKILL (WAL with
synchronous=NORMAL: a committed transaction survives the process; `synchronous="full"` also survives
power loss, at an fsync per commit).

An acknowledged message is not deleted at once: it stays `history_window` seconds as history (at most
`history_max_bytes` of payloads, the oldest going first), so that a message the broker acknowledged and then
lost (a broker killed before it delivered or saved it) can be sent again when the hub asks for it
(`resend`); past that window the request is answered with a drop report. History does not count against the
queue's own bound and is never sent unless asked for.

Rows carry their stream, that stream's sequence number, a priority (higher is more important), the MQTT
QoS and an expiry time. At the bound (messages or bytes) the lowest-priority, oldest rows are evicted
first; expired rows are removed; both come back to the caller as (stream, seq) lists so they can be
reported. Rows of protected streams (the drop reports themselves) are never evicted nor expired, and do
not count against the bound (there are few: reports are merged until sent). Rows
the caller has in flight are never evicted or expired (their acknowledgement may still come). Row ids
only grow (AUTOINCREMENT), so a reader's "taken up to id N" cursor stays valid.

One thread uses a DiskQueue at a time (the link's thread). WAL checkpoints (copying the log into the
database, with an fsync) run in a thread of their own on a second connection, so no commit waits for one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Sequence

SCHEMA_VERSION = 2
WAL_RESTART_BYTES = 16 << 20  # the WAL is made to start over past this size, and truncated back to it
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


@dataclass(frozen=True)
class Item:
    """A message to queue."""

    stream: str
    seq: int
    priority: int
    qos: int
    expires: float  # seconds since the epoch
    topic: str
    payload: bytes


@dataclass(frozen=True)
class Row:
    """A queued message, as taken for publishing."""

    id: int
    stream: str
    seq: int
    qos: int
    topic: str
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload)


class DiskQueue:
    def __init__(self, path: str | Path, max_messages: int, max_bytes: int, synchronous: str = "normal",
                 protected_streams: Collection[str] = (), history_window: float = 0.0,
                 history_max_bytes: int = 64 << 20, clock=time.time):
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous: expected one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}")
        self.path = Path(path).expanduser()
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.protected = tuple(protected_streams)
        self.history_window = history_window  # s an acknowledged message is kept for a resend; 0: deleted at once
        self.history_max_bytes = history_max_bytes
        self._wall = clock
        self.recovered_from = ""  # set when a damaged file was moved aside at open
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(synchronous)
        except sqlite3.DatabaseError as error:
            # A damaged queue must not keep the link down: keep the file for inspection, start afresh.
            aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
            self.recovered_from = f"{error}; moved aside to {aside}"
            self._db = self._open(synchronous)
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        self._checkpoints_stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="hub-queue-checkpoint",
                                              daemon=True)
        self._checkpointer.start()
        self.depth, self.bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages WHERE acked IS NULL").fetchone()
        self.history_depth, self.history_bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages WHERE acked IS NOT NULL").fetchone()
        # Protected rows (drop reports) are not held against the bound: evicting data to make room for the
        # report of an eviction would never end.
        marks = ",".join("?" * len(self.protected))
        self._protected_depth, self._protected_bytes = self._db.execute(
            f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages WHERE acked IS NULL "
            f"AND stream IN ({marks})",
            self.protected).fetchone() if self.protected else (0, 0)

    def _open(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[synchronous]}")
            db.execute(f"PRAGMA journal_size_limit={WAL_RESTART_BYTES}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            version = None
            if db.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone():
                version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is not None and version[0] == "1":  # before the history: add its column in place
                db.execute("ALTER TABLE messages ADD COLUMN acked REAL")
                db.execute("DROP INDEX IF EXISTS messages_by_priority")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
                version = (str(SCHEMA_VERSION),)
            db.executescript("""
                CREATE TABLE IF NOT EXISTS messages (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, seq INTEGER NOT NULL,
                    priority INTEGER NOT NULL, qos INTEGER NOT NULL, expires REAL NOT NULL,
                    topic TEXT NOT NULL, payload BLOB NOT NULL, acked REAL);
                CREATE INDEX IF NOT EXISTS messages_by_priority ON messages(priority, id) WHERE acked IS NULL;
                CREATE INDEX IF NOT EXISTS history_by_stream ON messages(stream, seq) WHERE acked IS NOT NULL;
                CREATE INDEX IF NOT EXISTS history_by_age ON messages(acked) WHERE acked IS NOT NULL;
                CREATE TABLE IF NOT EXISTS streams (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """)
            if version is None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif version[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version[0]}, expected {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    # -- Reading ---------------------------------------------------------------------------------

    def last_seqs(self) -> dict[str, int]:
        """Return the last sequence number committed per stream (streams continue from it after a restart)."""
        return dict(self._db.execute("SELECT name, last_seq FROM streams"))

    def max_id(self) -> int:
        return self._db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]

    def priorities(self) -> list[int]:
        """Return the priorities present in the queue (not the history), highest first."""
        return [p for (p,) in self._db.execute(
            "SELECT DISTINCT priority FROM messages WHERE acked IS NULL ORDER BY priority DESC")]

    def take_newer(self, after_id: int, limit: int) -> list[Row]:
        """Up to `limit` queued rows with id > after_id, oldest first (live data)."""
        return [Row(*r) for r in self._db.execute(
            "SELECT id, stream, seq, qos, topic, payload FROM messages WHERE id > ? AND acked IS NULL "
            "ORDER BY id LIMIT ?", (after_id, limit))]

    def take_backlog(self, priority: int, after_id: int, up_to_id: int, limit: int) -> list[Row]:
        """Up to `limit` queued rows of one priority with after_id < id <= up_to_id, oldest first."""
        return [Row(*r) for r in self._db.execute(
            "SELECT id, stream, seq, qos, topic, payload FROM messages "
            "WHERE priority = ? AND id > ? AND id <= ? AND acked IS NULL ORDER BY id LIMIT ?",
            (priority, after_id, up_to_id, limit))]

    def all_rows(self) -> list[Row]:
        """Every queued row (tests and tools)."""
        return self.take_newer(0, max(self.depth, 1))

    # -- Writing: one transaction per call ----------------------------------------------------

    def commit(self, items: Sequence[Item] = (), acked: Iterable[Row] = (),
               busy: Collection[int] = ()) -> list[tuple[str, int]]:
        """Insert `items`, delete `acked`, then evict down to the bound; return the evicted (stream, seq).

        Rows whose id is in `busy` (in flight) are not evicted.
        """
        acked = list(acked)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if acked:
                if self.history_window > 0:
                    now = self._wall()
                    self._db.executemany("UPDATE messages SET acked = ? WHERE id BETWEEN ? AND ?",
                                         [(now, low, high) for low, high in _id_ranges(acked)])
                    self.history_depth += len(acked)
                    self.history_bytes += sum(row.size for row in acked)
                else:
                    self._db.executemany("DELETE FROM messages WHERE id BETWEEN ? AND ?", _id_ranges(acked))
                self.depth -= len(acked)
                self.bytes -= sum(row.size for row in acked)
                protected = [row for row in acked if row.stream in self.protected]
                self._protected_depth -= len(protected)
                self._protected_bytes -= sum(row.size for row in protected)
            if items:
                self._db.executemany(
                    "INSERT INTO messages (stream, seq, priority, qos, expires, topic, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(i.stream, i.seq, i.priority, i.qos, i.expires, i.topic, i.payload) for i in items])
                last: dict[str, int] = {}
                for item in items:
                    last[item.stream] = max(item.seq, last.get(item.stream, 0))
                self._db.executemany(
                    "INSERT INTO streams (name, last_seq) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
                    list(last.items()))
                self.depth += len(items)
                self.bytes += sum(len(i.payload) for i in items)
                protected = [i for i in items if i.stream in self.protected]
                self._protected_depth += len(protected)
                self._protected_bytes += sum(len(i.payload) for i in protected)
            over = (self.depth - self._protected_depth > self.max_messages
                    or self.bytes - self._protected_bytes > self.max_bytes)
            evicted = self._evict(busy) if over else []
        return evicted

    def _evict(self, busy: Collection[int]) -> list[tuple[str, int]]:
        over_count = self.depth - self._protected_depth - self.max_messages
        over_bytes = self.bytes - self._protected_bytes - self.max_bytes
        marks = ",".join("?" * len(self.protected))
        protected = f"WHERE stream NOT IN ({marks}) " if self.protected else ""
        victims, freed = [], 0
        cursor = self._db.execute(
            f"SELECT id, stream, seq, length(payload) FROM messages {protected}{'AND' if protected else 'WHERE'} "
            "acked IS NULL ORDER BY priority, id", tuple(self.protected))
        for row_id, stream, seq, size in cursor:
            if len(victims) >= over_count and freed >= over_bytes:
                break
            if row_id in busy:
                continue
            victims.append((row_id, stream, seq))
            freed += size
        cursor.close()
        self._db.executemany("DELETE FROM messages WHERE id = ?", [(v[0],) for v in victims])
        self.depth -= len(victims)
        self.bytes -= freed
        return [(stream, seq) for _, stream, seq in victims]

    def insert(self, item: Item) -> int:
        """Insert one row of a protected stream (never evicted) and return its id."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row_id = self._db.execute(
                "INSERT INTO messages (stream, seq, priority, qos, expires, topic, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (item.stream, item.seq, item.priority, item.qos, item.expires, item.topic, item.payload)).lastrowid
            self._db.execute("INSERT INTO streams (name, last_seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                             "last_seq = max(last_seq, excluded.last_seq)", (item.stream, item.seq))
        self.depth += 1
        self.bytes += len(item.payload)
        if item.stream in self.protected:
            self._protected_depth += 1
            self._protected_bytes += len(item.payload)
        return row_id

    def expire(self, now: float, busy: Collection[int] = ()) -> list[tuple[str, int]]:
        """Remove queued rows whose expiry passed (except busy and protected ones); return their (stream, seq).

        Also prune the history past its window and its bound (that is no drop: it was delivered).
        """
        self._prune_history(now)
        expired = [(i, s, q, n) for i, s, q, n in self._db.execute(
            "SELECT id, stream, seq, length(payload) FROM messages WHERE expires < ? AND acked IS NULL", (now,))
            if i not in busy and s not in self.protected]
        if expired:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM messages WHERE id = ?", [(e[0],) for e in expired])
            self.depth -= len(expired)
            self.bytes -= sum(e[3] for e in expired)
        return [(stream, seq) for _, stream, seq, _ in expired]

    def _prune_history(self, now: float) -> None:
        if not self.history_depth:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages "
                                    "WHERE acked IS NOT NULL AND acked < ?", (now - self.history_window,)).fetchone()
            self._db.execute("DELETE FROM messages WHERE acked IS NOT NULL AND acked < ?", (now - self.history_window,))
            self.history_depth -= gone[0]
            self.history_bytes -= gone[1]
            if self.history_bytes > self.history_max_bytes:
                victims, freed = [], 0
                for row_id, size in self._db.execute("SELECT id, length(payload) FROM messages WHERE acked IS NOT NULL "
                                                     "ORDER BY acked, id"):
                    if self.history_bytes - freed <= self.history_max_bytes:
                        break
                    victims.append((row_id,))
                    freed += size
                self._db.executemany("DELETE FROM messages WHERE id = ?", victims)
                self.history_depth -= len(victims)
                self.history_bytes -= freed

    def resend(self, stream: str, ranges: Iterable[Sequence[int]], expires: float) -> tuple[int, list[list[int]]]:
        """Put the history rows of `stream` with a seq in `ranges` back in the queue, to be sent again.

        Return how many were queued again, and the ranges of those not in the history nor in the queue (no
        longer kept: the caller reports them dropped). Rows still queued are left as they are.
        """
        requeued, missing = 0, []
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for low, high in ranges:
                found = self._db.execute(
                    "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages WHERE stream = ? AND seq "
                    "BETWEEN ? AND ? AND acked IS NOT NULL", (stream, low, high)).fetchone()
                self._db.execute("UPDATE messages SET acked = NULL, expires = max(expires, ?) WHERE stream = ? AND "
                                 "seq BETWEEN ? AND ? AND acked IS NOT NULL", (expires, stream, low, high))
                requeued += found[0]
                self.history_depth -= found[0]
                self.history_bytes -= found[1]
                self.depth += found[0]
                self.bytes += found[1]
                if stream in self.protected:
                    self._protected_depth += found[0]
                    self._protected_bytes += found[1]
                kept = sorted(seq for (seq,) in self._db.execute(
                    "SELECT seq FROM messages WHERE stream = ? AND seq BETWEEN ? AND ?", (stream, low, high)))
                missing += _gaps(kept, low, high)
        return requeued, missing

    def update_payload(self, row_id: int, payload: bytes) -> bool:
        """Replace a queued row's payload (a drop report not yet sent grows); False when the row is gone."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self._db.execute("SELECT length(payload) FROM messages WHERE id = ?", (row_id,)).fetchone()
            if old is None:
                return False
            stream = self._db.execute("SELECT stream FROM messages WHERE id = ?", (row_id,)).fetchone()[0]
            self._db.execute("UPDATE messages SET payload = ? WHERE id = ?", (payload, row_id))
        self.bytes += len(payload) - old[0]
        if stream in self.protected:
            self._protected_bytes += len(payload) - old[0]
        return True

    def _checkpoint_loop(self, period: float = 0.5) -> None:
        """Backfill the WAL into the database now and then, beside the writer (PASSIVE: no one waits).

        Under constant writing a passive checkpoint never catches the end of the log, which then only grows:
        past WAL_RESTART_BYTES a RESTART checkpoint (writers wait the few frames left) lets the log start over.
        """
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            page = db.execute("PRAGMA page_size").fetchone()[0]
            while not self._checkpoints_stop.wait(period):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames * page > WAL_RESTART_BYTES:
                        db.execute("PRAGMA wal_checkpoint(RESTART)")
                except sqlite3.Error:
                    pass  # busy or closing: the next round does it
        finally:
            db.close()

    def file_bytes(self) -> int:
        """Bytes on disk: the database, its WAL and shared-memory index."""
        return sum(Path(f"{self.path}{s}").stat().st_size for s in ("", "-wal", "-shm")
                   if Path(f"{self.path}{s}").exists())

    def close(self) -> None:
        self._checkpoints_stop.set()
        self._checkpointer.join(5.0)
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()


def _gaps(present: Sequence[int], low: int, high: int) -> list[list[int]]:
    """Return the ranges of [low, high] not in `present` (ascending)."""
    gaps, cursor = [], low
    for seq in present:
        if seq > cursor:
            gaps.append([cursor, seq - 1])
        cursor = max(cursor, seq + 1)
    if cursor <= high:
        gaps.append([cursor, high])
    return gaps


def _id_ranges(rows: Iterable[Row]) -> list[tuple[int, int]]:
    """Contiguous id ranges of `rows`: acknowledgements come in order, so one DELETE covers many rows."""
    ranges: list[list[int]] = []
    for row_id in sorted(row.id for row in rows):
        if ranges and row_id == ranges[-1][1] + 1:
            ranges[-1][1] = row_id
        else:
            ranges.append([row_id, row_id])
    return [(low, high) for low, high in ranges]
