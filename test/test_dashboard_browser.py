"""The hub dashboard in a real browser (headless Chromium) against a real robot stack.

One module-wide stack: mosquitto, and a simulated robot (sim_vehicle, io_engine with a geofence,
mission_engine, hub_link: real nodes over real DDS) under one namespace, `qai-hub serve` as its own
process (start_dashboard, as `make demo` runs it), and the browser. A FakeRobot (a paho client speaking
hub_link's topics) sends the strings no real robot would, for the XSS probe.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import textwrap
import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest

from dashboard_stack import Browser, require_chromium, write_login_file
from fake_robots import FakeRobot
from harness import ProcessGroup, unique_namespace, wait_for
from hub_stack import HubKeys, start_broker
from qai_hub.client import BrokerOptions
from qai_hub.dashboard_process import start_dashboard
from robot_identity import TestRobots

# One worker runs this module: its tests share an expensive module fixture.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_dashboard_browser")]

FLEET, ROBOT = "pagefleet", "pagebot"
TIMEOUT = 60.0
FENCE = [-40.0, -40.0, 40.0, -40.0, 40.0, 40.0, -40.0, 40.0]


class CommandSpy:
    """Every command published on the fleet's command topics, as the broker carries them."""

    def __init__(self, port: int):
        self.commands: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(f"qai/{FLEET}/+/cmd/+", qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "the command spy's subscription"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.commands.append((message.topic, orjson.loads(message.payload)))

    def count(self) -> int:
        with self._lock:
            return len(self.commands)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PageStack:
    def __init__(self, directory):
        self.directory = directory
        self.group = ProcessGroup(directory)
        self.broker = start_broker(directory / "broker")
        self.keys = HubKeys(directory)
        self.robots = TestRobots(directory / "robots")
        self.namespace = unique_namespace()
        common = {"heartbeat_period": 0.2}
        self.group.start_node("sim_vehicle", namespace=self.namespace, parameters=common)
        self.group.start_node("io_engine", namespace=self.namespace,
                              parameters={**common, "geofence_polygon": FENCE})
        self.group.start_node("mission_engine", namespace=self.namespace, parameters={
            **common, "data_dir": str(directory / "data"), "robot_id": ROBOT, "engine_timeout": 1.5})
        self.group.start_node("intelligence_engine", namespace=self.namespace, parameters={
            **common, "model_store": str(directory / "models"), "policy_enabled": False,
            "model_keys": [self.keys.public]})
        self.hub_link = self.start_hub_link()
        self.dashboard = start_dashboard(write_login_file(directory), broker=BrokerOptions(port=self.broker.port),
                                         fleet=FLEET, robots=self.robots.registry_dir, key=self.keys.private,
                                         log_path=directory / "dashboard.log")
        self.spy = CommandSpy(self.broker.port)
        self.browser = Browser(directory)

    def start_hub_link(self):
        return self.group.start_node("hub_link", namespace=self.namespace, parameters={
            "heartbeat_period": 0.2, "data_dir": str(self.directory / "data"), "robot_id": ROBOT, "fleet": FLEET,
            "broker_port": self.broker.port, "status_period": 0.5, "reconnect_max": 1.0,
            "hub_public_keys": [self.keys.public], "robot_key": str(self.robots.key(ROBOT))})

    def logs(self) -> str:
        return "\n".join([f"--- {child.name} ({child.describe()})\n{child.log()[-2000:]}"
                          for child in self.group.children] + [f"--- dashboard\n{self.dashboard.log()[-3000:]}"])

    def robot(self, name: str = ROBOT) -> dict | None:
        return self.browser.js("const r = window.qaiDashboard.model.robots.get(arguments[0]);"
                               "return r ? {...r, shown: window.qaiDashboard.model.stateOf(arguments[0])} : null", name)

    def close(self) -> None:
        for close in (self.browser.quit, self.spy.close, self.dashboard.stop, self.group.stop_all, self.broker.stop):
            try:
                close()
            except Exception:  # noqa: BLE001 - stop everything else regardless
                pass


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    require_chromium()
    stack = PageStack(tmp_path_factory.mktemp("dashboard_page"))
    try:
        stack.browser.login(stack.dashboard.url)
        yield stack
    finally:
        stack.close()


def rows(page: PageStack) -> dict[str, str]:
    """Robot name -> its link pill, as the list shows them (text, read from the DOM)."""
    return dict(page.browser.js("return [...document.querySelectorAll('#robots tbody tr')].map("
                                "r => [r.querySelector('.robot-name').textContent, r.cells[1].querySelector('.pill')"
                                ".textContent])"))


def select_robot(page: PageStack, name: str) -> None:
    page.browser.js("[...document.querySelectorAll('#robots tbody tr')].find("
                    "r => r.querySelector('.robot-name').textContent === arguments[0]).click()", name)
    page.browser.wait("return document.getElementById('detail-name').textContent === arguments[0]", 10,
                      f"{name} selected", name)


def test_the_page_shows_the_robot_online_with_its_engines_and_geofence(page):
    wait_for(lambda: rows(page).get(ROBOT) == "online", TIMEOUT, lambda: f"{ROBOT} online in the list: {rows(page)}"
             f"\n{page.logs()}")
    # The capabilities stream: the engines' kinds (what the page checks missions against) and the fence.
    wait_for(lambda: "navigate" in {k for e in (page.robot() or {}).get("engines", []) for k in e["kinds"]}, TIMEOUT,
             lambda: f"the io_engine's kinds on the page: {page.robot()}\n{page.logs()}")
    fence = page.robot()["geofence"]
    assert [tuple(p) for p in fence["polygon"]] == [(-40, -40), (40, -40), (40, 40), (-40, 40)]
    assert fence["max_altitude"] == 120.0
    assert page.robot()["shown"] == "online"


def test_a_mission_uploaded_from_the_page_runs_on_the_robot_with_live_task_states_and_position(page, tmp_path):
    from selenium.webdriver.common.by import By

    wait_for(lambda: rows(page).get(ROBOT) == "online" and page.robot().get("engines"), TIMEOUT, "the robot")
    browser = page.browser
    select_robot(page, ROBOT)
    browser.wait("return document.getElementById('send-robot').value === arguments[0]", 10, "the send target", ROBOT)
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        tasks:
          - {id: a, kind: navigate, depends_on: [b], parameters: {waypoints: [[0, 0, 4]]}}
          - {id: b, kind: wait, depends_on: [a], parameters: {seconds: 1}}
        """))
    browser.driver.find_element(By.ID, "send-file").send_keys(str(bad))
    errors = browser.wait("const e = [...document.querySelectorAll('#send-errors li')].map(li => li.textContent);"
                          "return e.length ? e : null", 20, "the inline validation errors")
    assert any("dependency cycle" in error for error in errors), errors
    assert browser.js("return document.getElementById('send-button').disabled")

    fenced = tmp_path / "fenced.yaml"
    fenced.write_text("tasks:\n  - {id: far, kind: navigate, parameters: {waypoints: [[500, 0, 4]]}}\n")
    browser.driver.find_element(By.ID, "send-file").send_keys(str(fenced))
    warnings = browser.wait("const w = [...document.querySelectorAll('#send-warnings li')].map(li => li.textContent);"
                            "return w.length ? w : null", 20, "the warning from the robot's announced geofence")
    assert any("task 'far'" in warning and "outside the fence" in warning for warning in warnings), warnings

    start = browser.js("return window.qaiDashboard.model.poses.get(arguments[0])", ROBOT)
    mission = tmp_path / "flight.yaml"
    mission.write_text(textwrap.dedent("""\
        name: page flight
        tasks:
          - id: takeoff
            kind: navigate
            parameters: {waypoints: [[0, 0, 4]], speed: 3.0}
          - id: leg
            kind: navigate
            depends_on: [takeoff]
            parameters: {waypoints: [[10, 0, 4], [10, 6, 4]], speed: 4.0}
          - id: settle
            kind: wait
            depends_on: [leg]
            parameters: {seconds: 0.5}
        """))
    browser.driver.find_element(By.ID, "send-file").send_keys(str(mission))
    browser.wait("return !document.getElementById('send-button').disabled && "
                 "!document.querySelector('#send-errors li')", 20, "the mission checked")
    sent_before = page.spy.count()
    # Every text the send status shows, however briefly: "accepted" gives way to progress within milliseconds.
    browser.js("window.sendTexts = []; const el = document.getElementById('send-status'); new MutationObserver("
               "() => window.sendTexts.push(el.textContent)).observe(el, {childList: true, characterData: true, "
               "subtree: true});")
    browser.driver.find_element(By.ID, "send-button").click()
    # Task states as the page shows them (the graph's boxes), sampled while the mission runs.
    seen: dict[str, list[str]] = {}
    screenshot_taken = False
    deadline = time.monotonic() + 90
    while True:
        states = dict(browser.js("return [...document.querySelectorAll('#graph .node')].map("
                                 "g => [g.dataset.taskId, g.dataset.state])"))
        for task, state in states.items():
            if not seen.get(task) or seen[task][-1] != state:
                seen.setdefault(task, []).append(state)
        if states.get("leg") == "RUNNING" and not screenshot_taken:
            time.sleep(1.0)
            screenshot_taken = save_screenshot(page, tmp_path)
        if set(states) == {"takeoff", "leg", "settle"} and all(state == "SUCCEEDED" for state in states.values()):
            break
        assert time.monotonic() < deadline, f"every task SUCCEEDED on the page: {seen}\n{page.logs()}"
        time.sleep(0.1)
    # The robot's answer reaches the page: "accepted", or, when the mission's end overtook that reply on a
    # loaded machine, the outcome itself (a page never shows an older state after a newer one).
    browser.wait("return window.sendTexts.some((text) => text.includes('accepted') || "
                 "/mission \\S+ (succeeded|failed)/.test(text))", 20,
                 lambda: f"the robot's acceptance on the page: {browser.js('return window.sendTexts')}\n"
                 f"{page.logs()}")
    assert page.spy.count() == sent_before + 1
    topic, command = page.spy.commands[-1]
    assert topic == f"qai/{FLEET}/{ROBOT}/cmd/submit_mission" and command["signatures"][0]["alg"] == "ML-DSA-65"
    assert "RUNNING" in seen["leg"] and seen["leg"][-1] == "SUCCEEDED", seen
    assert seen["settle"][0] in ("PENDING", "READY") and "SUCCEEDED" in seen["settle"], seen
    # The edges of the graph are the robot's own (TaskState.depends_on).
    edges = browser.js("const m = window.qaiDashboard.model.currentMission(arguments[0]);"
                       "return m.tasks.map(t => [t.id, t.depends_on])", ROBOT)
    assert dict((task, deps) for task, deps in edges) == {"takeoff": [], "leg": ["takeoff"], "settle": ["leg"]}
    end = browser.js("return window.qaiDashboard.model.poses.get(arguments[0])", ROBOT)
    assert math.dist((start["x"], start["y"]), (end["x"], end["y"])) > 8.0, (start, end)
    assert math.dist((end["x"], end["y"]), (10, 6)) < 1.0, end
    track = browser.js("return window.qaiDashboard.model.tracks.get(arguments[0]).length", ROBOT)
    assert track > 10
    browser.wait("return [...document.querySelectorAll('#log tbody tr td:last-child')].some("
                 "td => /mission .* succeeded/.test(td.textContent))", 20, "the mission's end in the event log")
    assert screenshot_taken


def save_screenshot(page: PageStack, directory) -> bool:
    path = directory / "dashboard.png"
    page.browser.driver.save_screenshot(str(path))
    wanted = os.environ.get("QAI_DASHBOARD_SCREENSHOT")
    if wanted:
        shutil.copyfile(path, wanted)
    return path.stat().st_size > 10000


def test_a_model_deployed_from_the_page_reaches_the_robots_gate_and_its_answer_shows_the_active_version(page):
    """The operator picks a checkpoint's two files; the hub signs it; the robot's gate answers; the page shows it.

    The shipped endurance model is offered against itself: the gate keeps the active v0001 (no better by its
    margin), and the page shows that version from the robot's signed answer.
    """
    import base64

    from qai_intelligence.store import SHIPPED

    select_robot(page, ROBOT)
    before = page.spy.count()
    files = {name: base64.b64encode((SHIPPED / "endurance" / name).read_bytes()).decode() for name in
             ("model.pt", "meta.json")}
    page.browser.js("""
        window.confirm = () => true;
        const transfer = new DataTransfer();
        for (const [name, text] of Object.entries(arguments[0])) {
          const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], name));
        }
        document.getElementById("model-files").files = transfer.files;
        document.getElementById("deploy-model").click();""", files)
    wait_for(lambda: any(topic.endswith("/cmd/deploy_model") for topic, _ in page.spy.commands[before:]), TIMEOUT,
             lambda: f"the deploy command on the broker\n{page.logs()}")
    wait_for(lambda: (page.robot().get("models") or {}).get("endurance") == "v0001", TIMEOUT,
             lambda: f"the robot's answer in the page's model\n{page.logs()}")
    page.browser.wait("return document.getElementById('models').textContent === 'endurance v0001'", TIMEOUT,
                      "the robot's answer on the page")
    assert any("endurance model not changed" in text for text in page.browser.js(
        "return [...document.querySelectorAll('#log tbody tr')].map(r => r.textContent)")), "the log line"


def test_commands_without_a_login_or_without_the_csrf_token_are_refused_and_send_nothing(page):
    before = page.spy.count()
    body = {"robot": ROBOT, "text": "tasks:\n  - {id: w, kind: wait, parameters: {seconds: 0.1}}\n"}
    answers = page.browser.driver.execute_async_script("""
        const [body, done] = arguments;
        const post = (path, options) => fetch(path, {method: 'POST', body: JSON.stringify(body),
            headers: {'Content-Type': 'application/json', ...(options.headers || {})},
            credentials: options.credentials}).then(r => r.status);
        Promise.all([
            post('/api/missions', {credentials: 'omit'}),
            post('/api/cancel', {credentials: 'omit'}),
            post('/api/missions', {credentials: 'same-origin'}),
            post('/api/missions', {credentials: 'same-origin', headers: {'X-CSRF-Token': 'guessed'}}),
            fetch('/api/snapshot', {credentials: 'omit'}).then(r => r.status),
        ]).then(done);
        """, body)
    assert answers == [401, 401, 403, 403, 401]
    time.sleep(0.5)
    assert page.spy.count() == before


def test_robot_strings_holding_html_stay_inert_text(page):
    # A robot's name is one topic level, checked at enrolment: HTML cannot be one.
    with pytest.raises(ValueError, match="robot"):
        page.robots.key('"><img src=x onerror=window.__xss=1>')
    name = "html_robot"
    task_id = "<script>window.__xss=2</script><img/src=x/onerror=window.__xss=3>"  # ids have no spaces
    fake = FakeRobot(page.broker.port, FLEET, name, robots=page.robots)
    try:
        # Enrolled just now: the hub's registry takes it within its refresh, and a robot says its status
        # every few seconds (hub_link: status_period), as this one does until it is listed.
        wait_for(lambda: name in rows(page), TIMEOUT, lambda: f"the fake robot in the list: {rows(page)}",
                 step=lambda: (fake.status(), time.sleep(0.5)))
        fake.odom(3.0, -4.0, 2.0)
        fake.mission_state("<b>m</b>", [{"task_id": task_id, "kind": "<i>wait</i>", "state": 2,
                                         "message": "<svg onload=window.__xss=4>"},
                                        {"task_id": "after", "depends_on": [task_id], "state": 0}],
                           name="<iframe src=javascript:window.__xss=5>")
        fake.event("<u>code</u>", "<img src=x onerror=window.__xss=6>")
        select_robot(page, name)
        page.browser.wait("return [...document.querySelectorAll('#tasks .task-id')].some("
                          "td => td.textContent === arguments[0])", 20, "the task row", task_id)
        page.browser.wait("return [...document.querySelectorAll('#log td')].some("
                          "td => td.textContent.includes('<img src=x onerror=window.__xss=6>'))", 20, "the event")
        time.sleep(1.0)  # a broken page would have run the payloads by now
        page.browser.js("document.getElementById('log-quiet').click(); document.getElementById('log-quiet').click()")
        verdict = page.browser.js("""
            return {xss: window.__xss === undefined ? null : window.__xss,
                    injected: document.querySelectorAll('img, iframe, b, u, [onerror], [onload]').length,
                    scripts: [...document.scripts].map(s => s.getAttribute('src')),
                    graph: [...document.querySelectorAll('#graph .node')].map(g => g.dataset.taskId),
                    nodeText: [...document.querySelectorAll('#graph .node text')].map(t => t.textContent),
                    name: document.getElementById('detail-name').textContent};
            """)
        assert verdict["xss"] is None and verdict["injected"] == 0, verdict
        assert verdict["scripts"] == ["/static/app.js"], verdict
        assert verdict["name"] == name and task_id in verdict["graph"], verdict
        assert any(text.startswith("<script>") for text in verdict["nodeText"]), verdict
    finally:
        fake.close()


def test_the_page_stays_live_through_a_broker_restart_and_shows_the_last_will_of_a_robot_that_died(page):
    stats = "return window.qaiDashboard.stats.received.count"
    wait_for(lambda: rows(page).get(ROBOT) == "online", TIMEOUT, "the robot online")
    port = page.broker.port
    page.broker.stop()
    page.browser.wait("return document.getElementById('broker-state').textContent === 'disconnected'", 20,
                      "the page to show the broker lost")
    assert page.browser.js("return document.getElementById('live-state').textContent") == "live"
    page.broker = start_broker(page.directory / "broker", port)
    page.browser.wait("return document.getElementById('broker-state').textContent === 'connected'", 30,
                      lambda: f"the page to show the broker back\n{page.logs()}")
    before = page.browser.js(stats)
    page.browser.wait(f"return {stats.removeprefix('return ')} > arguments[0] + 20", 40,
                      lambda: f"poses flowing again after the restart\n{page.logs()}", before)
    assert page.browser.wait("return [...document.querySelectorAll('#log td')].some(td => "
                             "/regained the broker/.test(td.textContent))", 10, "the broker's return in the log")

    os.kill(page.hub_link.pid, signal.SIGKILL)  # no clean shutdown: the broker sends hub_link's last will
    wait_for(lambda: rows(page).get(ROBOT) == "offline", 30, lambda: f"{ROBOT} offline: {rows(page)}")
    assert page.robot()["reason"] == "connection lost"
    assert page.browser.wait("return [...document.querySelectorAll('#log tbody tr')].some(r => "
                             "r.cells[1].textContent === arguments[0] && /offline \\(connection lost\\)/"
                             ".test(r.cells[3].textContent))", 10, "the offline event", ROBOT)
    # The last position stays on the map while the robot is away, and it comes back when hub_link does.
    assert page.browser.js("return window.qaiDashboard.model.poses.has(arguments[0])", ROBOT)
    page.hub_link = page.start_hub_link()
    wait_for(lambda: rows(page).get(ROBOT) == "online", TIMEOUT, lambda: f"{ROBOT} back online\n{page.logs()}")
