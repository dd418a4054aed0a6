"""The robot's MQTT connection to the hub, with the on-disk queue behind it. No rclpy import.

HubLink owns two threads:
- the network thread runs paho-mqtt 2.x (CallbackAPIVersion.VERSION2): connects (MQTT 5, or 3.1.1 when
  the broker refuses 5 and the protocol is "auto"; TLS with a CA and client certificate; username and
  password), sets TCP_NODELAY on every socket, reconnects with exponential backoff and jitter,
  resubscribes after every connect, publishes the retained status (its last will says offline), and
  probes the round trip through the broker (a ping to its own topic; no echo within `ping_timeout`
  means the connection is dead even if TCP says otherwise, and it reconnects);
- the worker thread owns the DiskQueue: it commits what `enqueue` handed it, publishes from the queue
  (live data first; the backlog left by an outage oldest-first within priority, at `drain_rate`
  messages a second, so live data is never starved), keeps at most `max_inflight` messages in flight,
  deletes a row only when the broker acknowledged it (QoS 1) or it was written (QoS 0), and reports
  every message it will never send (evicted at the bound, expired, refused by the broker) on the drops
  stream, as sequence ranges.

`enqueue`, `publish_status`, `stats` and `stop` may be called from any thread.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from qai_io.hub.queue import DiskQueue, Item, Row
from qai_io.hub.streams import REPLY_PRIORITY, drop_report, merge_ranges, compress_ranges, telemetry_payload
from qai_io.hub.topics import DROPS_STREAM

PROTOCOLS = ("auto", "5", "3.1.1")
DROPS_TTL = 30 * 86400.0
_EXPIRE_PERIOD = 1.0  # s between TTL sweeps
_BATCH = 2000  # rows committed or taken at most per worker cycle
_STABLE_CONNECTION = 10.0  # s connected after which the backoff starts again from its first step


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


class Backoff:
    """Exponential backoff with equal jitter: attempt n waits between d/2 and d, d = min(max, initial * 2^n)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial, self.maximum = initial, maximum
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(attempt, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


@dataclass
class _Inflight:
    row: Row
    sent_at: float


@dataclass
class _OpenReport:
    row_id: int
    seq: int
    ranges: list[list[int]] = field(default_factory=list)


class HubLink:
    def __init__(self, config: LinkConfig, queue: DiskQueue, on_message: Callable[[str, bytes], None],
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self.config = config
        self.queue = queue
        self._on_message_callback = on_message
        self._clock = clock
        self._wall = wall_clock
        self._backoff = Backoff(config.backoff_initial, config.backoff_max)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._pending: deque[Item] = deque()
        self._acked: deque[int] = deque()
        self._refused: dict[int, str] = {}  # mid -> the broker's reason for refusing it
        self._seqs: dict[str, int] = queue.last_seqs()
        self._status_payload: bytes | None = None
        # Worker-thread state.
        self._inflight: dict[int, _Inflight] = {}
        self._resend: deque[Row] = deque()  # QoS 0 rows whose packet was lost with the connection
        self._live_after = 0  # id of the last live row taken
        self._backlog_until = 0  # rows up to this id were queued before the current connection
        self._backlog_after: dict[int, int] = defaultdict(int)  # priority -> id of the last backlog row taken
        self._tokens = 0.0
        self._backlog_active = False
        self._open_reports: dict[tuple[str, str], _OpenReport] = {}
        self._connection_epoch = 0  # bumped on each CONNACK; the worker resets its live/backlog split
        self._client_epoch = 0  # bumped when the client is rebuilt (paho forgets what it had in flight)
        # Shared figures (ints and floats: reading them is atomic).
        self.connected = False
        self.state = "starting"
        self.protocol_in_use = ""
        self.last_error = ""
        self.connects = 0
        self.connected_since: float | None = None
        self._connected_at = -1.0
        self._max_packet = 268435455  # MQTT's own limit, until a broker announces a smaller one
        self.published = 0
        self.acknowledged = 0
        self.overflowed = 0
        self.dropped: dict[str, int] = defaultdict(int)
        self.rtt_ms: float | None = None
        self._ping_sent: dict[str, float] = {}
        self._last_echo = clock()
        self._protocol = mqtt.MQTTv5 if config.protocol in ("auto", "5") else mqtt.MQTTv311
        self._client = self._make_client()
        self._network = threading.Thread(target=self._run_network, name="hub-link-network", daemon=True)
        self._worker = threading.Thread(target=self._run_worker, name="hub-link-queue", daemon=True)

    # -- Public, any thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._network.start()
        self._worker.start()

    def enqueue(self, stream: str, topic: str, priority: int, qos: int, ttl: float,
                build: Callable[[int, float], bytes]) -> int | None:
        """Queue one message of `stream`, whose payload `build(seq, stamp)` makes; return its sequence number.

        None when the worker is too far behind: counted as overflowed, and no sequence number is used.
        """
        with self._wake:
            if len(self._pending) >= self.config.max_pending:
                self.overflowed += 1
                return None
            seq = self._seqs.get(stream, 0) + 1
            self._seqs[stream] = seq
            stamp = self._wall()
            self._pending.append(Item(stream, seq, priority, qos, stamp + ttl, topic, build(seq, stamp)))
            self._wake.notify()
        return seq

    def publish_status(self, payload: bytes) -> None:
        """Publish the retained status now (when connected) and again on every connect."""
        self._status_payload = payload
        if self.connected:
            self._client.publish(self.config.status_topic, payload, qos=1, retain=True)

    def stats(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "state": self.state, "connected": self.connected, "protocol": self.protocol_in_use,
            "connects": self.connects, "last_error": self.last_error,
            "connected_for_s": round(now - self.connected_since, 1) if self.connected_since is not None else None,
            "queue_depth": self.queue.depth, "queue_bytes": self.queue.bytes, "inflight": len(self._inflight),
            "pending": len(self._pending), "published": self.published, "acknowledged": self.acknowledged,
            "overflowed": self.overflowed, "dropped": dict(self.dropped),
            "rtt_ms": round(self.rtt_ms, 2) if self.rtt_ms is not None else None,
        }

    def stop(self, final_status: bytes | None = None, timeout: float = 3.0) -> None:
        """Flush what is pending to disk, publish `final_status` (retained), disconnect, stop both threads."""
        if final_status is not None and self.connected:
            try:
                info = self._client.publish(self.config.status_topic, final_status, qos=1, retain=True)
                info.wait_for_publish(timeout=min(timeout, 2.0))
            except (RuntimeError, ValueError):
                pass  # the connection went meanwhile; the will says offline
        self._stop.set()
        with self._wake:
            self._wake.notify()
        if self._worker.ident is not None:
            self._worker.join(timeout)
        try:
            self._client.disconnect()
        except Exception:  # noqa: BLE001 - already closed
            pass
        if self._network.ident is not None:
            self._network.join(timeout)
        if not self._worker.is_alive():
            self.queue.close()

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
            client.username_pw_set(config.username, config.password or None)
        if config.uses_tls:
            context = ssl.create_default_context(cafile=config.tls_ca or None)
            if config.tls_cert:
                context.load_cert_chain(config.tls_cert, config.tls_key or None)
            client.tls_set_context(context)
        client.on_socket_open = set_tcp_nodelay
        # Every write happens on the network thread: with these set, paho's publish() (called from the worker)
        # queues the packet and wakes the network thread's select() instead of writing to the socket from the
        # calling thread, which would interleave with the network thread's writes (TLS records break first).
        client.on_socket_register_write = _no_op
        client.on_socket_unregister_write = _no_op
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties | None:
        if self._protocol != mqtt.MQTTv5:
            return None
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry
        properties.MaximumPacketSize = self.config.max_incoming_bytes
        return properties

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
        self._max_packet = getattr(properties, "MaximumPacketSize", None) or 268435455
        self.connected_since = self._connected_at = self._clock()
        self._last_echo = self._clock()
        client.subscribe([(topic, 1) for topic in (*self.config.subscriptions, self.config.ping_topic)])
        if self._status_payload is not None:
            client.publish(self.config.status_topic, self._status_payload, qos=1, retain=True)
        with self._wake:
            self._connection_epoch += 1
            self._wake.notify()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected and reason_code is not None and getattr(reason_code, "is_failure", False):
            self.last_error = f"connection lost: {reason_code}"
        self.connected = False
        self.connected_since = None
        with self._wake:
            self._wake.notify()

    def _on_publish(self, client, userdata, mid: int, reason_code: ReasonCode, properties) -> None:
        with self._wake:
            if reason_code is not None and reason_code.is_failure:
                self._refused[mid] = str(reason_code)
            self._acked.append(mid)
            self._wake.notify()

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
        except Exception as error:  # noqa: BLE001 - a bad command must not stop the network thread
            self.last_error = f"handling a message on {message.topic[:100]}: {error!r:.200}"

    # -- Network thread -------------------------------------------------------------------------

    def _run_network(self) -> None:
        attempt = 0
        first = True
        while not self._stop.is_set():
            protocol = self._protocol
            self.state = "connecting"
            stable = False
            try:
                if first:
                    v5 = self._protocol == mqtt.MQTTv5  # 3.1.1 takes clean_session=False at construction
                    self._client.connect(self.config.host, self.config.port, self.config.keepalive,
                                         clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                         properties=self._connect_properties())
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as error:
                self.last_error = f"cannot connect to {self.config.host}:{self.config.port}: {error}"
            else:
                stable = self._loop_while_connected()
            self.connected = False
            self.connected_since = None
            if self._stop.is_set():
                break
            if protocol != self._protocol:  # fell back to 3.1.1: paho fixes the protocol at construction
                self._client = self._make_client()
                first = True
                with self._wake:
                    self._client_epoch += 1
                continue
            attempt = 0 if stable else attempt + 1
            self.state = "backoff"
            self._stop.wait(self._backoff.delay(attempt))
        self.state = "stopped"

    def _loop_while_connected(self) -> bool:
        """Run paho's loop until the connection ends; True when it had been up long enough to count as stable."""
        started = self._clock()
        next_ping = started
        while not self._stop.is_set():
            rc = self._client.loop(timeout=0.2)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if not self.connected and self._connected_at < started and not self.last_error:
                    self.last_error = (f"the broker closed the connection before accepting it "
                                       f"({mqtt.error_string(rc)}; TLS client certificate or credentials?)")
                break
            now = self._clock()
            if not self.connected:
                if now - started > self.config.connect_timeout:
                    self.last_error = f"no CONNACK from the broker within {self.config.connect_timeout:g} s"
                    self._drop_socket()
                    break
                continue
            if now - self._last_echo > self.config.ping_timeout:
                self.last_error = f"no echo through the broker for {now - self._last_echo:.0f} s: reconnecting"
                self._drop_socket()
                break
            if now >= next_ping:
                next_ping = now + self.config.ping_period
                token = f"{time.monotonic_ns():x}"
                self._ping_sent = {k: v for k, v in self._ping_sent.items() if now - v < self.config.ping_timeout}
                self._ping_sent[token] = now
                self._client.publish(self.config.ping_topic, token, qos=0)
        return self._connected_at >= started and self._clock() - self._connected_at >= _STABLE_CONNECTION

    def _drop_socket(self) -> None:
        sock = self._client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._client.loop(timeout=0.1)

    # -- Worker thread --------------------------------------------------------------------------

    def _run_worker(self) -> None:
        connection_epoch = client_epoch = 0
        next_expiry = self._clock()
        last_refill = self._clock()
        while True:
            with self._wake:
                if not (self._pending or self._acked or self._stop.is_set()):
                    backlog_waiting = self.connected and self._backlog_active
                    self._wake.wait(0.01 if backlog_waiting else max(0.0, next_expiry - self._clock()))
                items = [self._pending.popleft() for _ in range(min(len(self._pending), _BATCH))]
                mids = list(self._acked)
                self._acked.clear()
                refused = dict(self._refused)
                self._refused.clear()
                epochs = (self._connection_epoch, self._client_epoch)
            stopping = self._stop.is_set()
            if epochs[1] != client_epoch:  # a new client lost paho's in-flight messages: take them again
                client_epoch = epochs[1]
                self._inflight.clear()
                self._resend.clear()
                self._live_after = 0
                self._backlog_after.clear()
            acked, refused_rows = [], []
            for mid in mids:
                entry = self._inflight.pop(mid, None)
                if entry is not None:
                    (refused_rows if mid in refused else acked).append(entry.row)
            evicted = self.queue.commit(items, [*acked, *refused_rows], busy=self._busy_ids())
            self.acknowledged += len(acked)
            self._report("queue_full", evicted)
            self._report("refused_by_broker", [(row.stream, row.seq) for row in refused_rows])
            now = self._clock()
            if now >= next_expiry:
                next_expiry = now + _EXPIRE_PERIOD
                self._report("expired", self.queue.expire(self._wall(), busy=self._busy_ids()))
            if stopping and not self._pending:
                return
            if epochs[0] != connection_epoch:
                connection_epoch = epochs[0]
                # Everything queued so far is backlog: it drains at drain_rate beside live data.
                self._backlog_until = self.queue.max_id()
                self._live_after = max(self._live_after, self._backlog_until)
                self._backlog_active = True
                self._requeue_lost_qos0()
            self._tokens = min(self.config.drain_rate * 0.1 + 1,
                               self._tokens + (now - last_refill) * self.config.drain_rate)
            last_refill = now
            if self.connected:
                self._send()

    def _busy_ids(self) -> set[int]:
        return {entry.row.id for entry in self._inflight.values()} | {row.id for row in self._resend}

    def _requeue_lost_qos0(self) -> None:
        for mid in [mid for mid, entry in self._inflight.items() if entry.row.qos == 0]:
            self._resend.append(self._inflight.pop(mid).row)

    def _send(self) -> None:
        room = self.config.max_inflight - len(self._inflight)
        while self._resend and room > 0:
            if not self._publish(self._resend[0]):
                return
            self._resend.popleft()
            room -= 1
        if room <= 0:
            return
        busy = self._busy_ids()
        for row in self.queue.take_newer(self._live_after, min(room, _BATCH)):
            self._live_after = row.id
            if row.id in busy:
                continue
            if not self._publish(row):
                self._resend.append(row)
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
                if not self._publish(row):
                    self._resend.append(row)
                    return
                budget -= 1
                self._tokens -= 1
            if budget <= 0:
                exhausted = False
                break
        self._backlog_active = not exhausted

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
        self._inflight[info.mid] = _Inflight(row, self._clock())
        self.published += 1
        return True

    def _report(self, reason: str, dropped: list[tuple[str, int]]) -> None:
        """Count dropped (stream, seq) pairs and put them in the drops stream, merged into an unsent report."""
        if not dropped:
            return
        by_stream: dict[str, list[int]] = defaultdict(list)
        for stream, seq in dropped:
            if stream != DROPS_STREAM:
                by_stream[stream].append(seq)
        busy = self._busy_ids()
        for stream, seqs in by_stream.items():
            self.dropped[reason] += len(seqs)
            ranges = compress_ranges(seqs)
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
        return telemetry_payload(seq, self._wall(), "qai/DropReport", drop_report(stream, reason, ranges))


def _no_op(*args) -> None:
    pass


def set_tcp_nodelay(client, userdata, sock) -> None:
    """Nagle plus delayed ACKs add ~40-90 ms to every QoS 1 round trip on loopback."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
