"""Parameters of hub_link (beyond the common ones); config/edge.yaml documents the defaults. No rclpy import."""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

DEFAULT_STREAMS = [
    "odom: topic=odom type=nav_msgs/msg/Odometry rate=10 qos=1 priority=3 ttl=600 ros_qos=sensor",
    "battery_state: topic=battery_state type=sensor_msgs/msg/BatteryState rate=1 qos=1 priority=6 ttl=3600 "
    "ros_qos=sensor",
    "mission_states: topic=mission_states type=qai_interfaces/msg/MissionState qos=1 priority=8 ttl=86400 "
    "ros_qos=latched",
    "diagnostics: topic=/diagnostics type=diagnostic_msgs/msg/DiagnosticArray rate=1 qos=1 priority=5 ttl=600 "
    "summary=true",
    "events: topic=events type=qai_interfaces/msg/Event qos=1 priority=9 ttl=86400",
    "endurance: topic=predictions/endurance type=qai_interfaces/msg/EndurancePrediction rate=1 qos=1 priority=5 "
    "ttl=600",
    # For the hub's dashboard: each engine's announcement (its kinds, the geofence in their schemas, and its
    # start stamp, which tells a restart).
    "capabilities: topic=engine_capabilities type=qai_interfaces/msg/EngineCapabilities qos=1 priority=4 ttl=60 "
    "ros_qos=latched",
]

