"""Apply: walk a plan as a dependency graph, calling providers and committing state per step."""
