"""Parameters this engine declares beyond the common ones (qai_edge.params.COMMON_PARAMETERS).

Read by the node (as ROS parameter descriptors) and by the profile validator; config/edge.yaml documents
the defaults.
"""

from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = ()
