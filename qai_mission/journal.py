"""The mission journal: every accepted mission and every state transition, on disk before it is acted on.

No rclpy import.

SQLite in WAL mode with synchronous=FULL: a commit survives a crash or power loss once it returns. What
is written: missions, task state transitions and results (the scheduler's durable changes); progress
feedback is not (it lives in memory and on topics). The node snapshots a batch of changes on its executor
thread (cheap: primitives and references to immutable specs and results) and a JournalWriter thread
encodes and commits it, so heartbeats and goal answers are never held up by a commit; what the batch
allows (goals sent, states published) happens only after its commit returned. Batches that pile up
while a commit runs are grouped into the next one.

The file carries SQLite's application_id 'QAIE'; a file that is not a database, is damaged, is empty
where a journal existed, or belongs to something else raises JournalError with what to do, never a crash
loop. A mission whose rows no longer decode is quarantined (marked failed with the reason, left on disk)
instead of stopping the engine. Finished missions are pruned by count and age.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from qai_mission.codec import task_from_dict, task_to_dict
from qai_mission.model import MissionStatus, TaskSpec, TaskStatus

APPLICATION_ID = 0x51414945  # 'QAIE'
SCHEMA_VERSION = 2
_ADVICE = "move it aside (or set data_dir elsewhere) to start with an empty journal"

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
    row INTEGER PRIMARY KEY,
    mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX tasks_by_mission ON tasks(mission_id, seq);
CREATE INDEX missions_by_status ON missions(status, seq);
"""
_TASKS_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE tasks"):_SCHEMA.index("CREATE INDEX missions_by_status")]
# Each step takes the schema from version N to N + 1. Version 2 keys task rows by an integer and keeps a
# task's state as one JSON array (an update rewrites one short value found by its integer key: a third of
# the cost of sixteen columns found by two text keys), and counts engine losses.
_MIGRATIONS = {1: f"ALTER TABLE tasks RENAME TO tasks_v1; {_TASKS_TABLE} "
                  "INSERT INTO tasks (mission_id, task_id, seq, spec, state) SELECT mission_id, task_id, seq, spec, "
                  "json_array(status, attempt, retries_used, preemptions, engine, message, json(result), "
                  "json(resources), started_at, finished_at, retry_at, attempt_deadline, pending_outcome, on_restart, "
                  "goal_id, 0) FROM tasks_v1; DROP TABLE tasks_v1;"}

_MISSION_COLUMNS = ("id", "seq", "name", "goal_id", "status", "message", "cancel_requested", "failing", "created_at",
                    "finished_at")


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
    engine_losses: int = 0
    row: int = 0  # the task's row in the journal


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


@dataclass
class Batch:
    """Rows taken from scheduler objects on the thread that owns them; encoded and written elsewhere."""

    missions: dict[str, tuple] = field(default_factory=dict)  # id -> mission row
    new_tasks: dict[int, tuple] = field(default_factory=dict)  # row -> (mission id, task id, seq, spec, state)
    changed_tasks: dict[int, tuple] = field(default_factory=dict)  # row -> state

    def __bool__(self) -> bool:
        return bool(self.missions or self.new_tasks or self.changed_tasks)

    def merge(self, later: "Batch") -> None:
        """Fold a later batch into this one (the later state of a row wins)."""
        self.missions.update(later.missions)
        for row, state in later.changed_tasks.items():
            if row in self.new_tasks:
                self.new_tasks[row] = (*self.new_tasks[row][:4], state)
            else:
                self.changed_tasks[row] = state
        self.new_tasks.update(later.new_tasks)


def _state(task: Any) -> tuple:
    """Return a task's durable state, in the order of the journal's state array."""
    return (int(task.status), task.attempt, task.retries_used, task.preemptions, task.engine, task.message,
            task.result, task.resources, task.started_at, task.finished_at, task.retry_at, task.attempt_deadline,
            task.pending_outcome, task.on_restart, task.goal_id, task.engine_losses)


def _json(value: Any) -> str:
    # orjson: ~8x json's encoder here, where encoding was the journal's largest cost. Values arrive checked
    # (parameters and results are parsed with NaN refused), so its NaN-as-null never applies.
    return orjson.dumps(value).decode()


def _encoded_state(state: tuple) -> str:
    resources = state[7]
    return _json((*state[:7], sorted(resources) if resources else (), *state[8:]))


