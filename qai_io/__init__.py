"""I/O engine: sensors and actuators over DDS; telemetry and commands over MQTT."""
