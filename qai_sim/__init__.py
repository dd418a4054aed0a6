"""The simulated vehicle: what tests, training and the demo fly where there is no robot and no Gazebo.

vehicle_model (multirotor or ground robot, battery, IMU, GPS, wind and injected faults; no rclpy),
simulation (closed-loop runs of the model with the I/O engine's controller, in-process; no rclpy), and
the `sim_vehicle` node (node, parameters), which speaks Gazebo's topics (`cmd_vel` in; `odom`,
`imu/data`, `battery_state`, `navsat/fix`, `/clock` out), so the same engines fly it or Gazebo.
"""