class Journal:
    def __init__(self, path: str | Path, durable: bool = True):
        """Open (or create) the journal at `path`; `durable=False` skips fsync (benchmarks only)."""
        self.path = Path(path).expanduser()
        self.commits = 0
        self.last_commit_seconds = 0.0
        self.quarantined: dict[str, str] = {}  # mission id -> why its rows could not be read
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise JournalError(f"journal {self.path}: cannot create its directory: {error.strerror or error}") from None
        if self.path.exists() and self.path.stat().st_size == 0:
            # SQLite would take it as a new, empty database: missions that were journaled would be lost unsaid.
            raise JournalError(f"journal {self.path} is empty (0 bytes) where a journal existed; unfinished missions "
                               f"cannot be resumed from it; {_ADVICE}")
        self._db = self._open(durable)
        self._lock = threading.Lock()  # one writer at a time (the writer thread; prune)
        self._next_row = self._db.execute("SELECT COALESCE(MAX(row), 0) + 1 FROM tasks").fetchone()[0]

    def _open(self, durable: bool) -> sqlite3.Connection:
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
                                   f"{application_id:#x}, tables: {', '.join(sorted(tables)) or 'none'}); {_ADVICE}")
            else:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    db.close()
                    raise JournalError(f"journal {self.path} is damaged ({check}); {_ADVICE}")
                self._migrate(db)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise JournalError(f"journal {self.path}: cannot switch to WAL mode")
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            db.execute("PRAGMA foreign_keys=ON")
            return db
        except sqlite3.DatabaseError as error:
            raise JournalError(f"journal {self.path} is unreadable ({error}); {_ADVICE}") from None

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION or version not in _MIGRATIONS and version != SCHEMA_VERSION:
            db.close()
            raise JournalError(f"journal {self.path} has schema version {version}, this engine reads "
                               f"{SCHEMA_VERSION}; {_ADVICE}")
        while version < SCHEMA_VERSION:
            db.executescript(f"BEGIN; {_MIGRATIONS[version]} PRAGMA user_version={version + 1}; COMMIT;")
            version += 1

    def close(self) -> None:
        self._db.close()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    # -- Writing ----------------------------------------------------------------------------------

    def snapshot(self, missions: Iterable[Any], tasks: Iterable[Any]) -> Batch:
        """Take rows of changed scheduler missions and tasks, on the thread that owns them.

        Cheap, no encoding. A task gets its row number here (so its later changes update that row).
        """
        batch = Batch()
        for m in missions:
            batch.missions[m.spec.id] = (m.spec.id, m.seq, m.spec.name, m.goal_id, int(m.status), m.message,
                                         int(m.cancel_requested), int(m.failing), m.created_at, m.finished_at)
        for task in tasks:
            row = task.journal_row
            if row is None:
                row = task.journal_row = self._next_row
                self._next_row += 1
                batch.new_tasks[row] = (task.mission.spec.id, task.spec.id, task.seq, task.spec, _state(task))
            else:
                batch.changed_tasks[row] = _state(task)
        return batch

    def record(self, missions: Iterable[Any], tasks: Iterable[Any]) -> None:
        """Write changed missions and (durably changed) tasks in one transaction, on this thread."""
        self.write(self.snapshot(missions, tasks))

    def write(self, batch: Batch) -> None:
        """Encode and commit a batch in one durable transaction; JournalError when it cannot."""
        if not batch:
            return
        started = time.perf_counter()
        new_tasks = [(row, mission_id, task_id, seq, _json(task_to_dict(spec)), _encoded_state(state))
                     for row, (mission_id, task_id, seq, spec, state) in batch.new_tasks.items()]
        changed_tasks = [(_encoded_state(state), row) for row, state in batch.changed_tasks.items()]
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN")
                db.executemany(
                    f"INSERT INTO missions ({', '.join(_MISSION_COLUMNS)}) VALUES ({', '.join('?' * 10)}) "
                    "ON CONFLICT(id) DO UPDATE SET status=excluded.status, message=excluded.message, "
                    "cancel_requested=excluded.cancel_requested, failing=excluded.failing, "
                    "finished_at=excluded.finished_at", list(batch.missions.values()))
                if new_tasks:
                    db.executemany("INSERT INTO tasks (row, mission_id, task_id, seq, spec, state) "
                                   "VALUES (?,?,?,?,?,?)", new_tasks)
                if changed_tasks:
                    db.executemany("UPDATE tasks SET state=? WHERE row=?", changed_tasks)
                db.execute("COMMIT")
            except sqlite3.Error as error:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the connection itself is gone
                raise JournalError(f"journal {self.path}: write failed: {error}") from None
        self.commits += 1
        self.last_commit_seconds = time.perf_counter() - started

    def prune(self, keep_finished: int, older_than: float | None = None) -> int:
        """Delete finished missions beyond the newest `keep_finished`, and those finished before `older_than`.

        `older_than` is a time on the journal's clock. Returns how many went.
        """
        terminal = int(MissionStatus.SUCCEEDED)
        with self._lock:
            rows = self._db.execute("SELECT id FROM missions WHERE status >= ? ORDER BY seq DESC LIMIT -1 OFFSET ?",
                                    (terminal, keep_finished)).fetchall()
            if older_than is not None:
                rows += self._db.execute("SELECT id FROM missions WHERE status >= ? AND finished_at < ?",
                                         (terminal, older_than)).fetchall()
            gone = sorted({row[0] for row in rows})
            if gone:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM missions WHERE id = ?", [(mission_id,) for mission_id in gone])
                self._db.execute("COMMIT")
        return len(gone)

    # -- Reading ----------------------------------------------------------------------------------

    def unfinished(self) -> list[MissionRecord]:
        """Return the missions to resume.

        One whose rows no longer decode is quarantined (marked FAILED with why, left on disk) and listed in
        `quarantined`, so one bad row cannot stop the engine from starting.
        """
        missions = self._missions("WHERE status < ? ORDER BY seq", (int(MissionStatus.SUCCEEDED),), quarantine=True)
        if self.quarantined:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany("UPDATE missions SET status=?, message=? WHERE id=?", [
                    (int(MissionStatus.FAILED), f"quarantined: its journal rows could not be read back ({why})",
                     mission_id) for mission_id, why in self.quarantined.items()])
                self._db.execute("COMMIT")
        return missions

    def mission(self, mission_id: str) -> MissionRecord | None:
        found = self._missions("WHERE id = ?", (mission_id,))
        return found[0] if found else None

    def recent(self, limit: int, include_finished: bool = True) -> list[MissionRecord]:
        where = "" if include_finished else f"WHERE status < {int(MissionStatus.SUCCEEDED)}"
        return self._missions(f"{where} ORDER BY seq DESC LIMIT ?", (limit,))

    def max_seq(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM missions").fetchone()[0]

    def _missions(self, clause: str, args: tuple, quarantine: bool = False) -> list[MissionRecord]:
        try:
            return self._read_missions(clause, args, quarantine)
        except sqlite3.Error as error:
            raise JournalError(f"journal {self.path}: read failed: {error}") from None

    def _read_missions(self, clause: str, args: tuple, quarantine: bool) -> list[MissionRecord]:
        missions = []
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_MISSION_COLUMNS)} FROM missions {clause}", args).fetchall()
        for row in rows:
            try:
                record = MissionRecord(row[0], row[1], row[2], row[3], MissionStatus(row[4]), row[5], bool(row[6]),
                                       bool(row[7]), row[8], row[9])
                with self._lock:
                    tasks = self._db.execute("SELECT seq, spec, state, row FROM tasks WHERE mission_id = ? "
                                             "ORDER BY seq", (record.id,)).fetchall()
                record.tasks = [_task_record(t) for t in tasks]
            except (ValueError, TypeError, KeyError) as error:  # a row this code cannot read back
                if not quarantine:
                    raise JournalError(f"journal {self.path}: mission {row[0]!r} cannot be read: {error}") from None
                self.quarantined[row[0]] = f"{type(error).__name__}: {error}"[:500]
                continue
            missions.append(record)
        return missions


