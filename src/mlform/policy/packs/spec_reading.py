"""Small readers over the spec dict that several packs share.

The spec is JSON-like data (possibly built by hand, as in tests and benchmarks), so
every reader tolerates missing keys and wrong shapes: a pack reports violations, it
does not re-validate the config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def dig(data: Any, *path: str) -> Any:
    """``data[p0][p1]…``, or None where any step is missing or not a mapping."""
    for part in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def pii_columns(source: Mapping[str, Any]) -> list[str]:
    """Names of the columns a data source marks ``pii: true``, in schema order."""
    columns = dig(source, "schema", "columns") or {}
    if not isinstance(columns, Mapping):
        return []
    return [name for name, col in columns.items() if isinstance(col, Mapping) and col.get("pii")]


def served_models(deployment: Mapping[str, Any]) -> Iterator[str]:
    """Every model a deployment serves: its model, A/B variants and a shadow model."""
    model = deployment.get("model")
    if isinstance(model, str):
        yield model
    strategy = deployment.get("strategy") or {}
    if not isinstance(strategy, Mapping):
        return
    for variant in strategy.get("variants") or ():
        if isinstance(variant, Mapping) and isinstance(variant.get("model"), str):
            yield variant["model"]
    if strategy.get("type") == "shadow" and isinstance(strategy.get("model"), str):
        yield strategy["model"]


def gpu_count(obj: Mapping[str, Any], spec: Mapping[str, Any]) -> int:
    """GPUs per replica of an object's resource profile (0 without one).

    ``resources`` is either the expanded profile (``{"profile": name, "gpu": …}``, as
    :class:`~mlform.spec.declared.DeclaredObject` holds it) or a profile name to look up
    under ``resources.profiles``.
    """
    profile = obj.get("resources")
    if isinstance(profile, str):
        profile = dig(spec, "resources", "profiles", profile)
    count = dig(profile, "gpu", "count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def peak_replicas(deployment: Mapping[str, Any]) -> int:
    """The most replicas a deployment may run: ``autoscaling.max_replicas`` or ``replicas``."""
    replicas = deployment.get("replicas", 1)
    replicas = replicas if isinstance(replicas, int) else 1
    maximum = dig(deployment, "autoscaling", "max_replicas")
    return max(replicas, maximum) if isinstance(maximum, int) else replicas
