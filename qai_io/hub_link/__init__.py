"""The robot's side of the hub link (the hub_link node's plain parts). No rclpy import.

The JSON codec of ROS messages (codec), the on-disk queue (queue), telemetry streams (streams), the MQTT
connection (link), the command gate with its nonce store (commands), and reports (reports). The wire
protocol itself lives in qai_hub.protocol, which the hub imports too. Only `codec` imports ROS packages
(message introspection, no rclpy).
"""
