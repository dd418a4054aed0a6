"""quantum_bridge: solves route and assignment problems on qiskit-aer, a cloud QPU or classically.

The ROS shell around the qai_quantum_bridge core. So far it declares its parameters, beats on /diagnostics and
announces the task kinds it serves (none yet).
"""

import sys

from qai_edge.engine_node import EngineNode, spin_node
from qai_quantum_bridge.parameters import PARAMETERS


class QuantumBridge(EngineNode):
    def __init__(self, **kwargs):
        super().__init__("quantum_bridge", PARAMETERS, **kwargs)
        self.start()


def main(args=None):
    return spin_node(QuantumBridge, args)


if __name__ == "__main__":
    sys.exit(main())
