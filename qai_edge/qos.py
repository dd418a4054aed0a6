"""The QoS profiles qai_edge's topics and actions use, and why."""

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

# Late joiners (a restarted mission engine, `ros2 topic echo`) get every engine's last announcement.
CAPABILITIES_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Late joiners (a client following a mission, rqt) get the recent mission states.
MISSION_STATES_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Action goal/result/cancel services, on servers and clients alike. The default (keep last 10) overwrites
# unacknowledged requests in a burst (a mission starting hundreds of tasks at once) and their results
# never come.
ACTION_SERVICES_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.VOLATILE)
ACTION_QOS_ARGUMENTS = {f"{service}_service_qos_profile": ACTION_SERVICES_QOS
                        for service in ("goal", "result", "cancel")}
