"""The mission journal and recovery from it: what was acknowledged survives a crash; a bad file is a clear error."""

import sqlite3
from dataclasses import replace

import pytest

from mission_sim import ROUTES, FakeClock, mission, task
from qai_mission.journal import Journal, JournalError
from qai_mission.model import MissionStatus, TaskStatus
from qai_mission.scheduler import Dispatch, Reattach, Scheduler


class Engine:
    """A scheduler whose every change goes to the journal, as the node does it."""

    def __init__(self, path, clock=None, engines=("/io", "/quantum")):
        self.clock = clock or FakeClock()
        self.journal = Journal(path)
        self.scheduler = Scheduler(self.clock)
        for record in self.journal.unfinished():
            self.scheduler.restore(record)
        self.scheduler.set_routes(ROUTES, engines)
        self.commands = []
        self.flush()

    def flush(self):
        changes = self.scheduler.take_changes()
        self.journal.record(changes.missions, changes.durable)
        new = self.scheduler.take_commands()
        self.commands.extend(new)
        return new

    def task(self, task_id, mission_id="m1"):
        return self.scheduler.missions[mission_id].tasks[task_id]


def crash(engine):
    """Lose everything in memory; only the journal file remains."""
    engine.journal.close()


def test_journal_round_trips_missions_and_task_state(tmp_path):
    e = Engine(tmp_path / "j.db")
    e.scheduler.add_mission(mission("m1", task("a", "plan", priority=3, parameters={"w": [[1.5, 2]]}),
                                    task("b", depends_on=["a"], timeout=7.0, optional=True), name="demo"))
    e.flush()
    e.scheduler.task_succeeded(e.task("a"), 1, {"order": [2, 1]})
    e.flush()
    crash(e)
    (record,) = Journal(tmp_path / "j.db").unfinished()
    assert (record.id, record.name, record.status) == ("m1", "demo", MissionStatus.RUNNING)
    a, b = record.tasks
    assert a.status == TaskStatus.SUCCEEDED and a.result == {"order": [2, 1]}
    assert a.spec.priority == 3 and a.spec.parameters == {"w": [[1.5, 2]]}
    assert b.status == TaskStatus.RUNNING and b.spec.timeout == 7.0 and b.spec.optional
    assert b.goal_id and b.engine == "/io"


def test_after_a_crash_finished_tasks_stay_finished_and_running_ones_are_reattached(tmp_path):
    e = Engine(tmp_path / "j.db")
    e.scheduler.add_mission(mission("m1", task("a", "plan"), task("b", "move", depends_on=["a"]),
                                    task("c", depends_on=["b"])))
    e.flush()
    e.scheduler.task_succeeded(e.task("a"), 1, {"order": [1]})
    (dispatch_b,) = e.flush()
    crash(e)

    e2 = Engine(tmp_path / "j.db")
    commands = e2.commands
    assert [type(c).__name__ for c in commands] == ["Reattach"]
    (reattach,) = commands
    assert reattach.task.id == "b" and reattach.goal_id == dispatch_b.task.goal_id and not reattach.cancel
    assert e2.task("a").status == TaskStatus.SUCCEEDED  # not run again
    # The engine still knew the goal and reports its result: the mission goes on.
    e2.scheduler.task_succeeded(e2.task("b"), reattach.attempt, {"position": [0, 0, 0]})
    assert [c.task.id for c in e2.flush() if isinstance(c, Dispatch)] == ["c"]


def test_reattach_waits_for_the_engine_to_announce_itself(tmp_path):
    e = Engine(tmp_path / "j.db")
    e.scheduler.add_mission(mission("m1", task("b", "move")))
    e.flush()
    crash(e)
    e2 = Engine(tmp_path / "j.db", engines=())
    assert e2.commands == []
    assert e2.task("b").status == TaskStatus.RUNNING  # still holds the vehicle: its goal may be running
    e2.scheduler.set_routes(ROUTES, {"/io"})
    assert [type(c) for c in e2.flush()] == [Reattach]


@pytest.mark.parametrize("on_restart, expected", [("redispatch", "RUNNING"), ("fail", "FAILED")])
def test_a_goal_the_engine_no_longer_knows_follows_the_kinds_restart_policy(tmp_path, on_restart, expected):
    e = Engine(tmp_path / "j.db")
    move = ROUTES["move"]
    e.scheduler.set_routes({**ROUTES, "move": replace(move, spec=replace(move.spec, on_restart=on_restart))},
                           ("/io", "/quantum"))
    e.scheduler.add_mission(mission("m1", task("b", "move")))
    e.flush()  # the dispatch journals the kind's policy with the attempt
    crash(e)
    e2 = Engine(tmp_path / "j.db")
    (reattach,) = e2.commands
    e2.scheduler.attempt_lost(reattach.task, reattach.attempt)
    commands = e2.flush()
    assert e2.task("b").status.name == expected
    if expected == "RUNNING":
        assert [c.task.id for c in commands if isinstance(c, Dispatch)] == ["b"]
        assert e2.task("b").attempt == 2
    else:
        assert "not safe to run again" in e2.task("b").message
        assert e2.scheduler.missions["m1"].status == MissionStatus.FAILED


