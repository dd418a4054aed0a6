"""mission_engine: runs missions, graphs of tasks, across the engines.

The ROS shell around the qai_mission core. So far it declares its parameters, beats on /diagnostics and
announces the task kinds it serves (none yet).
"""

import sys

from qai_edge.engine_node import EngineNode, spin_node
from qai_mission.parameters import PARAMETERS


class MissionEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("mission_engine", PARAMETERS, **kwargs)
        self.start()


def main(args=None):
    return spin_node(MissionEngine, args)


if __name__ == "__main__":
    sys.exit(main())
