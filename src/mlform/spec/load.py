"""Loading a system: composed config -> validated SystemSpec -> LoadedSystem.

Every problem is collected and raised together in one ConfigError: schema errors first,
then broken references (which are only checked once the schema is valid).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlform.addresses import Address, Kind
from mlform.config import ComposedConfig, compose_system
from mlform.diagnostics import Diagnostic, Severity
from mlform.errors import ConfigError
from mlform.spec.declared import DeclaredObject, LoadedSystem
from mlform.spec.problems import Origin, spec_diagnostics
from mlform.spec.raw_references import check_raw_references
from mlform.spec.references import check_references, deployment_models
from mlform.spec.system import SETTING_SECTIONS, SystemSpec

COMMAND_LINE = "<command line>"


def validate_spec(
    data: Mapping[str, Any], provenance: Mapping[str, Origin] | None = None
) -> tuple[SystemSpec | None, list[Diagnostic]]:
    """Validate plain config data; the spec (None on errors) and every diagnostic."""
    provenance = provenance or {}
    if not isinstance(data, Mapping):
        return None, [
            Diagnostic.error(
                "the config is not a mapping",
                "configs/system.yaml must be a mapping of sections (project, data, models, ...).",
            )
        ]
    try:
        spec = SystemSpec.model_validate(dict(data))
    except ValidationError as exc:
        problems = spec_diagnostics(exc.errors(), dict(data), provenance)
        # Report broken references now too, not only once the types are fixed.
        flagged = {p.key for p in problems if p.key}
        return None, problems + check_raw_references(data, provenance, flagged)
    problems = check_references(spec, provenance)
    has_errors = any(p.severity is Severity.ERROR for p in problems)
    return (None if has_errors else spec), problems


def load_system(composed: ComposedConfig, project_dir: Path) -> LoadedSystem:
    """Validate a composed config; ConfigError with all problems together."""
    spec, problems = validate_spec(composed.data, composed.provenance)
    if spec is None:
        raise ConfigError(problems)
    return LoadedSystem(
        project=spec.project.name,
        stack=composed.stack,
        project_dir=Path(project_dir),
        objects=tuple(declared_objects(spec, composed.provenance)),
        settings={s: _dump(getattr(spec, s)) for s in SETTING_SECTIONS},
        provenance=dict(composed.provenance),
        warnings=tuple(problems),
        overrides=tuple(composed.overrides),
    )


def load_system_from(
    project_dir: Path, stack: str | None, overrides: Sequence[str] = ()
) -> LoadedSystem:
    """Compose ``project_dir``'s config for ``stack`` with ``overrides``, then validate it."""
    return load_system(compose_system(Path(project_dir), stack, overrides), Path(project_dir))


def declared_objects(
    spec: SystemSpec, provenance: Mapping[str, Origin]
) -> Iterator[DeclaredObject]:
    """One DeclaredObject per object, in kind order, then declaration order."""
    profiles = spec.resources.profiles
    for name, data in spec.data.items():
        yield _declared(Address(Kind.DATA, name), _dump(data), (), provenance)
    for name, feature in spec.features.items():
        deps = tuple(
            Address(Kind.DATA if s in spec.data else Kind.FEATURES, s) for s in feature.sources
        )
        yield _declared(Address(Kind.FEATURES, name), _dump(feature), deps, provenance)
    for name, model in spec.models.items():
        config = _with_profile(_dump(model), model.resources, profiles)
        deps = (Address(Kind.FEATURES, model.features),)
        yield _declared(Address(Kind.MODEL, name), config, deps, provenance)
    for name, deployment in spec.deployments.items():
        config = _with_profile(_dump(deployment), deployment.resources, profiles)
        deps = tuple(Address(Kind.MODEL, m) for m in deployment_models(deployment))
        yield _declared(Address(Kind.DEPLOYMENT, name), config, deps, provenance)
    for name, monitor in spec.monitors.items():
        config = _dump(monitor)
        watched = [Address(Kind.DEPLOYMENT, monitor.deployment)]
        labels = None if monitor.labels is None else monitor.labels.source
        if labels is not None and labels in spec.data:
            # The scheduler reads the labels itself: it gets the source's config with its own.
            config["labels"]["source_config"] = _dump(spec.data[labels])
            watched.append(Address(Kind.DATA, labels))
        yield _declared(Address(Kind.MONITOR, name), config, tuple(watched), provenance)


def _declared(
    address: Address,
    config: dict[str, Any],
    depends_on: tuple[Address, ...],
    provenance: Mapping[str, Origin],
) -> DeclaredObject:
    key = address.config_key
    origin = provenance.get(key)
    source_file = origin[0] if origin is not None and origin[0] != COMMAND_LINE else None
    return DeclaredObject(
        address=address,
        config=config,
        depends_on=depends_on,
        key=key,
        source_file=source_file,
        code_targets=tuple(dict.fromkeys(_targets(config))),
    )


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return dumped


def _with_profile(
    config: dict[str, Any], profile: str | None, profiles: Mapping[str, Any]
) -> dict[str, Any]:
    if profile is None:
        return config
    return {**config, "resources": {"profile": profile, **_dump(profiles[profile])}}


def _targets(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        target = obj.get("_target_")
        if isinstance(target, str):
            yield target
        for value in obj.values():
            yield from _targets(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _targets(value)
