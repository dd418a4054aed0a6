"""The mission journal: every accepted mission and every state change, on disk before it is acknowledged.
No rclpy import.

SQLite in WAL mode with synchronous=FULL: a commit survives a crash or power loss once it returns. The
node writes each batch of changes in one transaction before it sends a goal, a result or a state
message, and reads the unfinished missions back when it starts.

The file carries SQLite's application_id 'QAIE'; a file that is not a database, is damaged, or belongs
to something else raises JournalError with what to do, never a crash loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from qai_mission.codec import task_from_dict, task_to_dict
from qai_mission.model import MissionStatus, TaskSpec, TaskStatus

APPLICATION_ID = 0x51414945  # 'QAIE'
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE missions (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    goal_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    message TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL,
    failing INTEGER NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE tasks (
    mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    spec TEXT NOT NULL,
    status INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    retries_used INTEGER NOT NULL,
    preemptions INTEGER NOT NULL,
    engine TEXT NOT NULL,
    message TEXT NOT NULL,
    result TEXT,
    resources TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    retry_at REAL,
    attempt_deadline REAL,
    pending_outcome TEXT NOT NULL,
    on_restart TEXT NOT NULL,
    goal_id TEXT NOT NULL,
    PRIMARY KEY (mission_id, task_id)
);
CREATE INDEX missions_by_status ON missions(status, seq);
"""

_TASK_STATE_COLUMNS = ("status", "attempt", "retries_used", "preemptions", "engine", "message", "result", "resources",
                       "started_at", "finished_at", "retry_at", "attempt_deadline", "pending_outcome", "on_restart",
                       "goal_id")


class JournalError(RuntimeError):
    pass


@dataclass
class TaskRecord:
    spec: TaskSpec
    seq: int
    status: TaskStatus
    attempt: int
    retries_used: int
    preemptions: int
    engine: str
    message: str
    result: dict[str, Any] | None
    resources: frozenset[str]
    started_at: float | None
    finished_at: float | None
    retry_at: float | None
    attempt_deadline: float | None
    pending_outcome: str
    on_restart: str
    goal_id: str


@dataclass
class MissionRecord:
    id: str
    seq: int
    name: str
    goal_id: str
    status: MissionStatus
    message: str
    cancel_requested: bool
    failing: bool
    created_at: float
    finished_at: float | None
    tasks: list[TaskRecord] = field(default_factory=list)


