"""io_engine: moves the vehicle and reads its sensors over DDS.

The ROS shell around the qai_io core. So far it declares its parameters, beats on /diagnostics and
announces the task kinds it serves (none yet).
"""

import sys

from qai_edge.engine_node import EngineNode, spin_node
from qai_io.parameters import PARAMETERS


class IoEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("io_engine", PARAMETERS, **kwargs)
        self.start()


def main(args=None):
    return spin_node(IoEngine, args)


if __name__ == "__main__":
    sys.exit(main())
