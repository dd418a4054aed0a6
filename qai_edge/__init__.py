"""qai_edge: the shared base of the engines, and the system's own commands.

The base: parameters, profile, supervision, the engine node shell, task serving. The commands:
`qai-edge up/status/profile/demo` (cli, demo). Imports no engine.
"""
