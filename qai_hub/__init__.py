"""The hub machine's programs: no ROS anywhere in this package.

The operator's `qai-hub` CLI (cli), the browser dashboard `qai-hub serve` (dashboard, dashboard_feed,
dashboard_auth, dashboard_static), the fleet model both build on (fleet), a connected hub session and the
survey helper the demo uses (session, survey). `protocol` is the wire protocol robot and hub share: the
specification a hub written in any language follows; the robot's side (qai_io.hub_link) imports it too.
"""