PARAMETERS: tuple[ParamSpec, ...] = (
    # Where the hub is.
    ParamSpec("fleet", "fleet", "Fleet name: <fleet> in the MQTT topics qai/<fleet>/<robot>/...", read_only=True),
    ParamSpec("broker_host", "127.0.0.1", "MQTT broker host.", read_only=True),
    ParamSpec("broker_port", 18830, "MQTT broker port (qai-edge up starts a local broker on the profile's "
              "broker.port).", min=1, max=65535, read_only=True),
    ParamSpec("mqtt_protocol", "auto", "MQTT version: auto (5, or 3.1.1 when the broker refuses 5), 5 or 3.1.1.",
              read_only=True, choices=("auto", "5", "3.1.1")),
    ParamSpec("keepalive", 15, "s between MQTT keepalive pings; a silent broker is dropped after 1.5 times this.",
              min=5, max=600, read_only=True),
    ParamSpec("username", "", "MQTT username; empty: none.", read_only=True),
    ParamSpec("password_file", "", "File holding the MQTT password (never the password itself in a profile).",
              read_only=True),
    ParamSpec("tls", False, "Use TLS (also implied by any tls_* file).", read_only=True),
    ParamSpec("tls_ca", "", "CA certificate (PEM) the broker's certificate must chain to; empty: the system's CAs.",
              read_only=True),
    ParamSpec("tls_cert", "", "Client certificate (PEM), for brokers that require one.", read_only=True),
    ParamSpec("tls_key", "", "Client private key (PEM) of tls_cert.", read_only=True),
    ParamSpec("connect_timeout", 5.0, "s to wait for the TCP/TLS connection and the broker's CONNACK.",
              min=0.5, max=120.0, read_only=True),
    ParamSpec("reconnect_initial", 0.5, "s before the first reconnect; doubles per failed attempt (with jitter).",
              min=0.05, max=60.0, read_only=True),
    ParamSpec("reconnect_max", 30.0, "s between reconnect attempts at most.", min=0.5, max=3600.0, read_only=True),
    ParamSpec("session_expiry", 300, "s the broker keeps this robot's MQTT session (subscriptions, QoS 1 commands) "
              "while it is away (MQTT 5).", min=0, max=86400 * 7, read_only=True),
    ParamSpec("ping_period", 5.0, "s between round-trip probes through the broker (rtt_ms on /diagnostics).",
              min=0.5, max=600.0, read_only=True),
    ParamSpec("ping_timeout", 30.0, "s without a probe coming back after which the connection counts as dead "
              "and is made again.", min=2.0, max=3600.0, read_only=True),
    # Telemetry.
    ParamSpec("streams", DEFAULT_STREAMS, "Telemetry streams, one per entry: 'name: topic=... type=pkg/msg/Type "
              "rate=Hz qos=0|1 priority=0-9 ttl=s ros_qos=sensor|reliable|latched depth=N summary=true|false' "
              "(docs/hub_link.md).", item_type=str, read_only=True),
    ParamSpec("status_period", 2.0, "s between updates of the retained status.", min=0.1, max=600.0, read_only=True),
    ParamSpec("max_telemetry_bytes", 65536, "Largest encoded telemetry message; a larger one is dropped and "
              "counted.", min=256, max=1 << 20, read_only=True),
    # The queue.
    ParamSpec("data_dir", "~/.ros/qai_edge", "Directory of the queue, the nonce store and the robot's key "
              "(<data_dir>/<robot_id>/hub_queue.db, hub_nonces.db, robot.mldsa65.key).", read_only=True),
    ParamSpec("robot_key", "", "The robot's ML-DSA-65 private key (PEM, mode 0600), which signs what it sends the "
              "hub; empty: <data_dir>/<robot_id>/robot.mldsa65.key, made at the first start when missing "
              "(qai-edge keygen makes it ahead). The hub enrolls its public key (.pub beside it).", read_only=True),
    ParamSpec("seal_period", 1.0, "s between seals: the signed digests of the telemetry sent since the last one "
              "(the streams not signed message by message).", min=0.05, max=60.0, read_only=True),
    ParamSpec("history_window", 600.0, "s a message the broker acknowledged stays on disk, to be sent again when "
              "the hub asks (a broker that acknowledged and then lost it); 0: none kept.", min=0.0,
              max=7 * 86400.0, read_only=True),
    ParamSpec("history_max_bytes", 67108864, "Payload bytes of that history at most (the oldest go first).",
              min=0, max=1 << 40, read_only=True),
    ParamSpec("queue_max_messages", 200000, "Messages the on-disk queue holds at most; then the lowest-priority "
              "oldest are dropped and reported.", min=100, max=100_000_000, read_only=True),
    ParamSpec("queue_max_bytes", 268435456, "Payload bytes the on-disk queue holds at most (same policy).",
              min=65536, max=1 << 40, read_only=True),
    ParamSpec("queue_sync", "normal", "normal: a queued message survives a crash or SIGKILL of the node; full: also "
              "a power loss (an fsync per commit).", read_only=True, choices=("normal", "full")),
    ParamSpec("max_inflight", 1000, "QoS 1 messages sent and not yet acknowledged by the broker, at most.",
              min=1, max=60000, read_only=True),
    ParamSpec("drain_rate", 2000.0, "Messages a second sent from the backlog an outage left, beside live data.",
              min=1.0, max=1_000_000.0, read_only=True),
    ParamSpec("max_pending", 10000, "Messages taken from ROS and not yet written to the queue, at most (more are "
              "counted as overflowed).", min=100, max=1_000_000, read_only=True),
    # Commands.
    ParamSpec("hub_public_keys", ["~/.config/qai-hub/hub.mldsa65.pub"], "PEM public keys of the hub (ML-DSA-65, "
              "and Ed25519 for hybrid signatures); several, so a key can be rotated. Re-read when set at run time.",
              item_type=str),
    ParamSpec("require_hybrid", False, "Require an Ed25519 signature beside the ML-DSA-65 one.", read_only=True),
    ParamSpec("command_window", 30.0, "s a command stays valid either side of this robot's clock (older or newer "
              "ones are refused as expired).", min=1.0, max=3600.0, read_only=True),
    ParamSpec("max_command_bytes", 327680, "Largest command payload; a larger one is refused unread (a deploy_model "
              "carries a checkpoint of up to 192 KiB as base64).",
              min=1024, max=1 << 20, read_only=True),
    ParamSpec("max_command_depth", 32, "Deepest JSON nesting of a command.", min=4, max=256, read_only=True),
    ParamSpec("max_command_rate", 50.0, "Command signatures checked a second at most (each ML-DSA-65 check costs "
              "about 0.3 ms); a command past it is refused as rate_limited and the hub sends it again. Junk is "
              "refused before its signature is checked and does not count.", min=0.1, max=10000.0, read_only=True),
    ParamSpec("max_command_input", 4194304, "Command bytes a second parsed at most; past it commands are dropped "
              "unread and unanswered (a flood is not echoed).", min=65536, max=1 << 30, read_only=True),
    ParamSpec("mission_engine_timeout", 10.0, "s to wait for the mission (or intelligence) engine's action or "
              "service to be there, or to answer a mission command, before answering engine_unavailable.", min=0.5,
              max=600.0, read_only=True),
    ParamSpec("intelligence_engine", "intelligence_engine", "Node name of the intelligence engine (in this robot's "
              "namespace) whose activate_model and rollback_model the hub's deploy_model and rollback_model call.",
              read_only=True),
    ParamSpec("model_update_timeout", 300.0, "s to wait for the intelligence engine's promotion gate to decide a "
              "deployed model before answering engine_unavailable.", min=1.0, max=3600.0, read_only=True),
    ParamSpec("progress_period", 0.5, "s between two progress replies of one mission, at least.",
              min=0.0, max=60.0, read_only=True),
)

NODE = NodeType("hub_link", "qai_io.hub_node:main", "the link to the hub over MQTT: telemetry, signed commands",
                PARAMETERS)