def test_a_cancel_in_flight_is_reattached_as_a_cancel(tmp_path):
    e = Engine(tmp_path / "j.db")
    e.scheduler.add_mission(mission("m1", task("b", "move")))
    e.flush()
    e.scheduler.cancel_mission("m1", "operator")
    e.flush()
    crash(e)
    e2 = Engine(tmp_path / "j.db")
    (reattach,) = e2.commands
    assert reattach.cancel
    e2.scheduler.task_canceled(reattach.task, reattach.attempt)
    e2.flush()
    assert e2.scheduler.missions["m1"].status == MissionStatus.CANCELED


def test_a_retry_backoff_survives_a_restart(tmp_path):
    clock = FakeClock()
    e = Engine(tmp_path / "j.db", clock)
    e.scheduler.add_mission(mission("m1", task("t", retry={"max_retries": 1, "initial_backoff": 5.0})))
    e.flush()
    e.scheduler.task_failed(e.task("t"), 1, "flaky")
    e.flush()
    crash(e)
    clock.now += 2
    e2 = Engine(tmp_path / "j.db", clock)
    assert e2.task("t").status == TaskStatus.RETRY_WAIT and e2.commands == []
    clock.now += 3
    e2.scheduler.tick()
    assert [c.task.id for c in e2.flush() if isinstance(c, Dispatch)] == ["t"]


def test_finished_missions_are_not_resumed_and_old_ones_are_pruned(tmp_path):
    e = Engine(tmp_path / "j.db")
    for i in range(5):
        e.scheduler.add_mission(mission(f"m{i}", task("a")))
        e.flush()
        e.scheduler.task_succeeded(e.task("a", f"m{i}"), 1, {})
        e.flush()
    assert e.journal.unfinished() == []
    assert e.journal.prune(keep_finished=2) == 3
    assert [m.id for m in e.journal.recent(10)] == ["m4", "m3"]
    assert e.journal.mission("m4").tasks[0].status == TaskStatus.SUCCEEDED


def test_the_journal_is_durable_wal_with_full_sync(tmp_path):
    journal = Journal(tmp_path / "j.db")
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match=r"j\.db is unreadable .*move it aside"):
        Journal(path)


def test_a_foreign_database_is_a_clear_error(tmp_path):
    path = tmp_path / "j.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(JournalError, match=r"is not a qai_edge mission journal .*tables: photos"):
        Journal(path)


def test_a_damaged_journal_is_a_clear_error(tmp_path):
    path = tmp_path / "j.db"
    e = Engine(path)
    for i in range(50):
        e.scheduler.add_mission(mission(f"m{i}", task("a", parameters={"blob": "x" * 500})))
        e.flush()
    crash(e)
    with sqlite3.connect(path) as db:  # fold the WAL into the file, then damage its pages
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 2, len(data), 4096):
        data[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="move it aside"):
        Journal(path)


def test_a_journal_from_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "j.db"
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="schema version 99"):
        Journal(path)


def test_a_zero_length_journal_where_one_existed_is_reported_not_silently_replaced(tmp_path):
    path = tmp_path / "j.db"
    e = Engine(path)
    e.scheduler.add_mission(mission("m1", task("a")))
    e.flush()
    crash(e)
    path.write_bytes(b"")  # truncated: a full disk, a bad copy
    with pytest.raises(JournalError, match=r"is empty \(0 bytes\) where a journal existed.*move it aside"):
        Journal(path)


