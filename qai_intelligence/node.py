"""intelligence_engine: predicts, controls and decides with liquid neural networks and RL.

The ROS shell around the qai_intelligence core. So far it declares its parameters, beats on /diagnostics and
announces the task kinds it serves (none yet).
"""

import sys

from qai_edge.engine_node import EngineNode, spin_node
from qai_intelligence.parameters import PARAMETERS


class IntelligenceEngine(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("intelligence_engine", PARAMETERS, **kwargs)
        self.start()


def main(args=None):
    return spin_node(IntelligenceEngine, args)


if __name__ == "__main__":
    sys.exit(main())
