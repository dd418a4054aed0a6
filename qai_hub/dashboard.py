"""qai-hub serve: the hub's dashboard in a browser. No rclpy import; no ROS on the hub machine.

One aiohttp process (asyncio: HTTP, WebSocket and uploads in one maintained library) with one paho-mqtt
connection to the fleet's broker. MQTT messages go, in batches, into a DashboardFeed (the hub's Fleet
model plus history and an event log, qai_hub.dashboard_feed); each browser gets a snapshot over a
WebSocket, then operations through its own Outbox (a browser that falls behind gets the latest state,
never an unbounded queue). Commands from the page are checked with the robot's own mission code
(qai_hub.mission_check) and signed here with the hub's ML-DSA-65 key, as `qai-hub send-mission` and
`qai-hub cancel` sign them. The page itself (qai_hub/dashboard_static) is plain JS, CSS and SVG/canvas,
loaded from this server only; robot strings go into the DOM as text.

HTTP interface (every route answers 421 to a Host header that is not one of the dashboard's names; every
/api route but login answers 401 without a session; POSTs and the WebSocket need the X-CSRF-Token header
of the session, and an Origin, when the browser sends one, that this server knows: qai_hub.dashboard_auth):
  GET  /                    the page; without a session, a redirect to /login
  GET  /login               the login page
  GET  /static/<file>       the page's JS and CSS
  GET  /healthz             "ok", without a session (a proxy's health check)
  POST /api/login           {"password"} -> a session cookie (HttpOnly, SameSite=Strict); 401, 429
  POST /api/logout
  GET  /api/session         {"fleet", "csrf", "signing", "broker"}
  GET  /api/snapshot        the fleet view (the WebSocket's first message)
  GET  /api/stats           the server's own counters
  GET  /ws                  WebSocket: {"type": "snapshot", ...}, then {"type": "update", "ops": [...]}
  POST /api/missions/check  {"text", "robot"?} -> {"ok", "errors", "warnings", "name", "tasks"}
  POST /api/missions        {"text", "robot"} -> 202 {"request_id"}; 422 {"errors"}, 409 robot offline
  POST /api/cancel          {"robot", "mission_id", "task_id"?, "reason"?} -> 202 {"request_id"}
  POST /api/models/deploy   {"robot", "files": {"meta.json": base64, "model.pt": base64}, "note"?} -> 202
                            {"request_id", "task"}: the checkpoint signed here (qai_hub.model_signing) and sent
  POST /api/models/rollback {"robot", "task"} -> 202 {"request_id"}

start_dashboard() runs it as a subprocess on a free port (for `make demo` and tests); DashboardThread serves
one from a thread of the calling process (tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from qai_hub import model_signing
from qai_hub.client import HubClient
from qai_hub.dashboard_auth import (HostAllowlist, LoginThrottle, OptionError, PasswordFileError, Session, Sessions,
                                    TrustedProxies, csrf_ok, read_password_file)
from qai_hub.dashboard_feed import DashboardFeed, FeedLimits, Outbox
from qai_hub.dashboard_process import DashboardError
from qai_hub.gaps import GapFiller
from qai_hub.protocol import ROOT, KeyFileError, Signer, check_name, command_topic, make_command
from qai_hub.registry import DEFAULT_REGISTRY, RobotRegistry

STATIC = Path(__file__).with_name("dashboard_static")
COOKIE = "qai_dashboard"
MAX_MISSION_TEXT = 1 << 20  # characters of an uploaded mission (qai-hub send-mission's file limit)
MAX_MQTT_PAYLOAD = 2 << 20  # larger messages are not sent to us (MQTT 5 maximum packet size)
MAX_PENDING = 200_000  # MQTT messages waiting for the event loop; past it the oldest are dropped and counted
MAX_PENDING_BYTES = 256 << 20  # and their payloads' bytes: 200,000 messages of 2 MB would not fit in memory
SESSION_EXPIRY = 300  # s the broker keeps our subscriptions and queued messages while we are away
DEFAULT_PASSWORD_FILE = "~/.config/qai-hub/dashboard.password"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

log = logging.getLogger("qai_hub.dashboard")


@dataclass
class DashboardOptions:
    """What `qai-hub serve` takes: the broker (as every qai-hub command), the keys, the web side."""

    host: str = "127.0.0.1"
    port: int = 18830
    fleet: str = "fleet"
    username: str = ""
    password_file: str = ""  # the MQTT password
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    key: str = "~/.config/qai-hub/hub.mldsa65.key"
    ed25519_key: str = ""
    robots: str = DEFAULT_REGISTRY  # the enrolled robots' public keys
    bind: str = "127.0.0.1"
    http_port: int = 8080
    login_file: str = DEFAULT_PASSWORD_FILE  # the operator's password
    cookie_secure: bool = False  # behind a TLS proxy: the cookie only travels over HTTPS
    origins: tuple[str, ...] = ()  # more origins allowed for POSTs and the WebSocket (a proxy's public URL)
    allow_hosts: tuple[str, ...] = ()  # more names it answers to (Host header), besides loopback, bind, origins
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks whose X-Forwarded-For names the client
    limits: FeedLimits = field(default_factory=FeedLimits)


class ApiError(web.HTTPException):
    """An error answered as JSON {"error": ...} with its status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any):
        self.status_code = status
        super().__init__(text=orjson.dumps({"error": message, **extra}).decode(), content_type="application/json",
                         headers=headers)