V1_SCHEMA = """
CREATE TABLE missions (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, goal_id TEXT NOT NULL,
    status INTEGER NOT NULL, message TEXT NOT NULL, cancel_requested INTEGER NOT NULL, failing INTEGER NOT NULL,
    created_at REAL NOT NULL, finished_at REAL);
CREATE TABLE tasks (mission_id TEXT NOT NULL REFERENCES missions(id) ON DELETE CASCADE, task_id TEXT NOT NULL,
    seq INTEGER NOT NULL, spec TEXT NOT NULL, status INTEGER NOT NULL, attempt INTEGER NOT NULL,
    retries_used INTEGER NOT NULL, preemptions INTEGER NOT NULL, engine TEXT NOT NULL, message TEXT NOT NULL,
    result TEXT, resources TEXT NOT NULL, started_at REAL, finished_at REAL, retry_at REAL, attempt_deadline REAL,
    pending_outcome TEXT NOT NULL, on_restart TEXT NOT NULL, goal_id TEXT NOT NULL, PRIMARY KEY (mission_id, task_id));
CREATE INDEX missions_by_status ON missions(status, seq);
PRAGMA application_id = 1363233093;
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_is_migrated_and_keeps_its_missions(tmp_path):
    """What the previous release wrote: task rows keyed by text, no engine_losses."""
    path = tmp_path / "j.db"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.execute("INSERT INTO missions VALUES ('m1', 1, 'old', '', 1, '', 0, 0, 5.0, NULL)")
        db.execute("""INSERT INTO tasks VALUES ('m1', 'a', 2, '{"id":"a","kind":"scan"}', 2, 1, 0, 0, '/io', '',
                      NULL, '[]', 6.0, NULL, NULL, NULL, '', 'redispatch', 'ab')""")
    journal = Journal(path)
    (record,) = journal.unfinished()
    task = record.tasks[0]
    assert (record.name, task.spec.kind, task.status, task.goal_id, task.engine_losses) == (
        "old", "scan", TaskStatus.RUNNING, "ab", 0)
    e = Engine(path)  # and it resumes and keeps journaling
    e.scheduler.task_succeeded(e.task("a"), 1, {"x": 1})
    e.flush()
    crash(e)
    assert Journal(path).mission("m1").tasks[0].result == {"x": 1}


def test_a_mission_whose_rows_no_longer_decode_is_quarantined_and_the_rest_resume(tmp_path):
    path = tmp_path / "j.db"
    e = Engine(path)
    e.scheduler.add_mission(mission("bad", task("a")))
    e.scheduler.add_mission(mission("good", task("b")))
    e.flush()
    crash(e)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tasks SET spec = ? WHERE mission_id = 'bad'", ('{"id": "a", "kind": 7}',))
    journal = Journal(path)
    assert [m.id for m in journal.unfinished()] == ["good"]
    assert "kind: expected a string" in journal.quarantined["bad"]
    with sqlite3.connect(path) as db:
        status, message = db.execute("SELECT status, message FROM missions WHERE id = 'bad'").fetchone()
    assert status == MissionStatus.FAILED and message.startswith("quarantined:")
    assert [m.id for m in Journal(path).unfinished()] == ["good"]  # and it stays out


def test_progress_feedback_is_not_written(tmp_path):
    e = Engine(tmp_path / "j.db")
    e.scheduler.add_mission(mission("m1", task("a")))
    e.flush()
    commits = e.journal.commits
    t = e.task("a")
    for i in range(20):
        e.scheduler.task_feedback(t, t.attempt, i / 20, "flying")
        e.flush()
    assert e.journal.commits == commits


def test_finished_missions_older_than_the_retention_are_pruned(tmp_path):
    e = Engine(tmp_path / "j.db")
    for i in range(3):
        e.scheduler.add_mission(mission(f"m{i}", task("a")))
        e.flush()
        e.scheduler.task_succeeded(e.task("a", f"m{i}"), 1, {})
        e.flush()
        e.clock.now += 100.0
    assert e.journal.prune(keep_finished=1000, older_than=e.clock.now - 150.0) == 2
    assert [m.id for m in e.journal.recent(10)] == ["m2"]


def test_the_writer_commits_in_order_and_groups_what_piles_up(tmp_path):
    import threading

    from qai_mission.journal import JournalWriter

    e = Engine(tmp_path / "j.db")
    writer = JournalWriter(e.journal)
    done, order = threading.Event(), []
    for i in range(50):
        e.scheduler.add_mission(mission(f"m{i}", task("a")))
        changes = e.scheduler.take_changes()
        writer.submit(e.journal.snapshot(changes.missions, changes.durable),
                      lambda error, i=i: (order.append((i, error)), i == 49 and done.set()))
    assert done.wait(10)
    writer.close()
    assert [i for i, _ in order] == list(range(50)) and all(error is None for _, error in order)
    assert e.journal.commits < 50  # grouped
    assert len(Journal(tmp_path / "j.db").unfinished()) == 50


def test_after_a_failed_write_every_later_batch_fails_too(tmp_path):
    import threading

    from qai_mission.journal import JournalWriter

    e = Engine(tmp_path / "j.db")
    writer = JournalWriter(e.journal)
    e.journal._db.close()  # the disk went away
    results, done = [], threading.Event()
    for i in range(3):
        e.scheduler.add_mission(mission(f"m{i}", task("a")))
        changes = e.scheduler.take_changes()
        writer.submit(e.journal.snapshot(changes.missions, changes.durable),
                      lambda error, i=i: (results.append(error), i == 2 and done.set()))
    assert done.wait(10)
    writer.close()
    assert len(results) == 3 and all(isinstance(error, JournalError) for error in results)
