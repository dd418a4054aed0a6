"""Parameters the intelligence engine declares beyond the common ones (qai_edge.params.COMMON_PARAMETERS).

Read by the node (as ROS parameter descriptors) and by the profile validator; config/edge.yaml documents the
defaults. No rclpy, no torch here.
"""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_store", "~/.ros/qai_edge/models", "Directory of the versioned model store (<model_store>/"
              "<robot_id>/<model>/v0001 ...); an empty store starts from the models shipped with the package.",
              read_only=True),
    ParamSpec("endurance_period", 1.0, "s between endurance predictions", min=0.1, max=60.0, read_only=True),
    ParamSpec("anomaly_period", 0.05, "s between anomaly scores (the model was trained at 0.05)", min=0.01,
              max=1.0, read_only=True),
    ParamSpec("policy_enabled", True, "Answer control/target with the learned policy's control/cmd_vel (the "
              "io_engine's controller: external)", read_only=True),
    ParamSpec("state_reset_gap", 1.0, "s without a tick after which a model's hidden state starts afresh "
              "(endurance: at least 5 ticks)", min=0.05, max=60.0, read_only=True),
    ParamSpec("payload", 0.0, "kg the vehicle carries (an input of the endurance model)", min=0.0, max=100.0),
    ParamSpec("home", [], "x, y, z of home; empty: where the first odometry put the vehicle", item_type=float,
              read_only=True),
    ParamSpec("return_speed", 3.0, "m/s the return home flies (the io_engine's default_speed)", min=0.1, max=50.0),
    ParamSpec("return_altitude", 10.0, "m the return home climbs to at least (the io_engine's return_altitude)",
              min=0.0, max=500.0),
    ParamSpec("landed_altitude", 0.3, "m (odom z): at or below this the vehicle is on the ground, and a watch "
              "beside its flight ends (the io_engine's landed_altitude)", min=0.0, max=100.0),
    ParamSpec("climb_rate", 2.0, "m/s of climb on the way home", min=0.1, max=20.0),
    ParamSpec("landing_speed", 0.8, "m/s of descent when landing (the io_engine's landing_speed)", min=0.1,
              max=5.0),
    ParamSpec("endurance_margin", 30.0, "s added to what the return home needs", min=0.0, max=3600.0),
    ParamSpec("endurance_margin_fraction", 0.2, "share of the return's time added on top of it", min=0.0,
              max=10.0),
    ParamSpec("battery_timeout", 5.0, "s after the last valid battery reading at which endurance ticks stop",
              min=0.5, max=600.0),
    ParamSpec("anomaly_threshold", 0.0, "score above which an anomaly is raised; 0: the model's own, chosen on "
              "validation flights", min=0.0, max=1e6),
    ParamSpec("anomaly_refractory", 2.0, "s after an anomaly event before the next may go out", min=0.0,
              max=3600.0),
    ParamSpec("max_policy_speed", 8.0, "m/s: the policy's commands are clipped to this (the io_engine holds "
              "them further to the task's speed over the ground)", min=0.1, max=50.0),
    ParamSpec("gate_margin", 0.02, "fraction of the active model's gate score a candidate must be better by "
              "(the 95 % interval of the paired difference wholly below it) to be activated", min=0.0, max=10.0),
    ParamSpec("model_keys", ["~/.config/qai-hub/hub.mldsa65.pub"], "PEM public keys of the hub whose signature "
              "a checkpoint given to activate_model must carry (hub_signature.json, written by qai-hub deploy-model); "
              "a version already in the robot's store needs none", item_type=str, read_only=True),
    ParamSpec("unsigned_checkpoints", False, "Accept checkpoints without a hub signature from any directory "
              "(development only: then any ROS peer that can call activate_model may offer a model to the gate)",
              read_only=True),
    ParamSpec("max_path_length", 4096, "characters allowed in a checkpoint path given to activate_model",
              min=16, max=65536, read_only=True),
)

# Writable parameters and the attribute each sets: of the return plan, or of the core.
APPLIED_PARAMETERS = {"return_speed": ("plan", "speed"), "return_altitude": ("plan", "altitude"),
                      "climb_rate": ("plan", "climb_rate"), "landing_speed": ("plan", "landing_speed"),
                      "endurance_margin": ("plan", "margin"), "endurance_margin_fraction": ("plan", "margin_fraction"),
                      "battery_timeout": ("core", "battery_timeout"), "anomaly_refractory": ("core", "refractory"),
                      "max_policy_speed": ("core", "max_policy_speed"),
                      "landed_altitude": ("core", "landed_altitude")}

NODE = NodeType("intelligence_engine", "qai_intelligence.node:main",
                "liquid neural networks and reinforcement learning", PARAMETERS)
