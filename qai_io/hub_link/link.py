"""The robot's MQTT connection to the hub, with the on-disk queue behind it. No rclpy import.

HubLink runs one thread that owns both the paho-mqtt 2.x client (CallbackAPIVersion.VERSION2, driven
through paho's external-loop API: select, loop_read, loop_write, loop_misc) and the DiskQueue, so no
socket or SQLite handle is ever shared between threads. The thread
- connects (MQTT 5, or 3.1.1 when the broker refuses 5 and the protocol is "auto"; TLS with a CA and a
  client certificate; username and password; TCP_NODELAY on every socket), reconnects with exponential
  backoff and jitter, resubscribes after every connect, keeps the retained status up to date (its last
  will says offline), and probes the round trip through the broker (a ping to its own topic; no echo
  within `ping_timeout` means the connection is dead even if TCP says otherwise, and it reconnects);
- commits what `enqueue` handed it, publishes from the queue (live data first; the backlog an outage
  left, oldest first within priority, at `drain_rate` messages a second, so live data is never
  starved), keeps at most `max_inflight` messages in flight, takes a row out of the queue only when the
  broker acknowledged it (QoS 1) or it was written (QoS 0), keeping it a while as history so the hub can
  ask for it again (`resend`: a broker that acknowledged and then lost it), and reports every message it
  will never send (evicted at the bound, expired, refused, no longer kept) on the drops stream, as
  sequence ranges, signed with the robot's key (`sign`).

`enqueue(..., sealed=True)` also notes each message's digest (qai_hub.protocol.telemetry_digest) until the
node takes them for a seal (`take_seal`), so the hub can check that telemetry is the robot's own.

A live message is published as soon as it is taken and committed in the same pass: a crash between the
two can only lose what was neither on disk nor sent, which `enqueue` never acknowledged as queued.
`enqueue`, `publish_status`, `stats` and `stop` may be called from any thread; they hand over and wake
the link's thread through a pipe.
"""

from __future__ import annotations

import os
import random
import select
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from qai_hub.protocol import (DROP_REPORT_TYPE, DROPS_STREAM, RobotTopics, compress_ranges, drop_report, merge_ranges,
                              set_tcp_nodelay, telemetry_digest, telemetry_payload)
from qai_io.hub_link.queue import DiskQueue, Item, Row
from qai_io.hub_link.streams import REPLY_PRIORITY

PROTOCOLS = ("auto", "5", "3.1.1")
DROPS_TTL = 30 * 86400.0
RESEND_TTL = 3600.0  # s a message put back in the queue for a resend stays worth sending
_EXPIRE_PERIOD = 1.0  # s between TTL sweeps
_BATCH = 2000  # rows committed or taken at most per pass
_STABLE_CONNECTION = 10.0  # s connected after which the backoff starts again from its first step
_MQTT_MAX_PACKET = 268435455


@dataclass(frozen=True)
class LinkConfig:
    host: str
    port: int
    client_id: str
    status_topic: str
    offline_payload: bytes  # the last will, retained
    ping_topic: str
    drops_topic: str
    subscriptions: tuple[str, ...] = ()  # topic filters, QoS 1
    protocol: str = "auto"
    keepalive: int = 15
    username: str = ""
    password: str = ""
    password_file: str = ""  # read when the client is made; takes the place of `password`
    tls_ca: str = ""  # TLS when any of the three is set; empty CA with TLS: the system's CAs
    tls_cert: str = ""
    tls_key: str = ""
    tls: bool = False
    connect_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    session_expiry: int = 300  # s the broker keeps our session (subscriptions, queued commands) while away
    max_inflight: int = 1000
    drain_rate: float = 2000.0  # backlog messages per second after an outage
    max_pending: int = 10000  # handed to enqueue, not yet committed
    ping_period: float = 5.0
    ping_timeout: float = 30.0
    max_incoming_bytes: int = 1 << 20  # MQTT 5: the broker sends nothing larger

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.tls_ca or self.tls_cert or self.tls_key)