# -- MQTT ------------------------------------------------------------------------------------------

class PendingMessages:
    """MQTT messages between paho's thread and the event loop, bounded by count and bytes.

    Past either bound the oldest go first, counted in `overflowed`.
    """

    def __init__(self, max_messages: int = MAX_PENDING, max_bytes: int = MAX_PENDING_BYTES):
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self.overflowed = 0
        self._messages: deque = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, topic: str, payload: bytes, received: float) -> bool:
        """Keep a message; return whether the queue was empty (the taker needs waking)."""
        with self._lock:
            while self._messages and (len(self._messages) >= self.max_messages
                                      or self._bytes + len(payload) > self.max_bytes):
                self._bytes -= len(self._messages.popleft()[1])
                self.overflowed += 1
            self._messages.append((topic, payload, received))
            self._bytes += len(payload)
            return len(self._messages) == 1

    def take(self) -> list[tuple[str, bytes, float]]:
        with self._lock:
            batch, self._messages, self._bytes = list(self._messages), deque(), 0
            return batch


class MqttBridge:
    """The dashboard's one broker connection.

    It reconnects and resubscribes by itself, hands messages to the event loop in batches (one wake-up
    per batch, not per message), and publishes signed commands.
    """

    def __init__(self, options: DashboardOptions, loop: asyncio.AbstractEventLoop, on_batch, on_state):

        self.loop, self.on_batch, self.on_state = loop, on_batch, on_state
        self.filters = [f"{ROOT}/{options.fleet}/+/status", f"{ROOT}/{options.fleet}/+/telemetry/+",
                        f"{ROOT}/{options.fleet}/+/cmd/+/reply"]
        self.hub = HubClient(options, lambda topic, payload: None,
                             client_id=f"qai-dashboard-{options.fleet}-{uuid.uuid4().hex[:8]}")
        self.client = self.hub.client
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.2, 5.0)
        self.connected = False
        self.received = 0
        self._pending = PendingMessages()
        self._scheduled = False

    @property
    def overflowed(self) -> int:
        return self._pending.overflowed

    def start(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY
        properties.MaximumPacketSize = MAX_MQTT_PAYLOAD
        # connect_async: a broker that is not up yet is tried again, as after any loss.
        self.client.connect_async(self.hub.host, self.hub.port, keepalive=15, clean_start=False,
                                  properties=properties)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # On paho's thread.
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._state("disconnected", f"refused: {reason_code}")
            return
        client.subscribe([(topic, 1) for topic in self.filters])
        self.connected = True
        self._state("connected", "")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        self._state("disconnected", str(reason_code))

    def _state(self, state: str, detail: str) -> None:
        self.loop.call_soon_threadsafe(self.on_state, state, detail)

    def _on_message(self, client, userdata, message) -> None:
        self.received += 1
        self._pending.add(message.topic, message.payload, time.time())
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    # On the event loop.
    def _drain(self) -> None:
        self._scheduled = False  # before taking: a message appended from now on schedules the next drain
        batch = self._pending.take()
        if batch:
            self.on_batch(batch)

    async def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> bool:
        info = self.client.publish(topic, payload, qos=1)
        await asyncio.to_thread(info.wait_for_publish, timeout)
        return info.is_published()


# -- Browsers ----------------------------------------------------------------------------------------

class Browser:
    """One WebSocket: its outbox and the task that writes it (one frame per wake-up)."""

    def __init__(self, ws: web.WebSocketResponse, session: Session, limits: FeedLimits):
        self.ws, self.session = ws, session
        self.outbox = Outbox(limits.outbox_appends)
        self.wake = asyncio.Event()
        self.frames = 0
        self.resyncs = 0

    def put(self, ops: list[list[Any]]) -> None:
        self.outbox.put(ops)
        self.wake.set()

    async def write(self, snapshot, alive) -> None:
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            if not alive():  # the session ended (logout, expiry): so does its live view
                await self.ws.close(code=1008, message=b"session ended")
                return
            if self.outbox.resync:
                self.outbox.resync = False
                self.outbox.take()
                self.resyncs += 1
                frame = snapshot()
            else:
                ops = self.outbox.take()
                if not ops:
                    continue
                frame = {"type": "update", "now": time.time(), "ops": ops}
            try:
                await self.ws.send_str(orjson.dumps(frame).decode())  # waits while the socket's buffer is full
            except ConnectionError:  # the browser went away; its handler removes it
                return
            self.frames += 1


class Dashboard:
    """The server: the feed, the sessions, the signer, the broker link and the browsers.

    Raises OptionError when an option (--origin, --allow-host, --trusted-proxy, --bind) cannot be used.
    """

    def __init__(self, options: DashboardOptions, password_digest: bytes, signer: Signer | None,
                 signer_problem: str = ""):
        self.options = options
        self.feed = DashboardFeed(options.fleet, RobotRegistry(options.robots), options.limits)
        self.gaps = GapFiller(self.feed.fleet)
        self.sessions = Sessions(password_digest)
        self.throttle = LoginThrottle()
        self.hosts = HostAllowlist(bind=options.bind, origins=options.origins, allow_hosts=options.allow_hosts)
        self.proxies = TrustedProxies(options.trusted_proxies)
        self.signer, self.signer_problem = signer, signer_problem
        self.browsers: set[Browser] = set()
        self.bridge: MqttBridge | None = None
        self.processed = 0
        self.commands_sent = 0
        self.started = time.time()

    # -- Wiring ------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=2 * MAX_MISSION_TEXT + 4096, middlewares=[self._host, self._errors])
        app.on_response_prepare.append(_security_headers)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.add_routes([
            web.get("/", self.index), web.get("/login", self.login_page), web.get("/healthz", self.healthz),
            web.post("/api/login", self.login), web.post("/api/logout", self.logout),
            web.get("/api/session", self.session_info), web.get("/api/snapshot", self.snapshot),
            web.get("/api/stats", self.stats), web.get("/ws", self.websocket),
            web.post("/api/missions/check", self.check_mission), web.post("/api/missions", self.send_mission),
            web.post("/api/cancel", self.cancel), web.post("/api/models/deploy", self.deploy_model),
            web.post("/api/models/rollback", self.rollback_model),
        ])
        app.router.add_static("/static", STATIC, show_index=False, follow_symlinks=False)
        return app

    async def _on_startup(self, app) -> None:
        self.bridge = MqttBridge(self.options, asyncio.get_running_loop(), self._on_batch, self._on_broker)
        self.bridge.start()
        self._gap_task = asyncio.create_task(self._fill_gaps())

    async def _fill_gaps(self) -> None:
        """Ask robots for the telemetry that went missing (a broker that lost what it acknowledged)."""
        while True:
            await asyncio.sleep(1.0)
            if self.signer is None or self.bridge is None or not self.bridge.connected:
                continue
            for robot, stream, ranges in self.gaps.due(time.time()):
                try:
                    await self._publish_command(robot, "resend", {"stream": stream, "ranges": ranges})
                except ApiError:
                    break

    async def _on_shutdown(self, app) -> None:
        if getattr(self, "_gap_task", None) is not None:
            self._gap_task.cancel()
        for browser in list(self.browsers):
            await browser.ws.close(code=1001, message=b"server shutdown")
        if self.bridge is not None:
            await asyncio.to_thread(self.bridge.stop)

    def _on_batch(self, batch) -> None:
        ops: list[list[Any]] = []
        for topic, payload, received in batch:
            ops.extend(self.feed.on_message(topic, payload, received))
        self.processed += len(batch)
        self._broadcast(ops)

    def _on_broker(self, state: str, detail: str) -> None:
        self._broadcast(self.feed.on_broker(state, detail))

    def _broadcast(self, ops: list[list[Any]]) -> None:
        if ops:
            for browser in self.browsers:
                browser.put(ops)

    @web.middleware
    async def _host(self, request: web.Request, handler):
        """Answer 421 to a request for a name this server is not (a DNS-rebinding page sends its own)."""
        host = request.headers.get("Host")
        if not self.hosts.allows(host):
            raise ApiError(421, f"this dashboard does not answer to the host {(host or '')[:100]!r}; start it with "
                                "--allow-host NAME (or --origin URL) to be reached under that name")
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except ApiError:
            raise
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - one bad request costs only itself; the server keeps serving
            log.exception("error answering %s %s", request.method, request.path)
            raise ApiError(500, "internal error (see the server's log)") from None

    # -- Sessions ----------------------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _origin_ok(self, request: web.Request) -> bool:
        return self.hosts.origin_ok(request.headers.get("Origin"), request.headers.get("Host"))

    def _client(self, request: web.Request) -> tuple[str, str]:
        """Return the client's address and how it was found, for the log."""
        client = self.proxies.client(request.remote, request.headers.getall("X-Forwarded-For", []))
        return client, (client if client == request.remote else f"{client} (via {request.remote})")

    def _require(self, request: web.Request, csrf: bool = True) -> Session:
        session = self._session(request)
        if session is None:
            raise ApiError(401, "log in first")
        if csrf:
            if not self._origin_ok(request):
                raise ApiError(403, "cross-origin request refused")
            if not csrf_ok(session, request.headers.get("X-CSRF-Token")):
                raise ApiError(403, "missing or wrong CSRF token (X-CSRF-Token)")
        return session

    # -- Pages -------------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            raise web.HTTPSeeOther("/login")
        return web.FileResponse(STATIC / "index.html")

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "login.html")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def login(self, request: web.Request) -> web.Response:
        client, source = self._client(request)
        # Counted before the first await: attempts running at once are all counted, as a guesser sends them.
        wait = self.throttle.begin(client)
        if wait > 0:
            raise ApiError(429, f"too many failed logins; try again in {wait:.0f} s",
                           headers={"Retry-After": str(int(wait) + 1)})
        try:
            if not self._origin_ok(request):
                raise ApiError(403, "cross-origin request refused")
            password = (await _json_body(request)).get("password")
            if not isinstance(password, str):
                raise ApiError(400, "password: expected a string")
        except BaseException:  # no password was tried: the attempt is not a failure
            self.throttle.abandoned(client)
            raise
        session = self.sessions.login(password, source)
        if session is None:  # the attempt stays counted
            log.warning("failed dashboard login from %s", source)
            await asyncio.sleep(0.5)
            raise ApiError(401, "wrong password")
        self.throttle.succeeded(client)
        log.info("dashboard login from %s", source)
        response = web.json_response({"ok": True})
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", secure=self.options.cookie_secure,
                            path="/", max_age=int(self.sessions.lifetime))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = self._require(request)
        self.sessions.logout(session.token)
        for browser in [b for b in self.browsers if b.session.token == session.token]:
            await browser.ws.close(code=1008, message=b"logged out")
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def session_info(self, request: web.Request) -> web.Response:
        session = self._require(request, csrf=False)
        return web.json_response({
            "fleet": self.options.fleet, "csrf": session.csrf,
            "broker": f"{self.options.host}:{self.options.port}",
            "signing": self.signer.key_ids if self.signer else [], "signing_problem": self.signer_problem,
            "max_mission_text": MAX_MISSION_TEXT}, dumps=_dumps)

    async def snapshot(self, request: web.Request) -> web.Response:
        self._require(request, csrf=False)
        return web.json_response(self.feed.snapshot(), dumps=_dumps)

    async def stats(self, request: web.Request) -> web.Response:
        self._require(request, csrf=False)
        bridge = self.bridge
        return web.json_response({
            "mqtt_received": bridge.received if bridge else 0, "mqtt_overflowed": bridge.overflowed if bridge else 0,
            "processed": self.processed, "robots": len(self.feed.fleet.robots),
            "malformed": self.feed.fleet.malformed, "refused_robots": self.feed.fleet.refused_robots,
            "browsers": [{"frames": b.frames, "coalesced": b.outbox.coalesced, "resyncs": b.resyncs}
                         for b in self.browsers],
            "commands_sent": self.commands_sent, "sessions": len(self.sessions), "uptime_s": time.time() - self.started,
        })

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            raise ApiError(401, "log in first")
        if not self._origin_ok(request):
            raise ApiError(403, "cross-origin WebSocket refused")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False)
        await ws.prepare(request)
        browser = Browser(ws, session, self.options.limits)
        snapshot = _dumps(self.feed.snapshot())
        self.browsers.add(browser)  # with no await since the snapshot: every later operation reaches its outbox
        await ws.send_str(snapshot)
        writer = asyncio.create_task(browser.write(self.feed.snapshot,
                                                   lambda: self.sessions.get(session.token) is not None))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT and message.data == '{"type":"resync"}':
                    browser.outbox.resync = True
                    browser.wake.set()
        finally:
            self.browsers.discard(browser)
            writer.cancel()
            await ws.close()
        return ws

    # -- Commands ----------------------------------------------------------------------------------

    def _robot(self, body: dict[str, Any], required: bool = True) -> str:
        robot = body.get("robot")
        if robot in (None, "") and not required:
            return ""
        try:
            return check_name(robot, "robot")
        except ValueError as error:
            raise ApiError(400, str(error)) from None

    async def _check(self, body: dict[str, Any], robot: str):
        from qai_hub.mission_check import check_mission_text, kinds_from_engines

        mission_text = body.get("text")
        if not isinstance(mission_text, str):
            raise ApiError(400, "text: expected the mission document (YAML or JSON) as a string")
        if len(mission_text) > MAX_MISSION_TEXT:
            raise ApiError(413, f"text: {len(mission_text)} characters, over the {MAX_MISSION_TEXT} a mission may "
                                "have here")
        view = self.feed.fleet.robots.get(robot) if robot else None
        engines = dict(view.engines) if view is not None else {}
        where = body.get("name") if isinstance(body.get("name"), str) else "mission"
        return await asyncio.to_thread(lambda: check_mission_text(mission_text, where[:100],
                                                                  kinds_from_engines(engines) or None))

    async def check_mission(self, request: web.Request) -> web.Response:
        self._require(request)
        body = await _json_body(request)
        check = await self._check(body, self._robot(body, required=False))
        return web.json_response(check.as_json(), dumps=_dumps)

    async def send_mission(self, request: web.Request) -> web.Response:
        session = self._require(request)
        body = await _json_body(request)
        robot = self._robot(body)
        check = await self._check(body, robot)
        if not check.ok:
            raise ApiError(422, "the mission is not valid; nothing was sent", **check.as_json())
        request_id = await self._send(robot, "submit_mission", {"mission": check.document}, session,
                                      f"mission {check.name or '(unnamed)'} ({len(check.tasks)} tasks)")
        return web.json_response({"request_id": request_id, "warnings": check.warnings}, status=202)

    async def cancel(self, request: web.Request) -> web.Response:
        session = self._require(request)
        body = await _json_body(request)
        robot = self._robot(body)
        command: dict[str, Any] = {}
        for key, limit, required in (("mission_id", 128, True), ("task_id", 128, False), ("reason", 300, False)):
            value = body.get(key)
            if value in (None, "") and not required:
                continue
            if not isinstance(value, str) or not value or len(value) > limit:
                raise ApiError(400, f"{key}: expected a string of 1-{limit} characters")
            command[key] = value
        what = f"cancel {command['mission_id']}" + (f" task {command['task_id']}" if "task_id" in command else "")
        request_id = await self._send(robot, "cancel_mission", command, session, what)
        return web.json_response({"request_id": request_id}, status=202)

    async def deploy_model(self, request: web.Request) -> web.Response:
        session = self._require(request)
        body = await _json_body(request)
        robot = self._robot(body)
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > model_signing.MAX_NOTE:
            raise ApiError(400, f"note: expected text of at most {model_signing.MAX_NOTE} characters")
        try:
            files = model_signing.decode_files(body.get("files"))
            meta = orjson.loads(files["meta.json"])
        except (model_signing.ModelRejected, orjson.JSONDecodeError) as error:
            raise ApiError(400, f"not a checkpoint: {str(error)[:200]}") from None
        config = meta.get("config") if isinstance(meta, dict) else None
        task = config.get("task") if isinstance(config, dict) else None
        if task not in model_signing.TASKS:
            raise ApiError(400, f"meta.json: config.task: expected one of {', '.join(model_signing.TASKS)}")
        if self.signer is None:
            raise ApiError(503, f"no signing key: {self.signer_problem}")
        signature = await asyncio.to_thread(model_signing.sign, self.signer, task, files, note or "from the dashboard")
        command = {"task": task, "files": model_signing.encode_files(files), "signature": signature}
        request_id = await self._send(robot, "deploy_model", command, session, f"the {task} model (signed)")
        return web.json_response({"request_id": request_id, "task": task}, status=202)

    async def rollback_model(self, request: web.Request) -> web.Response:
        session = self._require(request)
        body = await _json_body(request)
        robot = self._robot(body)
        task = body.get("task")
        if task not in model_signing.TASKS:
            raise ApiError(400, f"task: expected one of {', '.join(model_signing.TASKS)}")
        request_id = await self._send(robot, "rollback_model", {"task": task}, session, f"roll back the {task} model")
        return web.json_response({"request_id": request_id}, status=202)

    async def _send(self, robot: str, verb: str, body: dict[str, Any], session: Session, summary: str) -> str:
        if self.signer is None:
            raise ApiError(503, f"no signing key: {self.signer_problem}")
        if self.bridge is None or not self.bridge.connected:
            raise ApiError(503, "the dashboard is not connected to the broker; nothing was sent")
        view = self.feed.fleet.robots.get(robot)
        if view is None or not view.online:
            state = "unknown to this hub" if view is None else view.status.get("state", "not online")
            raise ApiError(409, f"robot {robot} is {state}; nothing was sent")
        request_id = await self._publish_command(robot, verb, body)
        self.commands_sent += 1
        log.info("command %s: %s to %s (%s), from the session of %s", request_id, verb, robot, summary,
                 session.client)
        self._broadcast(self.feed.on_command(robot, verb, request_id, summary))
        return request_id

    async def _publish_command(self, robot: str, verb: str, body: dict[str, Any]) -> str:
        topic = command_topic(self.options.fleet, robot, verb)
        command = await asyncio.to_thread(make_command, self.signer, fleet=self.options.fleet, robot=robot, verb=verb,
                                          body=body, topic=topic)
        self.feed.fleet.expect(command)
        if not await self.bridge.publish(topic, orjson.dumps(command)):
            raise ApiError(504, "the broker did not acknowledge the command in time")
        return command["id"]


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "expected application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"the body is not JSON: {str(error)[:100]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.path.startswith("/api/") or request.path in ("/", "/login"):
        headers["Cache-Control"] = "no-store"


def is_loopback(bind: str) -> bool:
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


def build(options: DashboardOptions) -> tuple[Dashboard, list[str]]:
    """Return the server for `options` and warnings to print.

    Raises PasswordFileError when it cannot log anyone in, OptionError when an option cannot be used.
    """
    password_digest, warnings = read_password_file(options.login_file,
                                                   create=options.login_file == DEFAULT_PASSWORD_FILE)
    try:
        signer, problem = Signer.from_files(options.key, options.ed25519_key or None), ""
    except KeyFileError as error:
        signer, problem = None, f"{error} (create one with: qai-hub keygen)"
        warnings.append(f"commands are off: {problem}")
    dashboard = Dashboard(options, password_digest, signer, problem)
    if not is_loopback(options.bind):
        warnings.append(f"serving on {options.bind}, not loopback: put it behind a TLS reverse proxy "
                        "(docs/dashboard.md) and use --cookie-secure; it answers only to the names "
                        f"{', '.join(sorted(dashboard.hosts.names))} (more with --allow-host)")
    return dashboard, warnings


def serve(options: DashboardOptions) -> int:
    """Run the dashboard until SIGINT or SIGTERM; return an exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        dashboard, warnings = build(options)
    except PasswordFileError as error:
        print(f"qai-hub: login password: {error}", file=sys.stderr)
        return 2
    except OptionError as error:
        print(f"qai-hub: {error}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"qai-hub: {warning}", file=sys.stderr)
    host = f"[{options.bind}]" if ":" in options.bind else options.bind
    print(f"dashboard on http://{host}:{options.http_port}/ (fleet {options.fleet}, broker "
          f"{options.host}:{options.port}); log in with the password in {options.login_file}", flush=True)
    web.run_app(dashboard.make_app(), host=options.bind, port=options.http_port, print=None, access_log=None,
                shutdown_timeout=3.0)
    return 0


class DashboardThread:
    """A Dashboard served from a thread of this process (tests): `.url`, and stop()."""

    def __init__(self, dashboard: Dashboard, bind: str = "127.0.0.1", port: int = 0):
        self._started, self._stop = threading.Event(), threading.Event()
        self.url = ""

        async def main() -> None:
            runner = web.AppRunner(dashboard.make_app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, bind, port).start()
            self.url = f"http://{bind}:{runner.addresses[0][1]}/"
            self._started.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True, name="dashboard")
        self._thread.start()
        if not self._started.wait(15):
            raise DashboardError("the dashboard did not start")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
