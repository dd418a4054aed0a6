"""DDS discovery for what `qai-edge` starts: this machine only, unless the profile's `dds` section says otherwise.

A robot's engines talk over DDS, which by default finds (and is found by) every participant on the subnet
with the same domain id: anyone on the robot's network could read its topics and publish commands to its
nodes. So `qai-edge up`, `status` and `demo` set ROS_AUTOMATIC_DISCOVERY_RANGE for themselves and every node
they start:

    dds:
      discovery: localhost     # localhost (the default) | subnet | off | system_default | environment
      static_peers: []         # ROS_STATIC_PEERS: hosts to reach beyond the range (addresses or names)

`environment` leaves ROS_AUTOMATIC_DISCOVERY_RANGE and ROS_STATIC_PEERS as the environment has them. Between
machines, discovery alone secures nothing: SROS2 (docs/hub_link.md) does. No rclpy import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, MutableMapping

RANGES = {"localhost": "LOCALHOST", "subnet": "SUBNET", "off": "OFF", "system_default": "SYSTEM_DEFAULT"}
ENVIRONMENT = "environment"
MAX_PEERS = 32
_PEER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")  # a host name, IPv4 or IPv6 address


@dataclass(frozen=True)
class DdsSpec:
    discovery: str = "localhost"
    static_peers: tuple[str, ...] = ()

    def apply(self, environ: MutableMapping[str, str]) -> None:
        """Set the discovery variables in `environ` (os.environ before rclpy starts: children inherit it)."""
        if self.discovery == ENVIRONMENT:
            return
        environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = RANGES[self.discovery]
        environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated since Iron; contradicts the range on Jazzy
        if self.static_peers:
            environ["ROS_STATIC_PEERS"] = ";".join(self.static_peers)
        else:
            environ.pop("ROS_STATIC_PEERS", None)

    def describe(self) -> str:
        if self.discovery == ENVIRONMENT:
            return "DDS discovery as the environment says"
        peers = f", static peers {', '.join(self.static_peers)}" if self.static_peers else ""
        return f"DDS discovery {self.discovery}{peers}"


def parse_dds_section(value: Any, fail: Callable[[str, str], Exception]) -> DdsSpec:
    """Check the profile's `dds` section (absent: discovery on this machine only)."""
    if value is None:
        return DdsSpec()
    if not isinstance(value, dict):
        raise fail("dds", f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in ("discovery", "static_peers"):
            raise fail(f"dds.{key}", "unknown key (expected one of: discovery, static_peers)")
    discovery = value.get("discovery", "localhost")
    choices = [*RANGES, ENVIRONMENT]
    if discovery not in choices:
        raise fail("dds.discovery", f"expected one of {', '.join(choices)}, got {discovery!r}")
    peers = value.get("static_peers") or []
    if not isinstance(peers, list) or len(peers) > MAX_PEERS:
        raise fail("dds.static_peers", f"expected a list of at most {MAX_PEERS} hosts, got {peers!r}")
    for index, peer in enumerate(peers):
        if not isinstance(peer, str) or not _PEER.match(peer):
            raise fail(f"dds.static_peers[{index}]", f"expected a host name or address, got {peer!r}")
    if peers and discovery == ENVIRONMENT:
        raise fail("dds.static_peers", "not with discovery: environment (set ROS_STATIC_PEERS there instead)")
    return DdsSpec(discovery, tuple(peers))
