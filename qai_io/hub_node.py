"""hub_link: the robot's link to the hub over MQTT; its own process, so it fails alone.

ROS interface (names relative to the robot's namespace):
- subscribes to each configured telemetry stream's topic (default: `odom`, `battery_state`,
  `mission_states`, `/diagnostics` (summarised), `events`) and always to `mission_states` for the status;
- calls the mission engine: action `execute_mission`, services `add_tasks`, `cancel_task`,
  `get_mission_state` (qai_io.hub_missions); the intelligence engine: `<intelligence_engine>/activate_model`
  and `rollback_model` (qai_io.hub_models); serves the task kind `report` (qai_io.hub_link.reports);
- publishes its heartbeat on `/diagnostics`: link state, queue depth, drops, round-trip time, commands
  accepted and refused by reason, one status per stream.

MQTT interface (docs/hub_link.md; the specification: qai_hub.protocol): telemetry to
`qai/<fleet>/<robot>/telemetry/<stream>`, the retained `qai/<fleet>/<robot>/status` (last will: offline),
signed commands from `.../cmd/<verb>` and `qai/<fleet>/all/cmd/<verb>`, replies on `.../cmd/<verb>/reply`.
The logic lives in qai_io.hub_link (no rclpy).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qai_edge.engine_node import EngineNode, spin_node
from qai_edge.health import Level
from qai_edge.paths import robot_key_path
from qai_edge.qos import MISSION_STATES_QOS
from qai_edge.tasks import ServedKind
from qai_edge.workers import call_soon
from qai_interfaces.msg import MissionState
from qai_hub.protocol import DROPS_STREAM, KeyFileError, Keyring, RobotTopics, parse_topic
from qai_io.hub_link import codec, reports
from qai_io.hub_link.commands import CommandGate, CommandRejected, NonceStore, rejection_reply
from qai_io.hub_link.link import HubLink, config_from_parameters
from qai_io.hub_link.outgoing import RobotOutgoing, load_or_create_key
from qai_io.hub_link.queue import DiskQueue
from qai_io.hub_link.status import link_health
from qai_io.hub_link.streams import MissionBoard, ReplayFilter, parse_streams
from qai_io.hub_missions import MissionCommands
from qai_io.hub_models import ModelCommands
from qai_io.hub_telemetry import Telemetry
from qai_io.hub_parameters import PARAMETERS


class HubLinkNode(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("hub_link", PARAMETERS, **kwargs)
        p = self.param
        self.max_telemetry_bytes = p("max_telemetry_bytes")
        try:
            self.topics = RobotTopics(p("fleet"), self.robot_id)
        except ValueError as error:  # a name that cannot be one MQTT topic level: nothing can run
            self.get_logger().fatal(f"{error}; set robot_id (or fleet) to a name MQTT topics can carry")
            raise SystemExit(2) from None
        data_dir = Path(p("data_dir")).expanduser() / self.robot_id
        self.queue = DiskQueue(data_dir / "hub_queue.db", p("queue_max_messages"), p("queue_max_bytes"),
                               p("queue_sync"), protected_streams=(DROPS_STREAM,),
                               history_window=p("history_window"), history_max_bytes=p("history_max_bytes"))
        if self.queue.recovered_from:
            self.get_logger().error(f"the hub queue was damaged and started empty: {self.queue.recovered_from}")
        self.key_error, signer = "", None
        try:
            signer, public, made = load_or_create_key(p("robot_key") or robot_key_path(p("data_dir"), self.robot_id))
            self.get_logger().info(f"{'made the robot key' if made else 'robot key'} {signer.key_ids[0]}: enroll "
                                   f"{public} on the hub (qai-hub enroll {self.robot_id} {public})")
        except (KeyFileError, OSError) as error:
            self.key_error = str(error)
            self.get_logger().error(f"no usable robot key, the hub will refuse what this robot sends: {error}")
        self.outgoing = RobotOutgoing(None, self.topics, signer)
        keyring, self.key_errors, self.missing_keys = Keyring.from_files(p("hub_public_keys"))
        nonces = NonceStore(data_dir / "hub_nonces.db")
        if nonces.recovered_from or nonces.error:
            self.get_logger().error(f"the nonce store: {nonces.recovered_from or nonces.error}")
        self.gate = CommandGate(fleet=p("fleet"), robot=self.robot_id, keyring=keyring, nonces=nonces,
                                window_s=p("command_window"), max_bytes=p("max_command_bytes"),
                                max_depth=p("max_command_depth"), max_parse_bytes=p("max_command_input"),
                                max_verify_rate=p("max_command_rate"), require_ed25519=p("require_hybrid"))
        self.board = MissionBoard()
        self.missions = MissionCommands(self, self.outgoing.answer, self._ros_now, timeout=p("mission_engine_timeout"),
                                        progress_period=p("progress_period"))
        self.models = ModelCommands(self, self.outgoing.answer, lambda: self.gate.keyring, data_dir / "deploy",
                                    engine=p("intelligence_engine"), timeout=p("mission_engine_timeout"),
                                    update_timeout=p("model_update_timeout"), require_ed25519=p("require_hybrid"))
        self.create_subscription(MissionState, "mission_states", self._on_mission_state, MISSION_STATES_QOS)
        self.replays = ReplayFilter(data_dir / "hub_latched.json")
        self.telemetry = Telemetry(self, self.outgoing, self.replays, self.max_telemetry_bytes)
        specs, self.rejected_streams = parse_streams(p("streams"))
        for spec in specs:
            self.telemetry.add(spec)
        self.rejected_streams.update(self.telemetry.refused)
        self.streams = self.telemetry.streams
        for name, why in self.rejected_streams.items():
            self.get_logger().error(f"telemetry stream {name} refused: {why}")
        self.link = HubLink(config_from_parameters(p, self.topics, self.outgoing.offline_will()), self.queue,
                            on_message=self._on_mqtt_message, sign=self.outgoing.sign)
        self.outgoing.link = self.link
        self.create_timer(p("status_period"), self._publish_status, clock=self._steady_clock)
        self.telemetry.start([(p("seal_period"), self.outgoing.seal), (1.0, self.replays.flush)])  # its thread
        self.add_on_set_parameters_callback(self._on_set_parameters)  # checks and applies hub_public_keys
        self.on_parameter("hub_public_keys")
        # The link starts on the first spin: a command that arrives must find the node in its executor.
        self._start_timer = self.create_timer(0.01, self._start_link)
        self.serve([ServedKind(reports.REPORT, self._report)])
        self.start()

    def _start_link(self) -> None:
        self.destroy_timer(self._start_timer)
        self._publish_status()
        self.link.start()

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _report(self, request, context):
        data = reports.report_data(request.parameters["name"], request.mission_id, request.task_id,
                                   request.parameters["content"], self.max_telemetry_bytes)
        return reports.report_result(reports.enqueue(self.outgoing, data), data)

    def _on_mission_state(self, message: MissionState) -> None:
        state = codec.to_dict(message)
        self.board.update(state)
        self.missions.on_mission_state(state)

    # -- Commands -------------------------------------------------------------------------------

    def _on_mqtt_message(self, topic: str, payload: bytes) -> None:
        """On the MQTT network thread: check, then hand a good command to the executor thread."""
        try:
            command = self.gate.check(topic, payload)
        except CommandRejected as rejection:
            line = self.gate.log.line(rejection)
            if line:
                self.get_logger().warning(line)
            parsed, robot = parse_topic(topic), self.robot_id
            if rejection.answer and parsed is not None and parsed.kind == "cmd" and rejection.verb:
                self.outgoing.reply(rejection.verb, lambda stamp, r=rejection: rejection_reply(r, robot, stamp))
            return
        self.get_logger().info(f"command {command.id}: {command.verb} (signed by {', '.join(command.signed_by)})")
        if command.verb == "resend":
            self.link.resend(command.body["stream"], command.body["ranges"])
            self.outgoing.answer(command, "done", message=f"sending {command.body['stream']} again")
            return
        call_soon(self, self.models.run if command.verb in ("deploy_model", "rollback_model") else self.missions.run,
                  command)

    def _on_set_parameters(self, parameters):
        from rcl_interfaces.msg import SetParametersResult

        for parameter in parameters:
            if parameter.name == "hub_public_keys":
                keyring, errors, missing = Keyring.from_files(list(parameter.value or []))
                if errors or missing:
                    return SetParametersResult(successful=False, reason="; ".join(
                        [*errors, *(f"{path}: no such file" for path in missing)]))
                self.gate.keyring, self.key_errors, self.missing_keys = keyring, [], []
                self.get_logger().info(f"hub keys reloaded: {', '.join(keyring.keys) or 'none'}")
        return SetParametersResult(successful=True)

    # -- Status and health ------------------------------------------------------------------------

    def _status(self, state: str = "online") -> bytes:
        return self.outgoing.status({
            "state": state, "robot": self.robot_id, "fleet": self.topics.fleet, "stamp": time.time(),
            "missions": self.board.summary(), "link": self.link.stats(),
            "commands": {"accepted": self.gate.accepted,
                         "rejected": {code: n for code, n in self.gate.rejected.items() if n}},
            "streams": {name: s.counts for name, s in self.streams.items()}, "streams_refused": self.rejected_streams})

    def _publish_status(self) -> None:
        self.link.publish_status(self._status())

    def health(self):
        return link_health(self.link, self.gate, self.missions.following, self.rejected_streams, self.key_errors,
                           self.missing_keys, self.key_error)

    def extra_statuses(self):
        return [(f"stream {name}", Level.WARN if s.last_error else Level.OK, s.last_error or s.spec.topic,
                 dict(s.counts)) for name, s in self.streams.items()]

    def destroy_node(self) -> None:
        self.telemetry.stop()
        self.link.stop(final_status=self._status("offline"))
        self.gate.nonces.close()
        super().destroy_node()


def main(args=None) -> int:
    return spin_node(HubLinkNode, args)


if __name__ == "__main__":
    sys.exit(main())