class Journal:
    def __init__(self, path: str | Path, durable: bool = True):
        """Open (or create) the journal at `path`; `durable=False` skips fsync (benchmarks only)."""
        self.path = Path(path).expanduser()
        self.commits = 0
        self.last_commit_seconds = 0.0
        self._persisted: set[tuple[str, str]] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise JournalError(f"journal {self.path}: cannot create its directory: {error.strerror or error}") from None
        self._db = self._open(durable)

    def _open(self, durable: bool) -> sqlite3.Connection:
        advice = "move it aside (or set data_dir elsewhere) to start with an empty journal"
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if application_id == 0 and not tables:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(f"BEGIN; {_SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
                                 f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            elif application_id != APPLICATION_ID:
                db.close()
                raise JournalError(f"journal {self.path} is not a qai_edge mission journal (SQLite application_id "
                                   f"{application_id:#x}, tables: {', '.join(sorted(tables)) or 'none'}); {advice}")
            else:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    db.close()
                    raise JournalError(f"journal {self.path} has schema version {version}, this engine reads "
                                       f"{SCHEMA_VERSION}; {advice}")
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    db.close()
                    raise JournalError(f"journal {self.path} is damaged ({check}); {advice}")
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise JournalError(f"journal {self.path}: cannot switch to WAL mode")
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            db.execute("PRAGMA foreign_keys=ON")
            return db
        except sqlite3.DatabaseError as error:
            raise JournalError(f"journal {self.path} is unreadable ({error}); {advice}") from None

    def close(self) -> None:
        self._db.close()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    # -- Writing ----------------------------------------------------------------------------------

    def record(self, missions: Iterable[Any], tasks: Iterable[Any]) -> None:
        """Write changed missions and tasks (scheduler objects) in one durable transaction."""
        missions, tasks = list(missions), list(tasks)
        if not missions and not tasks:
            return
        started = time.perf_counter()
        new_tasks, changed_tasks = [], []
        for task in tasks:
            key = (task.mission.spec.id, task.spec.id)
            state = _task_state(task)
            if key in self._persisted:
                changed_tasks.append((*state, *key))
            else:
                new_tasks.append((*key, task.seq, json.dumps(task_to_dict(task.spec), allow_nan=False), *state))
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO missions (id, seq, name, goal_id, status, message, cancel_requested, failing, created_at,"
                " finished_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status=excluded.status,"
                " message=excluded.message, cancel_requested=excluded.cancel_requested, failing=excluded.failing,"
                " finished_at=excluded.finished_at",
                [(m.spec.id, m.seq, m.spec.name, m.goal_id, int(m.status), m.message, int(m.cancel_requested),
                  int(m.failing), m.created_at, m.finished_at) for m in missions])
            if new_tasks:
                db.executemany(
                    f"INSERT INTO tasks (mission_id, task_id, seq, spec, {', '.join(_TASK_STATE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (4 + len(_TASK_STATE_COLUMNS)))})", new_tasks)
            if changed_tasks:
                db.executemany(
                    f"UPDATE tasks SET {', '.join(f'{c}=?' for c in _TASK_STATE_COLUMNS)} "
                    "WHERE mission_id=? AND task_id=?", changed_tasks)
            db.execute("COMMIT")
        except sqlite3.Error as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise JournalError(f"journal {self.path}: write failed: {error}") from None
        for row in new_tasks:
            self._persisted.add((row[0], row[1]))
        self.commits += 1
        self.last_commit_seconds = time.perf_counter() - started

    def prune(self, keep_finished: int) -> int:
        """Delete all but the newest `keep_finished` finished missions; returns how many went."""
        terminal = int(MissionStatus.SUCCEEDED)
        rows = self._db.execute("SELECT id FROM missions WHERE status >= ? ORDER BY seq DESC LIMIT -1 OFFSET ?",
                                (terminal, keep_finished)).fetchall()
        if rows:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM missions WHERE id = ?", rows)
            self._db.execute("COMMIT")
            gone = {row[0] for row in rows}
            self._persisted = {key for key in self._persisted if key[0] not in gone}
        return len(rows)

    # -- Reading ----------------------------------------------------------------------------------

    def unfinished(self) -> list[MissionRecord]:
        return self._missions("WHERE status < ? ORDER BY seq", (int(MissionStatus.SUCCEEDED),))

    def mission(self, mission_id: str) -> MissionRecord | None:
        found = self._missions("WHERE id = ?", (mission_id,))
        return found[0] if found else None

    def recent(self, limit: int, include_finished: bool = True) -> list[MissionRecord]:
        where = "" if include_finished else f"WHERE status < {int(MissionStatus.SUCCEEDED)}"
        return self._missions(f"{where} ORDER BY seq DESC LIMIT ?", (limit,))

    def max_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM missions").fetchone()[0]

    def _missions(self, clause: str, args: tuple) -> list[MissionRecord]:
        missions = []
        for row in self._db.execute(f"SELECT id, seq, name, goal_id, status, message, cancel_requested, failing, "
                                    f"created_at, finished_at FROM missions {clause}", args).fetchall():
            record = MissionRecord(row[0], row[1], row[2], row[3], MissionStatus(row[4]), row[5], bool(row[6]),
                                   bool(row[7]), row[8], row[9])
            for t in self._db.execute(f"SELECT seq, spec, {', '.join(_TASK_STATE_COLUMNS)} FROM tasks "
                                      "WHERE mission_id = ? ORDER BY seq", (record.id,)):
                record.tasks.append(TaskRecord(
                    spec=task_from_dict(json.loads(t[1])), seq=t[0], status=TaskStatus(t[2]), attempt=t[3],
                    retries_used=t[4], preemptions=t[5], engine=t[6], message=t[7],
                    result=json.loads(t[8]) if t[8] is not None else None, resources=frozenset(json.loads(t[9])),
                    started_at=t[10], finished_at=t[11], retry_at=t[12], attempt_deadline=t[13],
                    pending_outcome=t[14], on_restart=t[15], goal_id=t[16]))
                self._persisted.add((record.id, record.tasks[-1].spec.id))
            missions.append(record)
        return missions


def _task_state(task: Any) -> tuple:
    return (int(task.status), task.attempt, task.retries_used, task.preemptions, task.engine, task.message,
            json.dumps(task.result, allow_nan=False) if task.result is not None else None,
            json.dumps(sorted(task.resources)), task.started_at, task.finished_at, task.retry_at,
            task.attempt_deadline, task.pending_outcome, task.on_restart, task.goal_id)
