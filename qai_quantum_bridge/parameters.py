"""Parameters the quantum bridge declares beyond the common ones; config/edge.yaml documents the defaults."""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("default_solver", "auto", "auto, classical or quantum, when a request says auto/nothing"),
    ParamSpec("default_backend", "aer_statevector", "aer_statevector, aer_mps, aer_density_matrix or qpu"),
    ParamSpec("default_profile", "", "technology profile used when a request names none; empty: ideal"),
    ParamSpec("default_deadline", 10.0, "s a job may take when it gives no deadline", min=0.01, max=86400.0),
    ParamSpec("shots", 1024, "samples per circuit evaluation", min=1, max=1000000),
    ParamSpec("qaoa_layers", 2, "QAOA depth p", min=1, max=20),
    ParamSpec("qaoa_maxiter", 60, "most optimiser iterations", min=1, max=10000),
    ParamSpec("cvar_alpha", 0.25, "share of best samples the objective averages (CVaR); 1: the mean", min=0.01,
              max=1.0),
    ParamSpec("profiles_file", "", "technology profiles YAML; empty: the installed config/quantum_profiles.yaml",
              read_only=True),
    ParamSpec("qpu_backend", "", "IBM Quantum backend name (e.g. ibm_torino)", read_only=True),
    ParamSpec("qpu_fake", "", "a qiskit-ibm-runtime fake backend (e.g. fake_guadalupe) standing in for the QPU "
              "offline, through the same code path", read_only=True),
    ParamSpec("qpu_channel", "ibm_quantum_platform", "qiskit-ibm-runtime channel", read_only=True),
    ParamSpec("qpu_instance", "", "IBM Cloud instance (CRN or name)", read_only=True),
    ParamSpec("qpu_token_file", "", "file holding the IBM Quantum token (or set QISKIT_IBM_TOKEN); never in the "
              "repo", read_only=True),
    ParamSpec("qpu_timeout", 30.0, "s: every call to the QPU service, then it counts as unreachable", min=1.0,
              max=3600.0, read_only=True),
)

NODE = NodeType("quantum_bridge", "qai_quantum_bridge.node:main",
                "optimisation on qiskit-aer or a cloud QPU, with classical fallback", PARAMETERS)
