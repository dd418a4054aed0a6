"""qai-hub serve without a browser: its HTTP and WebSocket interface, in this process, with a real mosquitto.

Commands the dashboard signs are checked by the robot's own CommandGate (qai_io.hub_link.commands) with the
hub's public key; robots are FakeRobots (paho clients speaking hub_link's topics).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.cookiejar
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
import pytest

from dashboard_stack import PASSWORD, Client, write_login_file
from fake_robots import FakeRobot
from harness import wait_for
from hub_stack import start_broker
from qai_hub.dashboard import DashboardOptions, DashboardThread, build
from qai_hub import model_signing
from qai_hub.protocol import Keyring, generate_key_pair
from qai_intelligence.store import SHIPPED
from qai_io.hub_link.commands import CommandGate, NonceStore
from robot_identity import TestRobots

# One worker runs this module: its tests share an expensive module fixture.
pytestmark = pytest.mark.xdist_group("test_dashboard_server")

FLEET = "srv"
TIMEOUT = 20.0


class RobotInbox:
    """What a robot would receive on its command topics, checked by the robot's own gate."""

    def __init__(self, port: int, robot: str, keys_dir, tmp_path):
        keyring, errors, missing = Keyring.from_files([str(keys_dir / "hub.pub")])
        assert not errors and not missing
        self.gate = CommandGate(fleet=FLEET, robot=robot, keyring=keyring, nonces=NonceStore(tmp_path / "nonces.db"))
        self.raw: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(f"qai/{FLEET}/{robot}/cmd/+", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self._take(m.topic, m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def _take(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.raw.append((topic, payload))

    def verified(self, index: int):
        topic, payload = self.raw[index]
        return self.gate.check(topic, payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.gate.nonces.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dashboard_server")
    broker = start_broker(directory / "broker")
    generate_key_pair(directory / "hub.key", directory / "hub.pub")
    robots = TestRobots(directory / "robots")
    robots.key("r1"), robots.key("r2")  # enrolled on this hub
    options = DashboardOptions(port=broker.port, fleet=FLEET, key=str(directory / "hub.key"), http_port=0,
                               login_file=str(write_login_file(directory)), robots=str(robots.registry_dir))
    dashboard, warnings = build(options)
    assert warnings == []
    served = DashboardThread(dashboard)
    robot = FakeRobot(broker.port, FLEET, "r1", robots=robots)
    robot.status()
    try:
        wait_for(lambda: "r1" in dashboard.feed.fleet.robots and dashboard.bridge.connected, TIMEOUT,
                 "the dashboard to hear r1")
        yield {"url": served.url, "dashboard": dashboard, "broker": broker, "robot": robot, "dir": directory,
               "robots": robots}
    finally:
        robot.close()
        served.stop()
        broker.stop()


def test_nothing_but_the_login_answers_without_a_session(server):
    client = Client(server["url"])
    status, _, headers = client.request("GET", "/")
    assert status == 303 and headers["Location"] == "/login"
    for method, path in (("GET", "/api/session"), ("GET", "/api/snapshot"), ("GET", "/api/stats"), ("GET", "/ws"),
                         ("POST", "/api/missions"), ("POST", "/api/missions/check"), ("POST", "/api/cancel"),
                         ("POST", "/api/models/deploy"), ("POST", "/api/models/rollback"), ("POST", "/api/logout")):
        status, data, _ = client.request(method, path, {"robot": "r1", "text": "x", "mission_id": "m"}
                                         if method == "POST" else None)
        assert (status, data.get("error")) == (401, "log in first"), (method, path)
    assert client.request("GET", "/healthz")[0] == 200 and client.request("GET", "/login")[0] == 200
    assert client.request("POST", "/api/login", {"password": "not the password"})[0] == 401


def test_a_session_still_needs_its_csrf_token_and_this_origin_for_every_command(server):
    client = Client(server["url"])
    client.login()
    body = {"robot": "r1", "mission_id": "m1"}
    refused = (403, {"error": "missing or wrong CSRF token (X-CSRF-Token)"})
    assert client.post("/api/cancel", body, csrf=False) == refused
    assert client.post("/api/cancel", body, csrf=False, **{"X-CSRF-Token": "a" * 43})[0] == 403
    assert client.post("/api/cancel", body, Origin="http://evil.example")[0] == 403
    other = Client(server["url"])
    other.login()
    assert other.csrf != client.csrf
    other.csrf = client.csrf  # another session's token is not this session's
    assert other.post("/api/cancel", body)[0] == 403
    status, _ = client.post("/api/logout", {})
    assert status == 200 and client.request("GET", "/api/session")[0] == 401


def test_pages_forbid_inline_script_framing_and_sniffing(server):
    client = Client(server["url"])
    client.login()
    for path in ("/", "/login", "/static/app.js", "/api/session"):
        status, _, headers = client.request("GET", path)
        assert status == 200, path
        assert "script-src 'self'" in headers["Content-Security-Policy"] and "'unsafe-inline'" not in \
            headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    cookie = next(iter(client.cookies))
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite") == "Strict"
    assert client.request("GET", "/static/../dashboard.py")[0] == 404


def test_a_mission_is_checked_then_signed_so_the_robots_own_gate_accepts_it(server, tmp_path):
    client = Client(server["url"])
    client.login()
    inbox = RobotInbox(server["broker"].port, "r1", server["dir"], tmp_path)
    try:
        bad = "tasks:\n  - {id: a, kind: wait, depends_on: [a]}\n"
        status, data = client.post("/api/missions/check", {"robot": "r1", "text": bad})
        assert status == 200 and not data["ok"] and "a task cannot depend on itself" in data["errors"][0]
        status, data = client.post("/api/missions", {"robot": "r1", "text": bad})
        assert status == 422 and data["errors"] and not inbox.raw
        text = "name: hub test\ntasks:\n  - {id: w, kind: wait, deadline_in: 60, parameters: {seconds: 0.5}}\n"
        status, data = client.post("/api/missions", {"robot": "r1", "text": text})
        assert status == 202, data
        wait_for(lambda: inbox.raw, TIMEOUT, "the command at the robot")
        command = inbox.verified(0)
        assert command.verb == "submit_mission" and command.id == data["request_id"]
        assert command.body == {"mission": {"name": "hub test", "tasks": [
            {"id": "w", "kind": "wait", "deadline_in": 60, "parameters": {"seconds": 0.5}}]}}
        status, data = client.post("/api/cancel", {"robot": "r1", "mission_id": "m1", "task_id": "w"})
        assert status == 202
        wait_for(lambda: len(inbox.raw) == 2, TIMEOUT, "the cancel at the robot")
        cancel = inbox.verified(1)
        assert cancel.verb == "cancel_mission" and cancel.body["mission_id"] == "m1" and cancel.body["task_id"] == "w"
        entries = [e for e in server["dashboard"].feed.events if e["kind"] == "command"]
        assert [e["request_id"] for e in entries[-2:]] == [command.id, cancel.id]
    finally:
        inbox.close()
    assert client.post("/api/missions", {"robot": "nobody", "text": text})[0] == 409
    assert client.post("/api/missions", {"robot": "<b>", "text": text})[0] == 400
    assert client.post("/api/missions", {"robot": "r1", "text": "x" * ((1 << 20) + 1)})[0] == 413
    assert client.post("/api/cancel", {"robot": "r1", "mission_id": ""})[0] == 400


def test_a_model_from_the_page_is_signed_so_the_robot_accepts_it_and_its_answer_shows_the_active_version(
        server, tmp_path):
    client = Client(server["url"])
    client.login()
    files = model_signing.read_files(SHIPPED / "endurance")
    encoded = model_signing.encode_files(files)
    inbox = RobotInbox(server["broker"].port, "r1", server["dir"], tmp_path)
    try:
        for body, reason in (({"robot": "r1", "files": {"model.pt": encoded["model.pt"]}}, "not a checkpoint"),
                             ({"robot": "r1", "files": {**encoded, "meta.json": "bm90IGpzb24="}}, "not a checkpoint"),
                             ({"robot": "r1", "files": encoded, "note": "x" * 300}, "note")):
            status, data = client.post("/api/models/deploy", body)
            assert status == 400 and reason in data["error"], data
        assert client.post("/api/models/rollback", {"robot": "r1", "task": "weather"})[0] == 400
        assert not inbox.raw
        status, data = client.post("/api/models/deploy", {"robot": "r1", "files": encoded})
        assert status == 202 and data["task"] == "endurance", data
        wait_for(lambda: inbox.raw, TIMEOUT, "the model at the robot")
        command = inbox.verified(0)  # the command's signature, by the robot's own gate
        assert command.verb == "deploy_model" and command.body["task"] == "endurance"
        keyring, _, _ = Keyring.from_files([str(server["dir"] / "hub.pub")])
        assert model_signing.verify(command.body["signature"], model_signing.decode_files(command.body["files"]),
                                    keyring, "endurance")  # and the model's own
        status, data = client.post("/api/models/rollback", {"robot": "r1", "task": "anomaly"})
        assert status == 202
        wait_for(lambda: len(inbox.raw) == 2, TIMEOUT, "the roll back at the robot")
        assert inbox.verified(1).body == {"task": "anomaly"}
    finally:
        inbox.close()
    # The robot's signed answer names the active version: the page shows it.
    reply = {"id": command.id, "nonce": command.nonce, "verb": "deploy_model", "robot": "r1", "status": "succeeded",
             "stamp": time.time(), "message": "endurance v0002 activated",
             "model": {"task": "endurance", "activated": True, "active_version": "v0002",
                       "previous_version": "v0001", "metrics": {"candidate": "{}"}}}
    server["robot"]._publish("qai/srv/r1/cmd/deploy_model/reply", reply)
    wait_for(lambda: client.request("GET", "/api/snapshot")[1]["robots"]["r1"].get("models") == {"endurance": "v0002"},
             TIMEOUT, "the active version in the snapshot")
    assert any("endurance model v0002 active (was v0001)" in e["text"] for e in server["dashboard"].feed.events)


def test_the_websocket_sends_a_snapshot_then_live_operations_and_the_last_will(server):
    import aiohttp

    client = Client(server["url"])
    client.login()
    fake = FakeRobot(server["broker"].port, FLEET, "r2", robots=server["robots"])
    fake.status()

    async def follow() -> list[dict]:
        frames = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server["url"] + "ws", headers={"Cookie": client.cookie()}) as ws:
                frames.append(orjson.loads((await ws.receive(timeout=TIMEOUT)).data))
                await asyncio.to_thread(fake.odom, 4.0, 5.0)
                await asyncio.to_thread(fake.kill)
                while True:
                    frame = orjson.loads((await ws.receive(timeout=TIMEOUT)).data)
                    frames.append(frame)
                    if any(op[0] == "event" and op[1]["kind"] == "offline" and op[1]["robot"] == "r2"
                           for op in frame.get("ops", [])):
                        return frames

    wait_for(lambda: "r2" in server["dashboard"].feed.fleet.robots, TIMEOUT, "r2 heard")
    frames = asyncio.run(asyncio.wait_for(follow(), 3 * TIMEOUT))
    assert frames[0]["type"] == "snapshot" and frames[0]["robots"]["r2"]["state"] == "online"
    ops = [op for frame in frames[1:] for op in frame["ops"]]
    pose = next(op for op in ops if op[0] == "pose" and op[1] == "r2")[2]
    assert (pose["x"], pose["y"], pose["seq"]) == (4.0, 5.0, 1)
    robot = [op[2] for op in ops if op[0] == "robot" and op[1] == "r2" and "state" in op[2]][-1]
    assert robot["state"] == "offline" and robot["reason"] == "connection lost"
    # A browser without the cookie cannot open it.
    with pytest.raises(aiohttp.WSServerHandshakeError):
        asyncio.run(_open_without_cookie(server["url"]))


async def _open_without_cookie(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "ws"):
            pass


def test_logins_are_throttled_after_repeated_failures(tmp_path):
    options = DashboardOptions(port=1, fleet=FLEET, key=str(tmp_path / "none"), http_port=0,
                               login_file=str(write_login_file(tmp_path)))
    dashboard, warnings = build(options)
    assert any("commands are off" in warning for warning in warnings)
    served = DashboardThread(dashboard)
    try:
        client = Client(served.url)
        codes = [client.request("POST", "/api/login", {"password": f"guess {n}"})[0] for n in range(6)]
        assert codes == [401] * 5 + [429]
        status, data, headers = client.request("POST", "/api/login", {"password": PASSWORD})
        assert status == 429 and int(headers["Retry-After"]) > 0  # even the right one, until the window passes
    finally:
        served.stop()


@contextlib.contextmanager
def lone_dashboard(directory, **options):
    """Serve a dashboard of its own (no broker: commands are off), for a test that uses up its login allowance."""
    dashboard, _ = build(DashboardOptions(port=1, fleet=FLEET, key=str(directory / "none"), http_port=0,
                                          login_file=str(write_login_file(directory)), **options))
    served = DashboardThread(dashboard)
    try:
        yield served.url
    finally:
        served.stop()


def test_behind_a_trusted_proxy_a_guesser_does_not_lock_out_the_operator(tmp_path):
    # The proxy (nginx on this machine) connects from 127.0.0.1 and appends the address it saw.
    with lone_dashboard(tmp_path, trusted_proxies=("127.0.0.1",)) as url:
        def login(password: str, forwarded_for: str) -> int:
            return Client(url).request("POST", "/api/login", {"password": password},
                                       {"X-Forwarded-For": forwarded_for})[0]

        with ThreadPoolExecutor(5) as pool:
            assert list(pool.map(login, [f"guess {n}" for n in range(5)], ["203.0.113.9"] * 5)) == [401] * 5
        assert login(PASSWORD, "203.0.113.9") == 429
        assert login(PASSWORD, "198.51.100.7, 203.0.113.9") == 429  # what is left of the proxy's hop is anyone's
        assert login(PASSWORD, "198.51.100.7") == 200


def logins_in_flight_at_once(url: str, count: int, password: str) -> list[int]:
    """Send `count` logins' headers, then their bodies: all are under way before any password arrives."""
    parts = urlsplit(url)
    body = orjson.dumps({"password": password})
    connections = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT) for _ in range(count)]
    try:
        for connection in connections:
            connection.putrequest("POST", "/api/login")
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
        time.sleep(0.5)  # the server starts every handler, each waiting for its body
        for connection in connections:
            connection.send(body)
        return [connection.getresponse().status for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def test_wrong_logins_sent_at_once_get_no_more_guesses_than_one_at_a_time(tmp_path):
    with lone_dashboard(tmp_path) as url:
        statuses = logins_in_flight_at_once(url, 30, "wrong guess")
    assert sorted(statuses) == [401] * 5 + [429] * 25


def test_a_request_for_a_name_this_dashboard_does_not_answer_to_is_refused_on_every_route(server):
    import aiohttp

    port = urlsplit(server["url"]).port
    client = Client(server["url"])
    client.login()
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    for method, path, body in (("GET", "/", None), ("POST", "/api/login", {"password": PASSWORD}),
                               ("GET", "/api/snapshot", None), ("GET", "/ws", None), ("GET", "/healthz", None),
                               ("POST", "/api/cancel", {"robot": "r1", "mission_id": "m1"})):
        status, data, _ = client.request(method, path, body, {**evil, "X-CSRF-Token": client.csrf})
        assert status == 421 and "evil.example" in data["error"], (method, path)

    async def open_live_view() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server["url"] + "ws", headers={**evil, "Cookie": client.cookie()}):
                pass

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(open_live_view())
    assert refused.value.status == 421
    local = Client(server["url"])
    own = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    assert local.request("POST", "/api/login", {"password": PASSWORD}, own)[0] == 200
    status, session, _ = local.request("GET", "/api/session", None, own)
    assert status == 200 and local.request("GET", "/api/snapshot", None, own)[0] == 200
    local.csrf = session["csrf"]
    text = "tasks:\n  - {id: w, kind: wait, parameters: {seconds: 1}}\n"
    assert local.post("/api/missions/check", {"text": text}, **own)[0] == 200
    assert local.post("/api/missions/check", {"text": text}, **{**own, "Origin": "http://evil.example"})[0] == 403
    assert local.post("/api/missions/check", {"text": text}, **{**own, "Origin": "http://localhost:3000"})[0] == 403


def test_logging_out_ends_the_live_view_of_that_session(server):
    import aiohttp

    client = Client(server["url"])
    client.login()

    cookie = client.cookie()

    async def follow() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server["url"] + "ws", headers={"Cookie": cookie}) as ws:
                assert orjson.loads((await ws.receive(timeout=TIMEOUT)).data)["type"] == "snapshot"
                assert (await asyncio.to_thread(client.post, "/api/logout", {}))[0] == 200
                while (await ws.receive(timeout=TIMEOUT)).type not in (aiohttp.WSMsgType.CLOSE,
                                                                       aiohttp.WSMsgType.CLOSED):
                    pass
            with pytest.raises(aiohttp.WSServerHandshakeError):  # and the old cookie opens nothing
                await session.ws_connect(server["url"] + "ws", headers={"Cookie": cookie})

    asyncio.run(asyncio.wait_for(follow(), 2 * TIMEOUT))
