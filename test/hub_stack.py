"""Helpers for hub link tests: a real mosquitto per test module, a hub-side subscriber, test keys and TLS
certificates generated in temp dirs (never in the repo)."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson
import paho.mqtt.client as mqtt

from harness import wait_for
from qai_edge.broker import LocalBroker, free_port
from qai_io.hub.fleet import Fleet
from qai_io.hub.link import set_tcp_nodelay
from qai_io.hub.signing import Signer, generate_key_pair, make_command
from qai_io.hub.topics import command_topic


def start_broker(directory: Path, port: int | None = None, extra_config: str = "") -> LocalBroker:
    return LocalBroker(port or free_port(), directory, extra_config=extra_config).start()


class HubSubscriber:
    """What a hub sees: every message under qai/<fleet>/#, through a persistent session (QoS 1) that
    survives broker restarts, resubscribing on every connect; also fed into a Fleet view."""

    def __init__(self, port: int, fleet: str, topics: tuple[str, ...] = ("#",), tls: dict | None = None,
                 client_id: str = ""):
        self.fleet = Fleet(fleet)
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._filters = [f"qai/{fleet}/{topic}" for topic in topics]
        client_id = client_id or f"hub-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_socket_open = set_tcp_nodelay
        self.client.reconnect_delay_set(0.1, 1.0)
        if tls:
            import ssl

            context = ssl.create_default_context(cafile=str(tls["ca"]))
            context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
            self.client.tls_set_context(context)
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=False, properties=properties)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 10, "the hub subscriber to subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self._filters])

    def _on_message(self, client, userdata, message):
        try:
            payload = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            payload = {"raw": message.payload}
        with self._lock:
            self.messages.append((message.topic, payload))
            self.fleet.on_message(message.topic, message.payload)

    def on(self, suffix: str) -> list[dict]:
        """Payloads received on topics ending with `suffix`."""
        with self._lock:
            return [payload for topic, payload in self.messages if topic.endswith(suffix)]

    def replies(self, request_id: str) -> list[dict]:
        with self._lock:
            return [p for t, p in self.messages if t.endswith("/reply") and p.get("id") == request_id]

    def wait_reply(self, request_id: str, status: str | Callable[[dict], bool], timeout: float = 30.0) -> dict:
        match = status if callable(status) else (lambda reply: reply.get("status") == status)
        return wait_for(lambda: next((r for r in self.replies(request_id) if match(r)), None), timeout,
                        lambda: f"a {status} reply to {request_id}; replies: {self.replies(request_id)}")

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class HubKeys:
    """Hub key pairs made for one test module (ML-DSA-65, and Ed25519 for hybrid)."""

    def __init__(self, directory: Path):
        self.directory = directory
        generate_key_pair(directory / "hub.mldsa65.key", directory / "hub.mldsa65.pub")
        generate_key_pair(directory / "hub.ed25519.key", directory / "hub.ed25519.pub", "Ed25519")
        generate_key_pair(directory / "intruder.key", directory / "intruder.pub")
        self.signer = Signer.from_files(directory / "hub.mldsa65.key")
        self.intruder = Signer.from_files(directory / "intruder.key")

    @property
    def public(self) -> str:
        return str(self.directory / "hub.mldsa65.pub")

    @property
    def private(self) -> str:
        return str(self.directory / "hub.mldsa65.key")

    def command(self, fleet: str, robot: str, verb: str, body: dict[str, Any], signer: Signer | None = None,
                topic_robot: str | None = None, **overrides) -> tuple[str, dict]:
        topic = command_topic(fleet, topic_robot or robot, verb)
        return topic, make_command(signer or self.signer, fleet=fleet, robot=robot, verb=verb, body=body,
                                   topic=topic, **overrides)


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("qai test CA")).issuer_name(name("qai test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage, san: list | None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client_key, client = leaf("robot", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    files = {"ca": directory / "ca.crt", "server_cert": directory / "broker.crt",
             "server_key": directory / "broker.key", "cert": directory / "robot.crt", "key": directory / "robot.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["server_cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, files["server_key"])
    write_key(client_key, files["key"])
    return files


def tls_listener_config(files: dict[str, Path]) -> str:
    """mosquitto lines that make the listener before them TLS-only, with client certificates required."""
    return (f"cafile {files['ca']}\ncertfile {files['server_cert']}\nkeyfile {files['server_key']}\n"
            "require_certificate true\ntls_version tlsv1.2\n")


def seqs(payloads: list[dict]) -> list[int]:
    return [p["seq"] for p in payloads]


def wait_until(predicate, timeout: float, what) -> Any:
    return wait_for(predicate, timeout, what, interval=0.05)


def now_ms() -> int:
    return int(time.time() * 1000)
