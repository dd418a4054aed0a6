"""What the robot sends the hub, made verifiable as the robot's own: its key, signed messages, seals. No rclpy import.

The robot's identity is an ML-DSA-65 key pair (`robot_key`: default <data_dir>/<robot_id>/robot.mldsa65.key,
mode 0600, made at the first start, or ahead of it by `qai-edge keygen`); the hub enrolls its public key
(`qai-hub enroll`). With it the robot signs (qai_hub.protocol, "What robots send"):
- its retained status, and the last will the broker publishes for it;
- every command reply, carrying the command's id and nonce, so a reply is bound to the request it answers;
- telemetry of the SIGNED_TYPES (mission states, events, reports, drop reports, seals), message by message;
- and, every `seal_period`, a seal: the digest of every other telemetry message sent since the last one.
So a hub believes nothing about this robot that the robot did not sign, even through a broker that lies,
while the high-rate streams cost a hash a message and one signature a period.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import orjson

from cryptography.hazmat.primitives import serialization

from qai_hub.protocol import (SEAL_TYPE, SEALS_STREAM, RobotTopics, Signer, generate_key_pair, load_private_key,
                              must_be_signed, reply_payload, seal_data, sign_robot_message, telemetry_envelope,
                              telemetry_payload)
from qai_io.hub_link.streams import REPLY_PRIORITY

REPLY_TTL = 600.0  # s a reply waits in the queue for the broker
REPLIES_STREAM = "replies"  # the queue's stream of command replies (not telemetry: no hub counts their numbers)
SEAL_TTL = 86400.0


def load_or_create_key(path: str | Path) -> tuple[Signer, str, bool]:
    """Return the robot's signer from its private key file, making the key pair first when there is none.

    Return (signer, the public key's path, True when it was made now). KeyFileError says why a key that exists
    cannot be used (unreadable, readable by others, not ML-DSA-65).
    """
    path = Path(path).expanduser()
    public = path.with_suffix(".pub")
    made = False
    if not path.exists():
        generate_key_pair(path, public)
        made = True
    signer = Signer(load_private_key(path))
    if not public.exists():  # the public half was lost: write it again from the private key
        key = load_private_key(path)
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return signer, str(public), made


class RobotOutgoing:
    """Signs, seals and queues what the robot sends, on a HubLink (qai_io.hub_link.link)."""

    def __init__(self, link, topics: RobotTopics, signer: Signer | None):
        self.link = link  # may be set after construction: the link's last will is signed before the link exists
        self.topics = topics
        self.signer = signer
        self.key_id = signer.key_ids[0] if signer is not None else ""

    def sign(self, topic: str, message: bytes) -> bytes:
        """Return `message` signed for `topic` (unsigned when the robot has no usable key: the hub refuses it)."""
        return sign_robot_message(self.signer, topic, message) if self.signer is not None else message

    def status(self, status: dict[str, Any]) -> bytes:
        """Return the signed status; "sent" tells the hub how far each telemetry stream has gone (protocol)."""
        taken = self.link.sent_seqs() if self.link is not None else {}  # none yet: the last will, signed first
        sent = {stream: seq for stream, seq in taken.items() if stream != REPLIES_STREAM}
        return self.sign(self.topics.status, orjson.dumps({**status, "sent": sent, "key": self.key_id}))

    def telemetry(self, stream: str, type_name: str, data_json: bytes, priority: int, qos: int,
                  ttl: float) -> int | None:
        """Queue one telemetry message: signed when its type asks for it, else sealed. Return its sequence number."""
        topic = self.topics.telemetry(stream)
        type_json = orjson.dumps(type_name)
        if must_be_signed(type_name):
            return self.link.enqueue(stream, topic, priority, qos, ttl, lambda seq, stamp: self.sign(
                topic, telemetry_envelope(seq, stamp, type_json, data_json)))
        return self.link.enqueue(stream, topic, priority, qos, ttl,
                                 lambda seq, stamp: telemetry_envelope(seq, stamp, type_json, data_json), sealed=True)

    def seal(self) -> int | None:
        """Queue a seal over every sealed message sent since the last one (nothing when there was none)."""
        digests = self.link.take_seal()
        if not digests:
            return None
        topic = self.topics.telemetry(SEALS_STREAM)
        data = seal_data(digests)
        return self.link.enqueue(SEALS_STREAM, topic, REPLY_PRIORITY, 1, SEAL_TTL, lambda seq, stamp: self.sign(
            topic, telemetry_payload(seq, stamp, SEAL_TYPE, data)))

    def reply(self, verb: str | None, build: Callable[[float], bytes]) -> int | None:
        """Queue a reply on the robot's own reply topic of `verb`; `build(stamp)` makes the unsigned reply."""
        topic = self.topics.reply(verb or "unknown")
        return self.link.enqueue(REPLIES_STREAM, topic, REPLY_PRIORITY, 1, REPLY_TTL,
                                 lambda seq, stamp: self.sign(topic, build(stamp)))

    def answer(self, command, status: str, **fields: Any) -> int | None:
        """Queue a reply to a verified command: bound to it by its id and nonce."""
        return self.reply(command.verb, lambda stamp: reply_payload(
            command.id, command.verb, self.topics.robot, status, stamp, nonce=command.nonce, **fields))

    def offline_will(self) -> bytes:
        """Return the last will: `offline`, signed, which the broker publishes when the connection dies."""
        return self.status({"state": "offline", "robot": self.topics.robot, "fleet": self.topics.fleet,
                            "reason": "connection lost"})


def key_summary(signer: Signer | None, public_path: str, error: str) -> str:
    if signer is None:
        return f"no robot key ({error}): the hub refuses what this robot sends"
    return f"robot key {signer.key_ids[0]} ({public_path})"