def _task_record(row: tuple) -> TaskRecord:
    seq, spec, state, journal_row = row
    (status, attempt, retries_used, preemptions, engine, message, result, resources, started_at, finished_at,
     retry_at, attempt_deadline, pending_outcome, on_restart, goal_id, engine_losses) = json.loads(state)
    return TaskRecord(
        spec=task_from_dict(json.loads(spec)), seq=seq, status=TaskStatus(status), attempt=attempt,
        retries_used=retries_used, preemptions=preemptions, engine=engine, message=message, result=result,
        resources=frozenset(resources), started_at=started_at, finished_at=finished_at, retry_at=retry_at,
        attempt_deadline=attempt_deadline, pending_outcome=pending_outcome, on_restart=on_restart, goal_id=goal_id,
        engine_losses=engine_losses, row=journal_row)


class JournalWriter:
    """Commits batches on its own thread, in order, grouping those that arrive while one is committing.

    `submit(batch, then)` returns at once; `then(error)` is called (on the writer thread) once the batch
    is on disk (error None) or could not be written (a JournalError). After a failure every later batch
    fails too: what comes after a lost write must not be acted on as if it were safe.
    """

    def __init__(self, journal: Journal):
        self.journal = journal
        self.failure: JournalError | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch, then: Callable[[JournalError | None], None]) -> None:
        self._queue.put((batch, then))

    def call(self, job: Callable[[], Any]) -> None:
        """Run `job` (a prune) on the writer thread, between commits."""
        self._queue.put((job, None))

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        carried = None
        while True:
            item = carried if carried is not None else self._queue.get()
            carried = None
            if item is None:
                return
            batch, then = item
            if then is None:
                self._run_job(batch)
                continue
            callbacks = [then]
            while True:  # group what piled up behind this one
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None or following[1] is None:
                    carried = following  # a job or the end: right after this group
                    break
                batch.merge(following[0])
                callbacks.append(following[1])
            error = self.failure
            if error is None:
                try:
                    self.journal.write(batch)
                except JournalError as failure:
                    error = self.failure = failure
                except Exception as failure:  # a bug must not kill the writer and leave batches unanswered
                    error = self.failure = JournalError(f"journal {self.journal.path}: write failed: "
                                                        f"{type(failure).__name__}: {failure}")
            for callback in callbacks:
                callback(error)

    def _run_job(self, job: Callable[[], Any]) -> None:
        try:
            job()
        except Exception as error:
            self.failure = self.failure or JournalError(f"journal {self.journal.path}: {error}")
