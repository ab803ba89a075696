"""Where a config key was written: file and line from provenance, most specific first."""

from __future__ import annotations

from collections.abc import Mapping

Provenance = Mapping[str, tuple[str, int | None]]


def locate(key: str | None, provenance: Provenance) -> tuple[str | None, int | None]:
    """File and line of ``key``, else of its nearest parent key that has a provenance.

    ``data.patients.schema.columns.email.pii`` falls back to ``…columns.email``, then
    ``…columns`` and so on up to ``data``; ``(None, None)`` when nothing matches.
    """
    while key:
        origin = provenance.get(key)
        if origin is not None:
            return origin[0], origin[1]
        key, _, _ = key.rpartition(".")
    return None, None
