"""Mission engine: runs missions, graphs of tasks, across the engines."""
