"""Parameters this engine declares beyond the common ones (qai_edge.params.COMMON_PARAMETERS).

Read by the node (as ROS parameter descriptors) and by the profile validator; config/edge.yaml documents
the defaults.
"""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = ()

NODE = NodeType("intelligence_engine", "qai_intelligence.node:main",
                "liquid neural networks and reinforcement learning", PARAMETERS)
