"""Building the engine's input from a loaded system: the spec rebuilt as one dict."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from mlform.policy.model import PolicyInput
from mlform.policy.pack import OBJECT_SECTIONS
from mlform.spec.declared import LoadedSystem


def spec_document(loaded: LoadedSystem) -> dict[str, Any]:
    """Settings sections plus every object's config under its section and name."""
    spec: dict[str, Any] = {name: value for name, value in loaded.settings.items()}
    for section in OBJECT_SECTIONS:
        spec.setdefault(section, {})
    for obj in loaded.objects:
        spec[obj.address.kind.section][obj.address.name] = obj.config
    return spec


def policy_input(
    loaded: LoadedSystem, *, plan: Mapping[str, Any] | None, today: date
) -> PolicyInput:
    """What policies are evaluated over: the redacted spec, provenance, stack and plan."""
    return PolicyInput(
        spec=spec_document(loaded),
        provenance=loaded.provenance,
        stack=loaded.stack,
        today=today,
        plan=plan,
    )
