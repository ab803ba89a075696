"""Planning: a pure function of (desired system, recorded state) to a frozen Plan."""
