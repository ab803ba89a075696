"""Reference checks on config that failed schema validation.

When some value has the wrong type, no :class:`SystemSpec` can be built, so
:func:`mlform.spec.references.check_references` cannot run. These checks read the plain
data instead, so that a broken reference is reported together with the type errors rather
than after they are fixed. Only names that are plain strings are checked; anything else is
already a schema diagnostic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlform.diagnostics import Diagnostic
from mlform.spec.problems import Origin
from mlform.spec.references import missing_reference


def check_raw_references(
    data: Mapping[str, Any], provenance: Mapping[str, Origin], skip_keys: set[str]
) -> list[Diagnostic]:
    """Broken references among the names in ``data``, except at keys in ``skip_keys``."""
    sections = {name: _names(data.get(name)) for name in ("data", "features", "models")}
    sections["deployments"] = _names(data.get("deployments"))
    resources = data.get("resources")
    profiles = _names(resources.get("profiles")) if isinstance(resources, Mapping) else set()
    out = []
    for key, name, section, choices in _references(data, sections, profiles):
        if key not in skip_keys and name not in choices:
            out.append(missing_reference(key, name, section, choices, provenance))
    return out


def _names(section: object) -> set[str]:
    return {str(k) for k in section} if isinstance(section, Mapping) else set()


def _items(data: Mapping[str, Any], section: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    objects = data.get(section)
    if isinstance(objects, Mapping):
        for name, body in objects.items():
            if isinstance(body, Mapping):
                yield str(name), body


def _references(
    data: Mapping[str, Any], sections: Mapping[str, set[str]], profiles: set[str]
) -> Iterator[tuple[str, str, str, set[str]]]:
    """(referring key, name, section it must exist in, declared names) for each reference."""
    sources = sections["data"] | sections["features"]
    for name, body in _items(data, "features"):
        listed = body.get("sources")
        for index, source in enumerate(listed if isinstance(listed, list) else []):
            if isinstance(source, str):
                yield f"features.{name}.sources.{index}", source, "data", sources
    for name, body in _items(data, "models"):
        if isinstance(body.get("features"), str):
            yield f"models.{name}.features", body["features"], "features", sections["features"]
        if isinstance(body.get("resources"), str):
            yield f"models.{name}.resources", body["resources"], "resources.profiles", profiles
    for name, body in _items(data, "deployments"):
        if isinstance(body.get("model"), str):
            yield f"deployments.{name}.model", body["model"], "models", sections["models"]
        if isinstance(body.get("resources"), str):
            key = f"deployments.{name}.resources"
            yield key, body["resources"], "resources.profiles", profiles
    for name, body in _items(data, "monitors"):
        if isinstance(body.get("deployment"), str):
            key = f"monitors.{name}.deployment"
            yield key, body["deployment"], "deployments", sections["deployments"]
