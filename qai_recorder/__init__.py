"""qai_recorder: the robot's flight recorder, rosbag2 bags with MCAP storage, one per mission."""
