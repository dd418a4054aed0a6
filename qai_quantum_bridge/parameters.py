"""Parameters the quantum bridge declares beyond the common ones; config/edge.yaml documents the defaults.

Read-only ones are read once at start. The others may change at run time (`ros2 param set`): the node
validates them together (choices, a known technology profile) in a set-parameters callback, refuses a
bad set with the reason, and applies a good one to the next job. No rclpy import.
"""

from qai_edge.nodes import NodeType
from qai_edge.params import ParamSpec
from qai_quantum_bridge.bridge import BACKENDS, PREFERENCES

SOLVER_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("default_solver", "auto", "auto, classical or quantum, when a request says auto/nothing",
              choices=PREFERENCES),
    ParamSpec("default_backend", "statevector_diagonal", "statevector_diagonal (the diagonal-QAOA kernel: "
              "noiseless QAOA; jobs with a technology profile and circuit jobs take aer_statevector), "
              "aer_statevector, aer_mps, aer_density_matrix or qpu", choices=BACKENDS),
    ParamSpec("default_profile", "", "technology profile used when a request names none; empty: ideal"),
    ParamSpec("default_deadline", 10.0, "s a job may take when it gives no deadline", min=0.01, max=86400.0),
    ParamSpec("shots", 1024, "samples per circuit evaluation", min=1, max=1000000),
    ParamSpec("qaoa_layers", 2, "QAOA depth p", min=1, max=20),
    ParamSpec("qaoa_maxiter", 60, "most optimiser iterations", min=1, max=10000),
    ParamSpec("cvar_alpha", 0.25, "share of best samples the objective averages (CVaR); 1: the mean", min=0.01,
              max=1.0),
    ParamSpec("qaoa_precision", "double", "the diagonal kernel's state: double (complex128) or single "
              "(complex64: half the memory, ~1e-7 agreement); the result's metadata says which",
              choices=("double", "single")),
)

# Bounds on every input, checked before anything is built or allocated (a job beyond one is refused with
# the field, the limit and the value). Memory is checked beside them, per backend. Read at start: the
# task kinds' schemas announced to the mission engine carry them.
LIMIT_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("max_circuit_qubits", 64, "qubits a run_circuit job may declare (each backend also checks the "
              "memory it would need)", min=1, max=1024, read_only=True),
    ParamSpec("max_circuit_gates", 100000, "gates (operations) in a run_circuit job", min=1, max=10000000,
              read_only=True),
    ParamSpec("max_circuit_text", 1048576, "characters of OpenQASM text, or of a JSON gate list given as text",
              min=64, max=67108864, read_only=True),
    ParamSpec("max_shots", 100000, "shots a job may ask for", min=1, max=1000000, read_only=True),
    ParamSpec("max_qubo_variables", 64, "variables of a solve_qubo job or an Optimize QUBO/Ising problem", min=1,
              max=4096, read_only=True),
    ParamSpec("max_quadratic_terms", 10000, "quadratic terms of a QUBO/Ising problem", min=1, max=10000000,
              read_only=True),
    ParamSpec("max_waypoints", 64, "waypoints of a route (the QUBO has (n-1)^2 variables; larger routes are "
              "answered by 2-opt)", min=2, max=10000, read_only=True),
    ParamSpec("max_assignment_cells", 4096, "tasks x agents of an assignment", min=1, max=10000000, read_only=True),
)

PARAMETERS: tuple[ParamSpec, ...] = (
    *SOLVER_PARAMETERS,
    *LIMIT_PARAMETERS,
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
    ParamSpec("worker_threads", 2, "jobs (tasks and Optimize goals) that run at once", min=1, max=64,
              read_only=True),
)

NODE = NodeType("quantum_bridge", "qai_quantum_bridge.node:main",
                "optimisation on a QAOA kernel, qiskit-aer or a cloud QPU, with classical fallback", PARAMETERS)
