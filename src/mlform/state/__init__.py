"""Recorded state: what mlform last applied, versioned, locked and kept in history."""