def config_from_parameters(param: Callable[[str], Any], topics: RobotTopics,
                           offline: bytes | None = None) -> LinkConfig:
    """Return the LinkConfig hub_link's parameters (qai_io.hub_parameters) describe; `offline`: the last will."""
    if offline is None:
        offline = orjson.dumps({"state": "offline", "robot": topics.robot, "fleet": topics.fleet,
                                "reason": "connection lost"})
    return LinkConfig(
        host=param("broker_host"), port=param("broker_port"), client_id=f"qai-{topics.fleet}-{topics.robot}",
        status_topic=topics.status, offline_payload=offline, ping_topic=topics.ping,
        drops_topic=topics.telemetry(DROPS_STREAM), subscriptions=tuple(topics.command_filters()),
        protocol=param("mqtt_protocol"), keepalive=param("keepalive"), username=param("username"),
        password_file=param("password_file"), tls=param("tls"), tls_ca=param("tls_ca"), tls_cert=param("tls_cert"),
        tls_key=param("tls_key"), connect_timeout=param("connect_timeout"), backoff_initial=param("reconnect_initial"),
        backoff_max=param("reconnect_max"), session_expiry=param("session_expiry"),
        max_inflight=param("max_inflight"), drain_rate=param("drain_rate"), max_pending=param("max_pending"),
        ping_period=param("ping_period"), ping_timeout=param("ping_timeout"),
        max_incoming_bytes=max(4 * param("max_command_bytes"), 1 << 20))


