"""hub_link's health on /diagnostics, from its parts' figures. No rclpy import."""

from __future__ import annotations

from typing import Any

from qai_edge.health import Level
from qai_hub.protocol import ED25519, ML_DSA_65

SHOWN = ("state", "protocol", "queue_depth", "queue_bytes", "inflight", "published", "acknowledged", "overflowed",
         "connects", "rtt_ms")


def link_health(link, gate, missions_followed: int, refused_streams: dict[str, str], key_errors: list[str],
                missing_keys: list[str], robot_key_error: str) -> tuple[Level, str, dict[str, Any]]:
    """Return (level, message, values) for hub_link's status: the link, the queue, the command gate, the keys."""
    stats = link.stats()
    keys = gate.keyring
    values: dict[str, Any] = {key: stats[key] for key in SHOWN}
    values.update({f"dropped_{reason}": n for reason, n in stats["dropped"].items()})
    values.update({"history_depth": link.queue.history_depth, "commands_accepted": gate.accepted,
                   "missions_followed": missions_followed,
                   "hub_keys": f"{keys.count(ML_DSA_65)} ML-DSA-65, {keys.count(ED25519)} Ed25519"})
    values.update({f"commands_rejected_{code}": n for code, n in gate.rejected.items() if n})
    problems = [f"stream {name} refused: {why}" for name, why in refused_streams.items()]
    problems += [f"hub key unusable: {error}" for error in key_errors]
    where = f"{link.config.host}:{link.config.port}"
    if link.config_error:
        return Level.ERROR, link.config_error, values
    if robot_key_error:
        return Level.ERROR, f"no robot key, the hub refuses what this robot sends: {robot_key_error}", values
    if not gate.nonces.usable:
        return Level.ERROR, f"commands refused: the nonce store is unusable ({gate.nonces.error})", values
    if not stats["connected"]:
        return Level.WARN, f"broker {where} unreachable ({stats['last_error'] or stats['state']}); " \
                           f"{stats['queue_depth']} queued", values
    if problems:
        return Level.WARN, "; ".join(problems), values
    commands = ("commands on" if keys.count(ML_DSA_65) else
                f"commands refused: no hub key ({', '.join(missing_keys) or 'none configured'})")
    return Level.OK, f"connected to {where}, {stats['queue_depth']} queued, {commands}", values
