"""Quantum bridge: optimisation problems on qiskit-aer or a cloud QPU, with a classical fallback."""
