"""I/O engine: sensors and actuators over DDS (io_engine), and the robot's side of the hub link (hub_link)."""
