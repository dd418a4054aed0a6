"""The hub link's plain parts, and the hub operator's side (`qai-hub`). No rclpy import.

Topics, the JSON codec, the on-disk queue, command signing, the command gate, the MQTT connection, the
fleet view. Only `codec` imports ROS packages (message introspection), so a hub machine runs `qai-hub`
without ROS.
"""
