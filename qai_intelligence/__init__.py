"""Intelligence engine: liquid neural networks (ncps) and reinforcement learning."""
