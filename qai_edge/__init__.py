"""qai_edge: shared pieces of the engines (parameters, profile, supervision, node shell)."""
