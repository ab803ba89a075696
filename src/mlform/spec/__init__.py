"""The system spec: pydantic models of every config section (``extra="forbid"``)."""