class Backoff:
    """Exponential backoff with equal jitter: attempt n waits between d/2 and d, d = min(max, initial * 2^n)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial, self.maximum = initial, maximum
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(attempt, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


@dataclass
class _OpenReport:
    row_id: int
    seq: int
    ranges: list[list[int]] = field(default_factory=list)


class _TrackingContext(ssl.SSLContext):
    """An SSLContext that remembers the socket it wrapped last, so a failed connect can close it."""

    pending: ssl.SSLSocket | None = None

    def wrap_socket(self, *args, **kwargs) -> ssl.SSLSocket:
        self.pending = super().wrap_socket(*args, **kwargs)
        return self.pending


class HubLink:
    def __init__(self, config: LinkConfig, queue: DiskQueue, on_message: Callable[[str, bytes], None],
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 sign: Callable[[str, bytes], bytes] | None = None):
        self.config = config
        self.queue = queue
        self._sign = sign  # (topic, message) -> the signed payload; None: drop reports go unsigned (tests)
        self._on_message_callback = on_message
        self._clock = clock
        self._wall = wall_clock
        self._backoff = Backoff(config.backoff_initial, config.backoff_max)
        self._lock = threading.Lock()
        self._pending: deque[Item] = deque()
        self._seqs: dict[str, int] = queue.last_seqs()
        self._unsealed: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._resend_requests: deque[tuple[str, list[list[int]]]] = deque(maxlen=100)
        self._sent_seqs: dict[str, int] = {}  # stream -> highest seq the broker took (acknowledged, or written)
        self._status_payload: bytes | None = None
        self._status_due = False
        self._final_status: bytes | None = None
        self._stop = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._woken = False
        self._idle = False  # the link's thread is at, or about to go into, select()
        # The link thread's own state.
        self._acked: list[int] = []
        self._refused: dict[int, str] = {}  # mid -> the broker's reason for refusing it
        self._inflight: dict[int, Row] = {}  # mid -> row
        self._resend: deque[Row] = deque()  # QoS 0 rows whose packet was lost with the connection
        self._busy: set[int] = set()  # ids of the rows in flight or waiting to be sent again: never evicted
        self._live_after = 0  # id of the last live row taken
        self._backlog_until = 0  # rows up to this id were queued before the current connection
        self._backlog_after: dict[int, int] = defaultdict(int)  # priority -> id of the last backlog row taken
        self._backlog_active = False
        self._tokens = 0.0
        self._open_reports: dict[tuple[str, str], _OpenReport] = {}
        self._max_packet = _MQTT_MAX_PACKET
        self._attempt = 0
        self._next_attempt = clock()
        self._socket_opened_at: float | None = None
        self._connected_at = -1.0
        self._new_connection = False
        self._lost = False
        self._ping_sent: dict[str, float] = {}
        self._last_echo = clock()
        self._next_ping = clock()
        # Shared figures (ints, floats, strings: reading them from another thread is atomic).
        self.connected = False
        self.state = "starting"
        self.protocol_in_use = ""
        self.last_error = ""
        self.connects = 0
        self.connected_since: float | None = None
        self.published = 0
        self.acknowledged = 0
        self.overflowed = 0
        self.dropped: dict[str, int] = defaultdict(int)
        self.rtt_ms: float | None = None
        self._protocol = mqtt.MQTTv5 if config.protocol in ("auto", "5") else mqtt.MQTTv311
        self.config_error = ""
        self._tls_context: _TrackingContext | None = None
        try:
            self._client = self._make_client()
        except (OSError, ssl.SSLError, ValueError) as error:
            # A missing certificate or password file: no connection, but the queue keeps taking telemetry,
            # which is sent once the configuration is fixed and the node restarted.
            self.config_error = f"cannot set up the MQTT client: {error}"
            self.last_error = self.config_error
            self.state = "misconfigured"
            self._client = None
        self._client_protocol = self._protocol
        self._first_connect = True
        self._thread = threading.Thread(target=self._run, name="hub-link", daemon=True)

    # -- Public, any thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, stream: str, topic: str, priority: int, qos: int, ttl: float,
                build: Callable[[int, float], bytes], sealed: bool = False) -> int | None:
        """Queue one message of `stream`, whose payload `build(seq, stamp)` makes; return its sequence number.

        None when the link's thread is too far behind: counted as overflowed, and no sequence number is used.
        `sealed`: note the payload's digest for the next seal. One thread enqueues a given stream.
        """
        with self._lock:
            if len(self._pending) >= self.config.max_pending:
                self.overflowed += 1
                return None
            seq = self._seqs.get(stream, 0) + 1
            self._seqs[stream] = seq
        stamp = self._wall()
        payload = build(seq, stamp)  # outside the lock: it may sign (a millisecond or two)
        with self._lock:
            self._pending.append(Item(stream, seq, priority, qos, stamp + ttl, topic, payload))
            if sealed:
                self._unsealed[stream].append((seq, telemetry_digest(payload)))
        self._wake()
        return seq

    def take_seal(self) -> dict[str, list[tuple[int, str]]]:
        """Return the (seq, digest) of each sealed message enqueued since the last call, by stream."""
        with self._lock:
            taken, self._unsealed = dict(self._unsealed), defaultdict(list)
        return taken

    def resend(self, stream: str, ranges: list[list[int]]) -> None:
        """Send again what the history holds of `stream` in `ranges`; report the rest dropped (not_kept)."""
        self._resend_requests.append((stream, ranges))
        self._wake()

    def sent_seqs(self) -> dict[str, int]:
        """Return each stream's highest sequence number the broker took, for the status (protocol: sent)."""
        with self._lock:
            return dict(self._sent_seqs)

    def publish_status(self, payload: bytes) -> None:
        """Publish the retained status (now when connected) and again on every connect."""
        self._status_payload = payload
        self._status_due = True
        self._wake()

    def stats(self) -> dict[str, Any]:
        now = self._clock()
        since = self.connected_since
        return {
            "state": self.state, "connected": self.connected, "protocol": self.protocol_in_use,
            "connects": self.connects, "last_error": self.last_error,
            "connected_for_s": round(now - since, 1) if since is not None else None,
            "queue_depth": self.queue.depth, "queue_bytes": self.queue.bytes, "inflight": len(self._inflight),
            "pending": len(self._pending), "published": self.published, "acknowledged": self.acknowledged,
            "overflowed": self.overflowed, "dropped": dict(self.dropped),
            "rtt_ms": round(self.rtt_ms, 2) if self.rtt_ms is not None else None,
        }

    def stop(self, final_status: bytes | None = None, timeout: float = 3.0) -> None:
        """Write what is pending to disk, publish `final_status` (retained), disconnect, end the thread."""
        self._final_status = final_status
        self._stop.set()
        self._wake()
        if self._thread.ident is not None:
            self._thread.join(timeout + 2.0)
        if not self._thread.is_alive():
            self.queue.close()
            for descriptor in (self._wake_read, self._wake_write):
                try:
                    os.close(descriptor)
                except OSError:
                    pass

    def _wake(self) -> None:
        # Only a link about to sleep or asleep needs the byte: a busy one looks at what is pending before it
        # sleeps. Each write costs the caller a GIL hand-over, which at thousands of messages a second is most
        # of the ROS callback's time.
        if self._idle and not self._woken:
            self._woken = True
            try:
                os.write(self._wake_write, b"x")
            except (BlockingIOError, OSError):
                pass

    # -- The paho client ----------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        config = self.config
        v5 = self._protocol == mqtt.MQTTv5
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=self._protocol,
                             clean_session=None if v5 else False, reconnect_on_failure=False)
        client.max_inflight_messages_set(config.max_inflight)
        client.max_queued_messages_set(0)
        client.connect_timeout = config.connect_timeout
        client.will_set(config.status_topic, config.offline_payload, qos=1, retain=True)
        if config.username:
            password = config.password
            if config.password_file:
                with open(os.path.expanduser(config.password_file)) as file:
                    password = file.read().strip()
            client.username_pw_set(config.username, password or None)
        if config.uses_tls:
            context = _TrackingContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the broker and its host name
            if config.tls_ca:
                context.load_verify_locations(cafile=config.tls_ca)
            else:
                context.load_default_certs()
            if config.tls_cert:
                context.load_cert_chain(config.tls_cert, config.tls_key or None)
            client.tls_set_context(context)
            self._tls_context = context
        client.on_socket_open = set_tcp_nodelay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        self.state = "connecting"
        try:
            if self._first_connect:
                v5 = self._protocol == mqtt.MQTTv5  # 3.1.1 took clean_session=False at construction
                properties = None
                if v5:
                    properties = Properties(PacketTypes.CONNECT)
                    properties.SessionExpiryInterval = self.config.session_expiry
                    properties.MaximumPacketSize = self.config.max_incoming_bytes
                self._client.connect(self.config.host, self.config.port, self.config.keepalive,
                                     clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                     properties=properties)
                self._first_connect = False
            else:
                self._client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as error:
            self.last_error = f"cannot connect to {self.config.host}:{self.config.port}: {error}"
            self._close_failed_tls_socket()
            self._schedule_reconnect(stable=False)
            return
        if self._tls_context is not None:
            self._tls_context.pending = None  # the client owns it now
        self._socket_opened_at = self._clock()

    def _close_failed_tls_socket(self) -> None:
        # paho leaves the TLS socket of a failed handshake open (it never becomes the client's socket).
        context = self._tls_context
        if context is not None and context.pending is not None:
            context.pending.close()
            context.pending = None

    def _schedule_reconnect(self, stable: bool) -> None:
        self._attempt = 0 if stable else self._attempt + 1
        self._next_attempt = self._clock() + self._backoff.delay(self._attempt - 1 if self._attempt else 0)
        self.state = "backoff"

    def _on_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            if (self.config.protocol == "auto" and self._protocol == mqtt.MQTTv5
                    and reason_code.value in (0x84, 1)):  # unsupported protocol version (v5, v3 codes)
                self._protocol = mqtt.MQTTv311
                self.last_error += "; falling back to MQTT 3.1.1"
            return
        self.connects += 1
        self.connected = True
        self.state = "connected"
        self.last_error = ""
        self.protocol_in_use = "5" if self._protocol == mqtt.MQTTv5 else "3.1.1"
        self.connected_since = self._connected_at = self._clock()
        self._max_packet = getattr(properties, "MaximumPacketSize", None) or _MQTT_MAX_PACKET
        self._last_echo = self._next_ping = self._clock()
        self._new_connection = True
        client.subscribe([(topic, 1) for topic in (*self.config.subscriptions, self.config.ping_topic)])
        if self._status_payload is not None:
            client.publish(self.config.status_topic, self._status_payload, qos=1, retain=True)
            self._status_due = False

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected and reason_code is not None and getattr(reason_code, "is_failure", False):
            self.last_error = f"connection lost: {reason_code}"
        self._lost = True

    def _on_publish(self, client, userdata, mid: int, reason_code: ReasonCode, properties) -> None:
        if reason_code is not None and reason_code.is_failure:
            self._refused[mid] = str(reason_code)
        self._acked.append(mid)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.config.ping_topic:
            sent = self._ping_sent.pop(message.payload.decode("ascii", "replace"), None)
            if sent is not None:
                rtt = (self._clock() - sent) * 1000.0
                self.rtt_ms = rtt if self.rtt_ms is None else 0.8 * self.rtt_ms + 0.2 * rtt
                self._last_echo = self._clock()
            return
        try:
            self._on_message_callback(message.topic, message.payload)
        except Exception as error:  # noqa: BLE001 - a bad command must not stop the link
            self.last_error = f"handling a message on {message.topic[:100]}: {error!r:.200}"

    # -- The link's thread --------------------------------------------------------------------------

    def _run(self) -> None:
        next_expiry = last_refill = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            sock = self._client.socket() if self._client is not None else None
            if sock is None and self._client is not None and now >= self._next_attempt:
                self._connect()
                sock = self._client.socket()
            readable = self._wait(sock, now, next_expiry)
            if sock is not None and self._client.socket() is sock:
                self._network(sock, readable)
            now = self._clock()
            if self._client is not None:
                self._check_connection(now)
            rate = self.config.drain_rate
            self._tokens = min(rate * 0.1 + 1, self._tokens + (now - last_refill) * rate)
            last_refill = now
            self._service_queue()
            if now >= next_expiry:
                next_expiry = now + _EXPIRE_PERIOD
                self._report("expired", self.queue.expire(self._wall(), busy=self._busy))
            self._flush_writes()
        self._shutdown()

    def _wait(self, sock, now: float, next_expiry: float) -> bool:
        """Sleep until the socket or the wake pipe has something, or a timer is due; True when sock is readable."""
        timeout = min(1.0, max(0.0, next_expiry - now))
        if sock is None:
            timeout = min(timeout, max(0.0, self._next_attempt - now))
        elif self.connected:
            timeout = min(timeout, max(0.0, self._next_ping - now))
            if self._backlog_active or self._resend:
                timeout = min(timeout, 0.01)
        buffered = sock is not None and getattr(sock, "pending", lambda: 0)() > 0  # TLS bytes already decrypted
        self._idle = True  # from here on producers write to the pipe; what they queued before is seen now
        if self._pending or self._acked or buffered or self._status_due or self._stop.is_set():
            timeout = 0.0
        readers = [self._wake_read] + ([sock] if sock is not None else [])
        writers = [sock] if sock is not None and self._client.want_write() else []
        try:
            readable, _, _ = select.select(readers, writers, [], timeout)
        except (OSError, ValueError):  # the socket closed under us: paho notices on its next call
            readable = []
        self._idle = False
        if self._wake_read in readable:
            try:
                while os.read(self._wake_read, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass
            # Only after the pipe is empty: a wake-up between the two is then seen in this pass (what it
            # announced is already queued), and the next one writes again. The other order loses wake-ups.
            self._woken = False
        return buffered or (sock is not None and sock in readable)

    def _network(self, sock, readable: bool) -> None:
        """Let paho read, write and keep the connection alive (its callbacks run here)."""
        if readable and self._client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            return
        if self._client.socket() is not None:
            self._flush_writes()
            self._client.loop_misc()

    def _flush_writes(self) -> None:
        if self._client is not None and self._client.socket() is not None and self._client.want_write():
            self._client.loop_write()

    def _check_connection(self, now: float) -> None:
        if self._lost or (self._client.socket() is None and self._socket_opened_at is not None):
            opened = self._socket_opened_at or 0.0
            stable = self._connected_at >= opened and now - self._connected_at >= _STABLE_CONNECTION
            if not self.connected and not self.last_error and self._socket_opened_at is not None:
                self.last_error = "the broker closed the connection before accepting it (TLS client certificate " \
                                  "or credentials?)"
            self._lost = False
            self._socket_opened_at = None
            self.connected = False
            self.connected_since = None
            self._requeue_lost_qos0()
            if self._protocol != self._client_protocol:  # fell back to 3.1.1: paho fixes it at construction
                self._rebuild_client()
                return
            self._schedule_reconnect(stable)
            return
        if self._client.socket() is None:
            return
        if not self.connected:
            if self._socket_opened_at is not None and now - self._socket_opened_at > self.config.connect_timeout:
                self.last_error = f"no CONNACK from the broker within {self.config.connect_timeout:g} s"
                self._drop_socket()
            return
        if now - self._last_echo > self.config.ping_timeout:
            self.last_error = f"no echo through the broker for {now - self._last_echo:.0f} s: reconnecting"
            self._drop_socket()
            return
        if self._status_due and self._status_payload is not None:
            self._status_due = False
            self._client.publish(self.config.status_topic, self._status_payload, qos=1, retain=True)
        if now >= self._next_ping:
            self._next_ping = now + self.config.ping_period
            token = f"{time.monotonic_ns():x}"
            self._ping_sent = {k: v for k, v in self._ping_sent.items() if now - v < self.config.ping_timeout}
            self._ping_sent[token] = now
            self._client.publish(self.config.ping_topic, token, qos=0)

    def _rebuild_client(self) -> None:
        """Make a new client (MQTT 3.1.1 after a refusal of 5); paho forgot what it had in flight: take it again."""
        self._client = self._make_client()
        self._client_protocol = self._protocol
        self._first_connect = True
        self._inflight.clear()
        self._resend.clear()
        self._busy.clear()
        self._live_after = 0
        self._backlog_after.clear()
        self._next_attempt = self._clock()
        self.state = "connecting"

    def _drop_socket(self) -> None:
        """Close the connection without DISCONNECT (so the broker publishes the will); paho reports the loss."""
        sock = self._client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._client.loop_read()

    def _shutdown(self) -> None:
        """Flush pending rows to disk, say offline (retained) and disconnect, within a few seconds."""
        self._service_queue(publish=False)
        if self.connected and self._final_status is not None:
            info = self._client.publish(self.config.status_topic, self._final_status, qos=1, retain=True)
            deadline = self._clock() + 2.0
            while not info.is_published() and self.connected and self._clock() < deadline:
                self._flush_writes()
                sock = self._client.socket()
                if sock is None:
                    break
                if select.select([sock], [], [], 0.05)[0]:
                    self._client.loop_read()
            self._service_queue(publish=False)
        if self._client is not None and self._client.socket() is not None:
            self._client.disconnect()
            self._flush_writes()
        self.connected = False
        self.state = "stopped"

    # -- The queue ------------------------------------------------------------------------------------

    def _service_queue(self, publish: bool = True) -> None:
        with self._lock:
            items = [self._pending.popleft() for _ in range(min(len(self._pending), _BATCH))]
        if self._pending:
            self._wake()
        acked, refused = [], []
        for mid in self._acked:
            row = self._inflight.pop(mid, None)
            if row is not None:
                self._busy.discard(row.id)
                (refused if mid in self._refused else acked).append(row)
        self._acked.clear()
        self._refused.clear()
        if acked:
            with self._lock:
                for row in acked:
                    if row.seq > self._sent_seqs.get(row.stream, 0):
                        self._sent_seqs[row.stream] = row.seq
        requeued = False
        while self._resend_requests:
            stream, ranges = self._resend_requests.popleft()
            count, missing = self.queue.resend(stream, ranges, self._wall() + RESEND_TTL)
            requeued = requeued or count > 0
            self._report("not_kept", [(stream, seq) for low, high in missing for seq in (low, high)], given=missing)
        if self._new_connection or requeued:
            self._new_connection = False
            # Everything queued so far is backlog (history put back for a resend too, whatever its id): it
            # drains at drain_rate beside live data.
            self._backlog_until = self.queue.max_id()
            self._live_after = max(self._live_after, self._backlog_until)
            self._backlog_after.clear()
            self._backlog_active = True
        evicted = self.queue.commit(items, [*acked, *refused], busy=self._busy)
        self.acknowledged += len(acked)
        self._report("queue_full", evicted)
        self._report("refused_by_broker", [(row.stream, row.seq) for row in refused])
        if publish and self.connected:
            self._send()

    def _requeue_lost_qos0(self) -> None:
        for mid in [mid for mid, row in self._inflight.items() if row.qos == 0]:
            self._resend.append(self._inflight.pop(mid))

    def _send(self) -> None:
        room = self.config.max_inflight - len(self._inflight)
        while self._resend and room > 0:
            if not self._publish(self._resend[0]):
                return
            self._resend.popleft()  # now in flight, still busy
            room -= 1
        if room <= 0:
            return
        busy = self._busy
        for row in self.queue.take_newer(self._live_after, min(room, _BATCH)):
            self._live_after = row.id
            if row.id in busy:
                continue
            if not self._publish_or_hold(row):
                return
            room -= 1
        budget = min(room, int(self._tokens))
        if not self._backlog_active or budget <= 0:
            return
        exhausted = True
        for priority in self.queue.priorities():
            rows = self.queue.take_backlog(priority, self._backlog_after[priority], self._backlog_until, budget)
            for row in rows:
                self._backlog_after[priority] = row.id
                if row.id in busy:
                    continue
                if not self._publish_or_hold(row):
                    return
                budget -= 1
                self._tokens -= 1
            if budget <= 0:
                exhausted = False
                break
        self._backlog_active = not exhausted

    def _publish_or_hold(self, row: Row) -> bool:
        """Publish `row`, or keep it for the next pass when the client cannot take it now."""
        if self._publish(row):
            return True
        self._resend.append(row)
        self._busy.add(row.id)
        return False

    def _publish(self, row: Row) -> bool:
        """Publish one row; False when paho took nothing (no connection)."""
        if len(row.payload) + len(row.topic) + 16 > self._max_packet:  # the broker would drop the connection
            self.queue.commit((), [row])
            self._report("refused_by_broker", [(row.stream, row.seq)])
            return True
        try:
            info = self._client.publish(row.topic, row.payload, qos=row.qos)
        except (ValueError, RuntimeError) as error:  # a topic or payload paho refuses: it never will take it
            self.last_error = f"cannot publish to {row.topic[:100]}: {error}"
            self.queue.commit((), [row])
            self._report("refused_by_client", [(row.stream, row.seq)])
            return True
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (row.qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS):
            return False
        self._inflight[info.mid] = row
        self._busy.add(row.id)
        self.published += 1
        return True

    def _report(self, reason: str, dropped: list[tuple[str, int]], given: list[list[int]] | None = None) -> None:
        """Count dropped (stream, seq) pairs and put them in the drops stream, merged into an unsent report.

        `given`: the dropped numbers as ranges (then `dropped` need only name their one stream), for spans too
        long to list number by number.
        """
        if not dropped:
            return
        by_stream: dict[str, list[int]] = defaultdict(list)
        for stream, seq in dropped:
            if stream != DROPS_STREAM:
                by_stream[stream].append(seq)
        busy = self._busy
        for stream, seqs in by_stream.items():
            ranges = merge_ranges(given, []) if given is not None else compress_ranges(seqs)
            self.dropped[reason] += sum(high - low + 1 for low, high in ranges)
            key = (stream, reason)
            report = self._open_reports.get(key)
            # A report not yet taken for publishing (queued, not in flight) grows in place.
            if report is not None and report.row_id not in busy:
                merged = merge_ranges(report.ranges, ranges)
                if self.queue.update_payload(report.row_id, self._drop_payload(report.seq, stream, reason, merged)):
                    report.ranges = merged
                    continue
            with self._lock:
                seq = self._seqs.get(DROPS_STREAM, 0) + 1
                self._seqs[DROPS_STREAM] = seq
            row_id = self.queue.insert(Item(DROPS_STREAM, seq, REPLY_PRIORITY, 1, self._wall() + DROPS_TTL,
                                            self.config.drops_topic,
                                            self._drop_payload(seq, stream, reason, ranges)))
            self._open_reports[key] = _OpenReport(row_id, seq, ranges)

    def _drop_payload(self, seq: int, stream: str, reason: str, ranges: list[list[int]]) -> bytes:
        payload = telemetry_payload(seq, self._wall(), DROP_REPORT_TYPE, drop_report(stream, reason, ranges))
        return self._sign(self.config.drops_topic, payload) if self._sign is not None else payload
