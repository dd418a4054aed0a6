"""The hub dashboard's plain parts, fast: no broker, no browser.

The fleet model it follows, the feed, the outbox, the mission check and the login.
"""

from __future__ import annotations

import json
import os
import random
import stat

import orjson
import pytest

from qai_hub.dashboard_auth import (HostAllowlist, LoginThrottle, OptionError, PasswordFileError, Sessions,
                                    TrustedProxies, csrf_ok, digest, read_password_file)
from qai_hub.dashboard_feed import DashboardFeed, FeedLimits, Outbox, geofence_of
from qai_hub.fleet import Fleet, RangeSet, SequenceTracker
from qai_hub.mission_check import check_mission_text, kinds_from_engines
from robot_identity import shared_robots

FLEET = "f"
ROBOTS = shared_robots()


def telemetry(robot: str, stream: str, seq: int, type_name: str, data: dict, stamp: float = 100.0):
    topic = f"qai/{FLEET}/{robot}/telemetry/{stream}"
    return topic, ROBOTS.as_robot(topic, orjson.dumps({"seq": seq, "stamp": stamp, "type": type_name, "data": data}))


def header(sec: int, nanosec: int = 0) -> dict:
    return {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": ""}


def mission(seq: int, sec: int, tasks: list[tuple], state: int = 1, mission_id: str = "m1"):
    return telemetry("r1", "mission_states", seq, "qai_interfaces/msg/MissionState", {
        "header": header(sec), "mission_id": mission_id, "name": "n", "state": state, "message": "",
        "tasks": [{"task_id": t[0], "kind": "wait", "state": t[1], "depends_on": list(t[2:]), "message": "",
                   "result": []} for t in tasks]})


def odom(seq: int, x: float, y: float, stamp: float, speed: float = 0.0, robot: str = "r1"):
    pose = {"position": {"x": x, "y": y, "z": 1.0}, "orientation": {"x": 0, "y": 0, "z": 0, "w": 1}}
    return telemetry(robot, "odom", seq, "nav_msgs/msg/Odometry", {
        "header": header(int(stamp)), "pose": {"pose": pose},
        "twist": {"twist": {"linear": {"x": speed, "y": 0.0, "z": 0.0}}}}, stamp)


def status(state: str, **extra):
    topic = f"qai/{FLEET}/r1/status"
    return topic, ROBOTS.as_robot(topic, orjson.dumps({"state": state, "robot": "r1", **extra}))


# -- The fleet model -------------------------------------------------------------------------------------

def test_range_set_matches_a_plain_set_and_keeps_runs_as_one_range():
    rng = random.Random(4)
    numbers, plain = RangeSet(), set()
    for value in [rng.randrange(300) for _ in range(600)]:
        assert numbers.add(value) == (value not in plain)
        plain.add(value)
    assert len(numbers) == len(plain)
    assert [v for low, high in numbers.ranges for v in range(low, high + 1)] == sorted(plain)
    assert all((value in numbers) == (value in plain) for value in range(-5, 310))
    run = RangeSet()
    for value in [5, 3, 4, 1, 2, *range(6, 10000)]:
        run.add(value)
    assert run.ranges == [(1, 9999)]


def test_missing_count_agrees_with_the_listed_missing_numbers():
    rng = random.Random(7)
    tracker = SequenceTracker()
    for seq in rng.sample(range(1, 500), 300):
        tracker.receive(seq)
    tracker.report_dropped([[20, 40], [450, 470]], "expired")
    assert tracker.missing_count() == len(tracker.missing())


def test_mission_states_merge_by_task_and_an_older_backlog_message_never_undoes_a_newer_state():
    fleet = Fleet(FLEET, ROBOTS.registry)
    fleet.on_message(*mission(1, 10, [("a", 0), ("b", 0, "a"), ("c", 0, "b")]))  # the first message: every task
    fleet.on_message(*mission(3, 12, [("a", 10), ("b", 2, "a")]))  # what changed, live
    change = fleet.on_message(*mission(2, 11, [("a", 2), ("c", 1, "b")]))  # older, from the backlog
    tasks = {t["task_id"]: t["state"] for t in fleet.robots["r1"].missions["m1"]["tasks"]}
    assert tasks == {"a": 10, "b": 2, "c": 1}  # c only came in the older message: taken; a kept its newer state
    assert change.applied and change.previous["state"] == 1
    assert [t["depends_on"] for t in fleet.robots["r1"].missions["m1"]["tasks"]] == [[], ["a"], ["b"]]
    assert fleet.on_message(*mission(2, 11, [("a", 2)])) is None  # a duplicate seq: dropped


def test_the_fleet_keeps_every_event_engines_by_name_and_refuses_robots_past_its_bound():
    fleet = Fleet(FLEET, ROBOTS.registry, max_robots=2)
    for seq, sec in ((2, 20), (1, 10)):  # the older event arrives last: kept anyway, it is a log
        event = {"header": header(sec), "code": f"e{seq}"}
        fleet.on_message(*telemetry("r1", "events", seq, "qai_interfaces/msg/Event", event))
    assert [event["code"] for event in fleet.robots["r1"].events] == ["e2", "e1"]
    for seq, engine, sec in ((1, "/r1/io_engine", 50), (2, "/r1/mission_engine", 40)):
        fleet.on_message(*telemetry("r1", "capabilities", seq, "qai_interfaces/msg/EngineCapabilities",
                                    {"header": header(sec), "engine": engine, "kinds": []}))
    assert set(fleet.robots["r1"].engines) == {"/r1/io_engine", "/r1/mission_engine"}  # older stamp, other engine
    fleet.on_message(*odom(1, 0.0, 0.0, 100.0, robot="r2"))
    change = fleet.on_message(*odom(1, 0.0, 0.0, 100.0, robot="r3"))
    assert change.kind == "refused" and change.robot is None and "more than 2 robots" in change.message.why
    assert set(fleet.robots) == {"r1", "r2"} and fleet.refused_robots == 1


# -- The feed --------------------------------------------------------------------------------------------

def ops_of(ops, kind):
    return [op for op in ops if op[0] == kind]


def test_the_feed_turns_odometry_into_a_pose_track_points_and_a_speed_plot():
    feed = DashboardFeed(FLEET, ROBOTS.registry)
    ops = feed.on_message(*odom(1, 0.0, 0.0, 100.0, speed=2.0))
    assert ops_of(ops, "pose")[0][2] | {} == {"x": 0.0, "y": 0.0, "z": 1.0, "yaw": 0.0, "speed": 2.0,
                                              "stamp": 100.0, "seq": 1}
    assert ops_of(ops, "track") and ops_of(ops, "series")[0][2:] == ["speed", 100.0, 2.0]
    ops = feed.on_message(*odom(2, 0.1, 0.0, 100.1))  # moved 0.1 m, 0.1 s later: a pose only
    assert [op[0] for op in ops] == ["pose"]
    feed.on_message(*odom(3, 1.0, 0.0, 100.7))
    assert [point[1] for point in feed.tracks["r1"].points] == [0.0, 1.0]


def test_the_feed_logs_the_last_will_rejections_restarts_failures_and_health_changes():
    feed = DashboardFeed(FLEET, ROBOTS.registry)
    feed.on_message(*status("online"))
    log = [op[1] for op in feed.on_message(*status("offline", reason="connection lost")) if op[0] == "event"]
    assert log[0]["level"] == "error" and log[0]["text"] == "offline (connection lost)"
    topic = f"qai/{FLEET}/r1/cmd/get_state/reply"
    reply = ROBOTS.as_robot(topic, orjson.dumps({"id": "q1", "verb": "get_state", "robot": "r1", "status": "rejected",
                                                 "reason": "expired", "message": "too old"}))
    entry = ops_of(feed.on_message(topic, reply), "event")[0][1]
    assert entry["kind"] == "rejected" and entry["request_id"] == "q1" and "expired" in entry["text"]
    capabilities = {"engine": "/r1/io_engine", "kinds": [{"name": "navigate"}]}
    feed.on_message(*telemetry("r1", "capabilities", 1, "qai_interfaces/msg/EngineCapabilities",
                               {**capabilities, "header": header(50)}))
    ops = feed.on_message(*telemetry("r1", "capabilities", 2, "qai_interfaces/msg/EngineCapabilities",
                                     {**capabilities, "header": header(60)}))
    assert ops_of(ops, "event")[0][1]["text"] == "engine /r1/io_engine restarted"
    assert ops_of(ops, "robot")[0][2]["engines"][0]["restarts"] == 1
    feed.on_message(*mission(1, 10, [("a", 2)]))
    failed = ops_of(feed.on_message(*mission(2, 11, [("a", 11)], state=11)), "event")
    assert [e[1]["kind"] for e in failed] == ["task", "mission"] and "FAILED" in failed[1][1]["text"]
    diagnostics = "diagnostic_msgs/msg/DiagnosticArray"
    feed.on_message(*telemetry("r1", "diagnostics", 1, diagnostics, {"worst": 0, "nodes": {"/r1/io": {"level": 0}}}))
    ops = feed.on_message(*telemetry("r1", "diagnostics", 2, diagnostics, {"worst": 2, "nodes": {
        "/r1/io": {"level": 2, "message": "odometry stale"}}}))
    assert ops_of(ops, "event")[0][1]["text"] == "/r1/io: ERROR: odometry stale"


def test_the_backlog_after_an_outage_is_plotted_in_time_order():
    feed = DashboardFeed(FLEET, ROBOTS.registry)
    battery = "sensor_msgs/msg/BatteryState"
    feed.on_message(*telemetry("r1", "battery_state", 10, battery, {"header": header(110), "percentage": 0.5}, 110))
    for seq, t in ((5, 105), (6, 106), (7, 106.5)):  # older, sent after the live one
        feed.on_message(*telemetry("r1", "battery_state", seq, battery, {"header": header(int(t)), "percentage": 0.6},
                                   t))
    assert [point[0] for point in feed.series["r1"]["battery"].points] == [105, 106, 110]  # one a second of it
    assert feed.fleet.robots["r1"].battery["percentage"] == 0.5


def test_the_endurance_prediction_is_plotted_beside_what_the_return_home_needs():
    feed = DashboardFeed(FLEET, ROBOTS.registry)
    ops = feed.on_message(*telemetry("r1", "endurance", 1, "qai_interfaces/msg/EndurancePrediction", {
        "header": header(100), "remaining": 412.5, "baseline": 390.0, "return_needed": 95.0, "low": False,
        "model_version": "v0002", "model_cell": "cfc"}, 100.0))
    assert [op[2:] for op in ops_of(ops, "series")] == [["endurance", 100.0, 412.5], ["return_needed", 100.0, 95.0]]
    expected = {"remaining": 412.5, "baseline": 390.0, "return_needed": 95.0, "low": False, "model": "v0002 cfc"}
    assert ops_of(ops, "robot")[0][2]["endurance"] == expected


def test_a_geofence_announced_in_a_kind_schema_is_found():
    schema = {"type": "object", "properties": {"waypoints": {"type": "array", "items": {
        "type": "array", "x-geofence": {"polygon": [[0, 0], [10, 0], [10, 10]], "max_altitude": 50}}}}}
    engines = {"/r/io": {"engine": "/r/io", "kinds": [{"name": "navigate", "parameters_schema": json.dumps(schema)}]}}
    assert geofence_of(engines) == {"polygon": [[0, 0], [10, 0], [10, 10]], "min_altitude": None,
                                    "max_altitude": 50, "engine": "/r/io"}


def test_a_plan_result_gives_the_route_and_the_solver_to_the_page():
    feed = DashboardFeed(FLEET, ROBOTS.registry)
    result = [{"key": "solver", "value": '"qaoa"'}, {"key": "verified", "value": "true"},
              {"key": "waypoints", "value": "[[0, 0, 5], [15, 20, 6]]"}, {"key": "order", "value": "[0, 1]"},
              {"key": "samples", "value": json.dumps(list(range(5000)))}]
    topic, payload = telemetry("r1", "mission_states", 1, "qai_interfaces/msg/MissionState", {
        "header": header(5), "mission_id": "m", "state": 1,
        "tasks": [{"task_id": "plan", "kind": "plan_route", "state": 10, "result": result}]})
    task = ops_of(feed.on_message(topic, payload), "mission")[0][3]["tasks"][0]
    assert task["result"] == {"solver": "qaoa", "verified": True, "waypoints": [[0, 0, 5], [15, 20, 6]],
                              "order": [0, 1]}


def test_the_outbox_keeps_the_latest_state_and_resyncs_a_browser_that_fell_behind():
    outbox = Outbox(max_appends=3)
    outbox.put([["pose", "r1", {"x": 1}], ["robot", "r1", {"battery": 1}], ["pose", "r1", {"x": 2}],
                ["robot", "r1", {"link": 2}], ["event", {"text": "e"}]])
    assert outbox.take() == [["pose", "r1", {"x": 2}], ["robot", "r1", {"battery": 1, "link": 2}],
                             ["event", {"text": "e"}]]
    assert outbox.coalesced == 2 and not outbox
    outbox.put([["series", "r1", "speed", t, 1.0] for t in range(5)])
    assert outbox.resync and outbox.take() == []


def test_robot_strings_reach_the_browser_as_strings_cut_to_their_bound():
    feed = DashboardFeed(FLEET, ROBOTS.registry, FeedLimits(max_text=20))
    ops = feed.on_message(*telemetry("r1", "events", 1, "qai_interfaces/msg/Event", {
        "header": header(1), "code": "<b>x</b>", "severity": 2, "message": "<img src=x onerror=alert(1)>" * 5}))
    entry = ops[0][1]
    assert entry["text"].startswith("<b>x</b>: <img src=x onerror=") and "(140 characters)" in entry["text"]
    assert entry["level"] == "error"


# -- The mission check ---------------------------------------------------------------------------------------

def test_a_mission_is_checked_as_the_robot_checks_it():
    good = check_mission_text("name: s\ntasks:\n  - {id: a, kind: wait, parameters: {seconds: 1}}\n"
                              "  - {id: b, kind: wait, depends_on: [a]}\n")
    assert good.ok and good.document["tasks"][1]["depends_on"] == ["a"]
    assert good.tasks == [{"id": "a", "kind": "wait", "depends_on": []},
                          {"id": "b", "kind": "wait", "depends_on": ["a"]}]
    cycle = check_mission_text("tasks:\n  - {id: a, kind: wait, depends_on: [b]}\n  - {id: b, kind: wait, "
                               "depends_on: [a]}\n")
    assert not cycle.ok and "dependency cycle" in cycle.errors[0]
    assert "tasks[0] (a).timeout" in check_mission_text("tasks:\n  - {id: a, kind: wait, timeout: soon}\n").errors[0]
    duplicate = check_mission_text("tasks:\n  - {id: a, kind: wait, id: b}\n")
    assert "line 2, column 25: not valid YAML: duplicate key" in duplicate.errors[0]
    assert not check_mission_text("[1, 2]").ok and not check_mission_text("a: [" * 100).ok


def test_the_kinds_a_robot_announced_check_parameters_and_the_geofence_as_warnings():
    from qai_edge.geofence import Geofence
    from qai_io.hub_link import codec
    from qai_io.kinds import KindLimits, task_kinds
    from qai_edge.convert import kind_to_msg
    from qai_interfaces.msg import EngineCapabilities

    fence = Geofence.from_flat([-10, -10, 10, -10, 10, 10, -10, 10], 0, 50)
    announcement = codec.to_dict(EngineCapabilities(engine="/r/io_engine", kinds=[
        kind_to_msg(k) for k in task_kinds(KindLimits(fence=fence)).values()]))
    kinds = kinds_from_engines({"/r/io_engine": orjson.loads(orjson.dumps(announcement))})
    check = check_mission_text("tasks:\n  - {id: far, kind: navigate, parameters: {waypoints: [[50, 0, 5]]}}\n"
                               "  - {id: x, kind: teleport}\n", kinds=kinds)
    assert check.ok  # the robot decides: its engines may have changed
    assert any("task 'far'" in w and "outside the fence" in w for w in check.warnings), check.warnings
    assert any("'teleport' is not served" in w for w in check.warnings), check.warnings


# -- Login ---------------------------------------------------------------------------------------------------

def test_the_password_file_is_created_when_missing_and_checked(tmp_path):
    created = tmp_path / "sub" / "dashboard.password"
    secret, warnings = read_password_file(created, create=True)
    assert "created" in warnings[0] and stat.S_IMODE(os.stat(created).st_mode) == 0o600
    assert secret == digest(created.read_text().strip())
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(PasswordFileError, match="at least 8 characters"):
        read_password_file(short)
    shared = tmp_path / "shared"
    shared.write_text("long enough password\n")
    shared.chmod(0o644)
    assert "readable by other users" in read_password_file(shared)[1][0]
    with pytest.raises(PasswordFileError, match="cannot read"):
        read_password_file(tmp_path / "none")


def test_sessions_need_the_password_expire_and_carry_their_own_csrf_token():
    now = [0.0]
    sessions = Sessions(digest("right password"), lifetime=100.0, max_sessions=2, clock=lambda: now[0])
    assert sessions.login("wrong password", "c") is None and sessions.login(None, "c") is None
    first = sessions.login("right password", "c")
    assert sessions.get(first.token) is first and csrf_ok(first, first.csrf)
    assert not csrf_ok(first, "x") and not csrf_ok(first, None)
    second, third = sessions.login("right password", "c"), sessions.login("right password", "c")
    assert sessions.get(first.token) is None and second.csrf != third.csrf  # bounded: the oldest went
    now[0] = 101.0
    assert sessions.get(third.token) is None


def test_failed_logins_are_throttled_per_client_and_in_total():
    now = [0.0]
    throttle = LoginThrottle(failures=3, window=60.0, total=5, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        assert throttle.begin("a") == 0  # a failure keeps its attempt counted
    assert throttle.retry_after("a") == 60.0 and throttle.begin("a") == 60.0 and throttle.retry_after("b") == 0
    assert throttle.begin("b") == 0 and throttle.begin("c") == 0
    assert throttle.retry_after("d") > 0 and throttle.begin("d") > 0  # five in the window from anyone
    now[0] = 61.0
    assert throttle.retry_after("a") == 0 and throttle.retry_after("d") == 0


def test_login_attempts_running_at_once_are_counted_when_they_begin_and_a_success_releases_its_own():
    throttle = LoginThrottle(failures=5, window=60.0, total=50, clock=lambda: 0.0)
    assert [throttle.begin("c") for _ in range(8)] == [0.0] * 5 + [60.0] * 3  # none has ended yet
    throttle.succeeded("c")  # one of them had the password
    assert throttle.begin("c") == 0 and throttle.begin("c") == 60.0
    throttle.abandoned("c")  # a request that tried no password (refused, malformed) costs nothing either
    assert throttle.begin("c") == 0


def test_clients_behind_a_trusted_proxy_are_told_apart_and_throttled_apart():
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.client("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    # The right-most address that is not a proxy of ours: what is left of it, anyone could have written.
    assert proxies.client("127.0.0.1", ["198.51.100.7, 203.0.113.9"]) == "203.0.113.9"
    assert proxies.client("127.0.0.1", ["198.51.100.7", "203.0.113.9, 10.1.2.3"]) == "203.0.113.9"
    assert proxies.client("::ffff:127.0.0.1", ["[2001:db8::7]:4711"]) == "2001:db8::7"
    assert proxies.client("127.0.0.1", []) == "127.0.0.1"  # no header: the proxy itself
    assert proxies.client("127.0.0.1", ["garbage, 10.0.0.1"]) == "10.0.0.1"  # not an address: the last proxy
    assert proxies.client("192.0.2.1", ["198.51.100.7"]) == "192.0.2.1"  # an untrusted peer's header is ignored
    assert TrustedProxies().client("127.0.0.1", ["198.51.100.7"]) == "127.0.0.1"
    with pytest.raises(OptionError, match="--trusted-proxy 'proxy.lan'"):
        TrustedProxies(["proxy.lan"])
    throttle = LoginThrottle(failures=5, window=60.0, total=50, clock=lambda: 0.0)
    attacker, operator = proxies.client("127.0.0.1", ["203.0.113.9"]), proxies.client("127.0.0.1", ["198.51.100.7"])
    assert [throttle.begin(attacker) for _ in range(6)][-1] > 0
    assert throttle.begin(operator) == 0


def test_a_guesser_with_many_addresses_cannot_lock_out_a_client_that_logged_in_before():
    now = [0.0]
    throttle = LoginThrottle(failures=3, window=60.0, total=10, known_for=3600.0, clock=lambda: now[0])
    assert throttle.begin("operator") == 0
    throttle.succeeded("operator")
    now[0] = 100.0
    refused = sum(throttle.begin(f"198.51.100.{n}") > 0 for n in range(200))
    assert refused == 190  # the account-wide limit stops strangers
    assert throttle.begin("192.0.2.1") > 0 and throttle.retry_after("192.0.2.1") > 0
    assert throttle.known("operator") and [throttle.begin("operator") for _ in range(4)] == [0.0] * 3 + [60.0]
    now[0] = 100.0 + 3601.0  # known for an hour here; the window has passed too
    assert not throttle.known("operator") and throttle.begin("operator") == 0


def test_the_throttle_holds_a_bounded_number_of_clients_whatever_arrives():
    now = [0.0]
    throttle = LoginThrottle(failures=5, window=60.0, total=50, max_clients=100, known_clients=10,
                             clock=lambda: now[0])
    for n in range(5000):
        now[0] = n * 0.1  # one try a tenth of a second, each from a new address
        throttle.begin(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        if n % 2:
            throttle.succeeded(f"known-{n}")
    held = throttle.tracked()
    assert held["clients"] <= 100 and held["attempts"] <= 50 and held["known"] == 10


def test_the_dashboard_answers_only_to_its_own_names_and_takes_commands_only_from_known_origins():
    hosts = HostAllowlist(bind="192.0.2.5", origins=("https://hub.example.org/",), allow_hosts=("hub.lan",))
    for host in ("localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "192.0.2.5:8080", "HUB.example.org",
                 "hub.lan:9000"):
        assert hosts.allows(host), host
    for host in ("evil.example", "evil.example:8080", "127.0.0.2", "localhost.evil.example", "user@localhost", "",
                 None, "[::1", "localhost:99999"):
        assert not hosts.allows(host), host
    assert not HostAllowlist(bind="0.0.0.0").allows("0.0.0.0") and HostAllowlist(bind="::1").allows("[::1]:80")
    assert hosts.origin_ok(None, "localhost:8080")  # not a browser's cross-site request
    assert hosts.origin_ok("https://hub.example.org", "127.0.0.1:8080")  # --origin: the proxy's public URL
    assert hosts.origin_ok("http://localhost:8080", "localhost:8080")  # this server's own origin
    assert hosts.origin_ok("http://hub.lan", "hub.lan:80")
    for origin, host in (("http://evil.example", "evil.example"), ("http://evil.example", "localhost:8080"),
                         ("http://localhost:3000", "localhost:8080"), ("null", "localhost:8080"),
                         ("https://hub.example.org:8443", "127.0.0.1:8080")):
        assert not hosts.origin_ok(origin, host), (origin, host)
    for bad in ({"origins": ("hub.example.org",)}, {"allow_hosts": ("a/b",)}, {"bind": "[::1"}):
        with pytest.raises(OptionError):
            HostAllowlist(**bad)


def test_qai_hub_serve_help_says_how_to_start_and_reach_the_dashboard(capsys):
    from qai_hub.cli import main

    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--port" in out and "--bind" in out and "--login-file" in out and "TLS" in out
    assert "--trusted-proxy" in out and "--allow-host" in out and "DNS rebinding" in out


def test_messages_waiting_for_the_event_loop_are_bounded_by_count_and_by_bytes():
    from qai_hub.dashboard import PendingMessages

    pending = PendingMessages(max_messages=3, max_bytes=1000)
    assert pending.add("a", b"x" * 400, 1.0)  # the first wakes the taker
    assert not pending.add("b", b"x" * 400, 2.0)
    pending.add("c", b"x" * 400, 3.0)  # 1,200 bytes: the oldest goes
    assert [topic for topic, _, _ in pending.take()] == ["b", "c"] and pending.overflowed == 1
    for index in range(5):
        pending.add(str(index), b"", float(index))
    assert [topic for topic, _, _ in pending.take()] == ["2", "3", "4"] and pending.overflowed == 3
    pending.add("huge", b"x" * 5000, 9.0)  # one message over the bound is still delivered, alone
    assert [topic for topic, _, _ in pending.take()] == ["huge"] and pending.take() == []
