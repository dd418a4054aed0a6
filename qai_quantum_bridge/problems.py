"""Optimisation problems as the bridge sees them. No rclpy import.

Each builds its QuadraticProgram (qiskit-optimization), whose QUBO conversion (QuadraticProgramToQubo:
constraints become penalties, inequalities get slack bits) gives the circuits their cost Hamiltonian.
Each problem decodes a bitstring of its own variables back into its own terms, checks feasibility, and
scores a solution in its own units.

Encodings (qubits = binary variables of the QUBO):
- assignment, 2 agents: one bit per task (1: agent 1), capacities as bounds on the bit sum;
  more agents: one-hot x[t, r] with one agent per task and a capacity per agent;
- route with a fixed start: one-hot x[c, p] over the other n - 1 waypoints and the n - 1 positions
  after the start ((n - 1)^2 qubits); qiskit-optimization's Tsp application has no fixed start, so the
  program is built here with its QuadraticProgram;
- QUBO and Ising: given directly (Ising through qiskit-optimization's from_ising).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


class ProblemError(ValueError):
    """A problem that cannot be solved as given; the message names the field."""


@dataclass
class Solution:
    """A candidate in the problem's own terms."""

    bits: tuple[int, ...]  # values of the problem's own binary variables (no slack bits)
    feasible: bool
    cost: float  # in the problem's units; inf when infeasible
    route: list[int] | None = None
    assignment: list[int] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _finite_matrix(values: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    try:
        matrix = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ProblemError(f"{name}: expected a matrix of numbers") from None
    if matrix.ndim != 2:
        raise ProblemError(f"{name}: expected a matrix (rows of numbers), got {matrix.ndim} dimension(s)")
    if shape is not None and matrix.shape != shape:
        raise ProblemError(f"{name}: expected {shape[0]} x {shape[1]}, got {matrix.shape[0]} x {matrix.shape[1]}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        i, j = bad[0]
        raise ProblemError(f"{name}[{i}][{j}]: {matrix[i, j]} is not a finite number")
    return matrix


def _checked_pairs(pairs: dict | None, n: int, allow_diagonal: bool) -> dict[tuple[int, int], float]:
    """Return quadratic terms {(i, j): value} checked: indices in range, values finite.

    (i, j) and (j, i) are merged as i < j; diagonal terms are kept as (i, i) where allowed.
    """
    checked: dict[tuple[int, int], float] = {}
    for (i, j), value in (pairs or {}).items():
        if i == j and not allow_diagonal:
            raise ProblemError(f"quadratic: ({i}, {j}) couples a spin to itself")
        if not (0 <= i < n and 0 <= j < n):
            raise ProblemError(f"quadratic: index ({i}, {j}) is out of range for {n} variables")
        if not math.isfinite(value):
            raise ProblemError(f"quadratic[({i}, {j})]: {value} is not a finite number")
        key = (min(i, j), max(i, j))
        checked[key] = checked.get(key, 0.0) + float(value)
    return checked


def _checked_offset(offset: float) -> float:
    if not math.isfinite(offset):
        raise ProblemError(f"offset: {offset} is not a finite number")
    return float(offset)


class Problem:
    kind = ""

    def quadratic_program(self):
        raise NotImplementedError

    @property
    def num_variables(self) -> int:
        raise NotImplementedError

    def decode(self, bits: Sequence[int]) -> Solution:
        raise NotImplementedError


class AssignmentProblem(Problem):
    """Assign each task to one agent, minimising total cost; an agent takes at most its capacity."""

    kind = "assignment"

    def __init__(self, costs: Any, capacities: Sequence[int] | None = None):
        self.costs = _finite_matrix(costs, "costs")
        self.num_tasks, self.num_agents = self.costs.shape
        if self.num_tasks < 1 or self.num_agents < 1:
            raise ProblemError("costs: needs at least one task and one agent")
        if capacities is None or len(capacities) == 0:
            self.capacities = [self.num_tasks] * self.num_agents
        else:
            if len(capacities) != self.num_agents:
                raise ProblemError(f"capacities: expected {self.num_agents} (one per agent), got {len(capacities)}")
            for r, cap in enumerate(capacities):
                if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 0:
                    raise ProblemError(f"capacities[{r}]: expected a non-negative integer, got {cap!r}")
            self.capacities = [min(int(c), self.num_tasks) for c in capacities]
        if sum(self.capacities) < self.num_tasks:
            raise ProblemError(f"capacities: {sum(self.capacities)} places in all for {self.num_tasks} tasks")
        self.compact = self.num_agents == 2

    @property
    def num_variables(self) -> int:
        return self.num_tasks if self.compact else self.num_tasks * self.num_agents

    def quadratic_program(self):
        from qiskit_optimization import QuadraticProgram

        qp = QuadraticProgram("assignment")
        if self.compact:
            for t in range(self.num_tasks):
                qp.binary_var(f"x{t}")
            # cost = sum c[t,0] + sum (c[t,1] - c[t,0]) x_t
            qp.minimize(constant=float(self.costs[:, 0].sum()),
                        linear={f"x{t}": float(self.costs[t, 1] - self.costs[t, 0]) for t in range(self.num_tasks)})
            on_one = {f"x{t}": 1 for t in range(self.num_tasks)}
            low, high = self.num_tasks - self.capacities[0], self.capacities[1]
            if low == high:
                qp.linear_constraint(on_one, "==", high, "share")
            else:
                if high < self.num_tasks:
                    qp.linear_constraint(on_one, "<=", high, "capacity_1")
                if low > 0:
                    qp.linear_constraint(on_one, ">=", low, "capacity_0")
            return qp
        for t in range(self.num_tasks):
            for r in range(self.num_agents):
                qp.binary_var(f"x{t}_{r}")
        qp.minimize(linear={f"x{t}_{r}": float(self.costs[t, r]) for t in range(self.num_tasks)
                            for r in range(self.num_agents)})
        for t in range(self.num_tasks):
            qp.linear_constraint({f"x{t}_{r}": 1 for r in range(self.num_agents)}, "==", 1, f"task_{t}")
        for r, cap in enumerate(self.capacities):
            if cap < self.num_tasks:
                qp.linear_constraint({f"x{t}_{r}": 1 for t in range(self.num_tasks)}, "<=", cap, f"capacity_{r}")
        return qp

    def decode(self, bits: Sequence[int]) -> Solution:
        bits = tuple(int(b) for b in bits[:self.num_variables])
        if self.compact:
            assignment = list(bits)
        else:
            assignment = []
            for t in range(self.num_tasks):
                row = bits[t * self.num_agents:(t + 1) * self.num_agents]
                if sum(row) != 1:
                    return Solution(bits, False, math.inf)
                assignment.append(row.index(1))
        return self.evaluate(assignment, bits)

    def evaluate(self, assignment: Sequence[int], bits: tuple[int, ...] = ()) -> Solution:
        counts = np.bincount(assignment, minlength=self.num_agents)
        feasible = len(assignment) == self.num_tasks and all(c <= cap for c, cap in zip(counts, self.capacities))
        cost = float(sum(self.costs[t, r] for t, r in enumerate(assignment))) if feasible else math.inf
        if not bits:
            bits = tuple(assignment) if self.compact else tuple(
                int(r == a) for a in assignment for r in range(self.num_agents))
        return Solution(bits, feasible, cost, assignment=list(assignment))


class RouteProblem(Problem):
    """Visit every waypoint once from a fixed start, minimising total distance (optionally back)."""

    kind = "route"

    def __init__(self, points: Any = None, distances: Any = None, start: int = 0, return_to_start: bool = False):
        if distances is not None and len(distances):
            self.distances = _finite_matrix(distances, "distances")
            n = self.distances.shape[0]
            if self.distances.shape != (n, n):
                raise ProblemError(f"distances: expected a square matrix, got {self.distances.shape}")
            if (self.distances < 0).any():
                i, j = np.argwhere(self.distances < 0)[0]
                raise ProblemError(f"distances[{i}][{j}]: {self.distances[i, j]} is negative")
        else:
            pts = _finite_matrix(points, "waypoints")
            if pts.shape[1] not in (2, 3):
                raise ProblemError(f"waypoints: expected [x, y] or [x, y, z] each, got {pts.shape[1]} numbers")
            self.distances = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
        self.n = self.distances.shape[0]
        if self.n < 2:
            raise ProblemError("waypoints: a route needs at least 2 waypoints")
        if not 0 <= start < self.n:
            raise ProblemError(f"start_index: {start} is out of range for {self.n} waypoints")
        self.start = start
        self.return_to_start = return_to_start
        self.others = [c for c in range(self.n) if c != start]

    @property
    def num_variables(self) -> int:
        return (self.n - 1) ** 2

    def quadratic_program(self):
        from qiskit_optimization import QuadraticProgram

        qp = QuadraticProgram("route")
        m = self.n - 1
        name = lambda c, p: f"x{c}_{p}"  # noqa: E731  waypoint c at position p (1..m) after the start
        for c in self.others:
            for p in range(1, m + 1):
                qp.binary_var(name(c, p))
        d = self.distances
        linear = {name(c, 1): float(d[self.start, c]) for c in self.others}
        if self.return_to_start:
            for c in self.others:
                linear[name(c, m)] = linear.get(name(c, m), 0.0) + float(d[c, self.start])
        quadratic = {}
        for p in range(1, m):
            for a in self.others:
                for b in self.others:
                    if a != b:
                        quadratic[(name(a, p), name(b, p + 1))] = float(d[a, b])
        qp.minimize(linear=linear, quadratic=quadratic)
        for c in self.others:
            qp.linear_constraint({name(c, p): 1 for p in range(1, m + 1)}, "==", 1, f"visit_{c}")
        for p in range(1, m + 1):
            qp.linear_constraint({name(c, p): 1 for c in self.others}, "==", 1, f"position_{p}")
        return qp

    def decode(self, bits: Sequence[int]) -> Solution:
        m = self.n - 1
        bits = tuple(int(b) for b in bits[:self.num_variables])
        order = [self.start]
        for p in range(1, m + 1):
            at = [c for i, c in enumerate(self.others) if bits[i * m + p - 1]]
            if len(at) != 1:
                return Solution(bits, False, math.inf)
            order.append(at[0])
        if len(set(order)) != self.n:
            return Solution(bits, False, math.inf)
        return self.evaluate(order, bits)

    def length(self, order: Sequence[int]) -> float:
        total = float(sum(self.distances[a, b] for a, b in zip(order, order[1:])))
        if self.return_to_start:
            total += float(self.distances[order[-1], self.start])
        return total

    def evaluate(self, order: Sequence[int], bits: tuple[int, ...] = ()) -> Solution:
        feasible = (len(order) == self.n and order[0] == self.start and sorted(order) == list(range(self.n)))
        if not bits:
            m = self.n - 1
            position = {c: p for p, c in enumerate(order)}
            bits = tuple(int(position.get(c) == p) for c in self.others for p in range(1, m + 1))
        return Solution(bits, feasible, self.length(order) if feasible else math.inf, route=list(order))


class QuboProblem(Problem):
    """Minimise x' Q x + offset over binary x: linear[i] on the diagonal, quadratic {(i, j): v} for i != j."""

    kind = "qubo"

    def __init__(self, num_variables: int, linear: Sequence[float] = (), quadratic: dict | None = None,
                 offset: float = 0.0):
        if num_variables < 1:
            raise ProblemError("num_variables: must be at least 1")
        self.n = num_variables
        self.linear = np.zeros(self.n)
        if len(linear):
            if len(linear) != self.n:
                raise ProblemError(f"linear: expected {self.n} values, got {len(linear)}")
            self.linear = _finite_matrix([list(linear)], "linear")[0]
        self.quadratic: dict[tuple[int, int], float] = {}
        for (i, j), value in _checked_pairs(quadratic, self.n, allow_diagonal=True).items():
            if i == j:
                self.linear[i] += value  # x_i^2 = x_i
            else:
                self.quadratic[(i, j)] = value
        self.offset = _checked_offset(offset)

    @property
    def num_variables(self) -> int:
        return self.n

    def quadratic_program(self):
        from qiskit_optimization import QuadraticProgram

        qp = QuadraticProgram("qubo")
        for i in range(self.n):
            qp.binary_var(f"x{i}")
        qp.minimize(constant=self.offset, linear={f"x{i}": float(v) for i, v in enumerate(self.linear) if v},
                    quadratic={(f"x{i}", f"x{j}"): v for (i, j), v in self.quadratic.items()})
        return qp

    def energy(self, bits: Sequence[int]) -> float:
        x = np.asarray(bits, dtype=float)
        value = self.offset + float(self.linear @ x)
        for (i, j), v in self.quadratic.items():
            value += v * x[i] * x[j]
        return value

    def decode(self, bits: Sequence[int]) -> Solution:
        bits = tuple(int(b) for b in bits[:self.n])
        return Solution(bits, True, self.energy(bits))


class IsingProblem(Problem):
    """Minimise sum h_i s_i + sum J_ij s_i s_j + offset over spins s in {-1, +1}.

    Bit 0 is s = +1, as qiskit-optimization's from_ising reads Z.
    """

    kind = "ising"

    def __init__(self, num_variables: int, h: Sequence[float] = (), couplings: dict | None = None,
                 offset: float = 0.0):
        if num_variables < 1:
            raise ProblemError("num_variables: must be at least 1")
        self.n = num_variables
        self.h = np.zeros(self.n) if not len(h) else _finite_matrix([list(h)], "linear")[0]
        if len(self.h) != self.n:
            raise ProblemError(f"linear: expected {self.n} values, got {len(self.h)}")
        self.couplings = _checked_pairs(couplings, self.n, allow_diagonal=False)
        self.offset = _checked_offset(offset)

    @property
    def num_variables(self) -> int:
        return self.n

    def quadratic_program(self):
        from qiskit.quantum_info import SparsePauliOp
        from qiskit_optimization.translators import from_ising

        terms = [("Z", [i], float(v)) for i, v in enumerate(self.h) if v]
        terms += [("ZZ", [i, j], v) for (i, j), v in self.couplings.items() if v]
        operator = SparsePauliOp.from_sparse_list(terms or [("", [], 0.0)], num_qubits=self.n)
        return from_ising(operator, offset=self.offset)

    def energy(self, spins: Sequence[int]) -> float:
        s = np.asarray(spins, dtype=float)
        return self.offset + float(self.h @ s) + sum(v * s[i] * s[j] for (i, j), v in self.couplings.items())

    def decode(self, bits: Sequence[int]) -> Solution:
        bits = tuple(int(b) for b in bits[:self.n])
        spins = [1 - 2 * b for b in bits]
        return Solution(bits, True, self.energy(spins), detail={"spins": spins})
