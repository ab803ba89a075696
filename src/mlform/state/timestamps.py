"""RFC 3339 timestamps in UTC, as recorded in state, locks and history."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """The current time as RFC 3339 UTC with a ``Z`` suffix, e.g. ``2024-05-01T12:00:00Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
