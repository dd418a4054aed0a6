"""The hub's MQTT client: a paho client with the hub's credentials and TLS, and the hub tools' exit codes.

No rclpy import. `qai-hub` (cli), the dashboard (dashboard) and a HubSession (session) all connect through
HubClient. It subscribes again to everything it subscribed to after every reconnect (the broker may have
lost the session: a crash, a restart without persistence) and tells `on_reconnect`, so a tool waiting for
an outcome can ask again for what may have passed while it was away.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from qai_hub.protocol import set_tcp_nodelay

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_NO_ANSWER, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class HubError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BrokerOptions:
    """Where the broker is and who the hub is there (what every qai-hub command takes)."""

    host: str = "127.0.0.1"
    port: int = 18830
    username: str = ""
    password_file: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""


class HubClient:
    """A paho client for the hub side: connects (TLS, user/password), subscribes and waits for the SUBACK.

    `args` is a BrokerOptions or anything with its fields (qai-hub's parsed options).
    """

    def __init__(self, args, on_message: Callable[[str, bytes], None], client_id: str = "",
                 on_reconnect: Callable[[], None] | None = None):
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._filters: list[str] = []
        self._connects = 0
        self.refused = ""  # the broker's reason when it refused the last connection
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_socket_open = set_tcp_nodelay
        if args.username:
            password = Path(args.password_file).expanduser().read_text().strip() if args.password_file else None
            self.client.username_pw_set(args.username, password)
        if args.tls_ca or args.tls_cert:
            context = ssl.create_default_context(cafile=args.tls_ca or None)
            if args.tls_cert:
                context.load_cert_chain(args.tls_cert, args.tls_key or None)
            self.client.tls_set_context(context)
        self.client.on_message = lambda client, userdata, message: self._on_message(message.topic, message.payload)
        self._connected = threading.Event()
        self._subscribed: dict[int, threading.Event] = {}
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda client, userdata, mid, codes, props: self._subscribed.setdefault(
            mid, threading.Event()).set()
        self.host, self.port = args.host, args.port

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self._connected.set()
            return
        self.refused = ""
        self._connects += 1
        if self._filters:  # again after every reconnect: a broker that restarted may have lost the session
            client.subscribe([(topic, 1) for topic in self._filters])
        self._connected.set()
        if self._connects > 1 and self._on_reconnect is not None:
            self._on_reconnect()

    @property
    def connects(self) -> int:
        return self._connects

    def connect(self, timeout: float = 5.0) -> "HubClient":
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as error:
            raise HubError(f"cannot reach the broker at {self.host}:{self.port}: {error}", EXIT_NO_ANSWER) from None
        self.client.reconnect_delay_set(0.5, 5.0)
        self.client.loop_start()
        if not self._connected.wait(timeout) or self.refused:
            why = f": {self.refused} (the hub's username and password file, or certificate?)" if self.refused else ""
            self.close()
            raise HubError(f"the broker at {self.host}:{self.port} did not accept the connection{why}",
                           EXIT_NO_ANSWER)
        return self

    def subscribe(self, *topics: str, timeout: float = 5.0) -> None:
        self._filters.extend(topic for topic in topics if topic not in self._filters)
        result, mid = self.client.subscribe([(topic, 1) for topic in topics])
        if not self._subscribed.setdefault(mid, threading.Event()).wait(timeout):
            raise HubError(f"the broker did not confirm the subscription to {', '.join(topics)}", EXIT_NO_ANSWER)

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement; HubError when it does not come."""
        try:
            info = self.client.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as error:  # paho: not connected now (a broker that went away)
            raise HubError(f"the broker did not take the command on {topic}: {error}", EXIT_NO_ANSWER) from None
        if not info.is_published():
            raise HubError(f"the broker did not acknowledge the command on {topic}", EXIT_NO_ANSWER)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
