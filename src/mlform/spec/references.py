"""Cross-reference checks on a validated spec: every name that points somewhere must land.

Each diagnostic names both keys (the referring key and the section it should exist in).
Feature-set dependency cycles are reported once each, as ``features.a -> features.b ->
features.a``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlform.addresses import Address, Kind
from mlform.diagnostics import Diagnostic, Diagnostics
from mlform.spec.base import parse_duration
from mlform.spec.deployments import AbTest, DeploymentSpec, Shadow
from mlform.spec.features import Derive, FeatureSpec, OneHot, Rename
from mlform.spec.problems import Origin, hint, where
from mlform.spec.system import SystemSpec
from mlform.spec.target_checks import check_target


def check_references(spec: SystemSpec, provenance: Mapping[str, Origin]) -> list[Diagnostic]:
    """Every broken reference, cycle and undeclared column in ``spec``."""
    out = Diagnostics()

    def missing(key: str, name: str, section: str, choices: Iterable[str]) -> None:
        out.add(missing_reference(key, name, section, choices, provenance))

    profiles = spec.resources.profiles
    for name, feature in spec.features.items():
        for index, source in enumerate(feature.sources):
            if source not in spec.data and source not in spec.features:
                key = f"features.{name}.sources.{index}"
                missing(key, source, "data", [*spec.data, *spec.features])
    for name, model in spec.models.items():
        if model.features not in spec.features:
            missing(f"models.{name}.features", model.features, "features", spec.features)
        if model.resources is not None and model.resources not in profiles:
            missing(f"models.{name}.resources", model.resources, "resources.profiles", profiles)
    for name, deployment in spec.deployments.items():
        for key, model_name in _deployment_models(name, deployment):
            if model_name not in spec.models:
                missing(key, model_name, "models", spec.models)
        if deployment.resources is not None and deployment.resources not in profiles:
            key = f"deployments.{name}.resources"
            missing(key, deployment.resources, "resources.profiles", profiles)
    for name, monitor in spec.monitors.items():
        if monitor.deployment not in spec.deployments:
            key = f"monitors.{name}.deployment"
            missing(key, monitor.deployment, "deployments", spec.deployments)
        labels = None if monitor.labels is None else monitor.labels.source
        if labels is not None and labels not in spec.data:
            missing(f"monitors.{name}.labels.source", labels, "data", spec.data)
    out.extend(_cycles(spec.features, spec.data, provenance))
    out.extend(_monitors(spec, provenance))
    out.extend(_columns(spec, provenance))
    out.extend(_exemptions(spec, provenance))
    out.extend(check_target(spec, provenance))
    return out.items


def missing_reference(
    key: str, name: str, section: str, choices: Iterable[str], provenance: Mapping[str, Origin]
) -> Diagnostic:
    """``key`` names ``section.name``, which is not declared: say what is."""
    names = sorted(choices)
    return Diagnostic.error(
        f"{key} refers to {section}.{name}, which is not declared",
        f"Declare {section}.{name}, or change {key} to one of: "
        f"{', '.join(names) or 'none declared'}.{hint(name, names)}",
        **where(key, provenance),
    )


def _deployment_models(name: str, deployment: DeploymentSpec) -> list[tuple[str, str]]:
    refs = [(f"deployments.{name}.model", deployment.model)]
    strategy = deployment.strategy
    if isinstance(strategy, AbTest):
        refs += [
            (f"deployments.{name}.strategy.variants.{i}.model", v.model)
            for i, v in enumerate(strategy.variants)
        ]
    elif isinstance(strategy, Shadow):
        refs.append((f"deployments.{name}.strategy.model", strategy.model))
    return refs


def deployment_models(deployment: DeploymentSpec) -> list[str]:
    """Every model a deployment serves or mirrors, in declaration order."""
    seen: list[str] = []
    for _key, model in _deployment_models("", deployment):
        if model not in seen:
            seen.append(model)
    return seen


def _cycles(
    features: Mapping[str, FeatureSpec],
    data: Mapping[str, Any],
    provenance: Mapping[str, Origin],
) -> list[Diagnostic]:
    """Cycles among feature sets (a source named in both data and features is the data)."""
    edges = {
        name: [s for s in spec.sources if s in features and s not in data]
        for name, spec in features.items()
    }
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []
    found: list[Diagnostic] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                text = " -> ".join(f"features.{n}" for n in cycle)
                found.append(
                    Diagnostic.error(
                        f"dependency cycle: {text}",
                        "Feature sets cannot depend on themselves, directly or through others. "
                        "Remove one of these sources.",
                        **where(f"features.{node}.sources", provenance),
                    )
                )
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in features:
        if name not in state:
            visit(name)
    return found


def _known_columns(
    spec: SystemSpec, name: str, seen: frozenset[str] = frozenset()
) -> tuple[set[str], bool]:
    """(columns a feature set may have, whether that set is exact)."""
    feature = spec.features[name]
    columns: set[str] = set()
    exact = feature.query is None
    for source in feature.sources:
        if source in spec.data:
            schema = spec.data[source].schema_
            if schema is None:
                exact = False
                continue
            columns |= set(schema.columns)
            exact = exact and schema.strict
        elif source in spec.features and source not in seen:
            more, more_exact = _known_columns(spec, source, seen | {name})
            columns |= more
            exact = exact and more_exact
        else:
            exact = False
    for transform in feature.transforms:
        if isinstance(transform, Derive):
            columns.add(transform.column)
        elif isinstance(transform, Rename):
            columns |= set(transform.mapping.values())
        elif isinstance(transform, OneHot):
            exact = False
    return columns, exact


def _columns(spec: SystemSpec, provenance: Mapping[str, Origin]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for name, feature in spec.features.items():
        known, exact = _known_columns(spec, name)
        refs: list[tuple[str, str]] = [
            (f"features.{name}.entity.{i}", c) for i, c in enumerate(feature.entity)
        ]
        if feature.label is not None:
            refs.append((f"features.{name}.label", feature.label))
        refs += [(f"features.{name}.sensitive.{i}", c) for i, c in enumerate(feature.sensitive)]
        for key, column in refs:
            if column in known:
                continue
            detail = (
                f"No source of features.{name} declares a column {column!r} in its schema."
                f"{hint(column, sorted(known))} Declared columns: "
                f"{', '.join(sorted(known)) or 'none'}."
            )
            if exact:
                out.append(
                    Diagnostic.error(
                        f"{key} names an undeclared column {column!r}",
                        detail,
                        **where(key, provenance),
                    )
                )
            elif known:
                out.append(
                    Diagnostic.warning(
                        f"{key}: column {column!r} could not be confirmed",
                        detail + " (The query or transforms may create it; this is checked "
                        "when the feature set is built.)",
                        **where(key, provenance),
                    )
                )
    return out


def _monitors(spec: SystemSpec, provenance: Mapping[str, Origin]) -> list[Diagnostic]:
    """Monitor columns the model does not have, and windows the prediction log cannot hold."""
    out: list[Diagnostic] = []
    for name, monitor in spec.monitors.items():
        deployment = spec.deployments.get(monitor.deployment)
        if deployment is None:
            continue  # reported as a missing reference
        reads_log = monitor.type in ("data_drift", "prediction_drift", "performance")
        log = deployment.prediction_log
        if reads_log and not log.enabled:
            key = f"deployments.{monitor.deployment}.prediction_log.enabled"
            out.append(
                Diagnostic.error(
                    f"monitors.{name} reads the prediction log, which {key} turns off",
                    f"A {monitor.type} monitor compares logged predictions with the model's "
                    f"reference. Set {key}: true, or remove monitors.{name}.",
                    **where(f"monitors.{name}.type", provenance),
                )
            )
        window = monitor.window.duration
        if (
            reads_log
            and window is not None
            and parse_duration(window) > parse_duration(log.retention)
        ):
            key = f"monitors.{name}.window.duration"
            out.append(
                Diagnostic.error(
                    f"{key} ({window}) is longer than the prediction log keeps "
                    f"(deployments.{monitor.deployment}.prediction_log.retention: "
                    f"{log.retention})",
                    f"The window would never be full. Shorten {key} or raise the retention.",
                    **where(key, provenance),
                )
            )
        model = spec.models.get(deployment.model)
        if monitor.type != "data_drift" or model is None or model.features not in spec.features:
            continue
        known, exact = _known_columns(spec, model.features)
        feature = spec.features[model.features]
        usable = known - set(model.exclude_columns) - {feature.label} - set(feature.entity)
        for index, column in enumerate(monitor.columns):
            if column in usable:
                continue
            key = f"monitors.{name}.columns.{index}"
            why = (
                f"{column!r} is not an input of model.{deployment.model}"
                if column in known
                else f"features.{model.features} has no column {column!r}"
            )
            detail = (
                f"A data drift monitor watches the model's input columns; {why}."
                f"{hint(column, sorted(usable))} Columns declared for its inputs: "
                f"{', '.join(sorted(usable)) or 'none'}."
            )
            if exact or column in known:
                out.append(
                    Diagnostic.error(
                        f"{key} names {column!r}, which model.{deployment.model} does not take",
                        detail,
                        **where(key, provenance),
                    )
                )
            elif known:
                out.append(
                    Diagnostic.warning(
                        f"{key}: column {column!r} could not be confirmed",
                        detail + " (The feature query or transforms may create it; this is "
                        "checked again when the monitor is applied.)",
                        **where(key, provenance),
                    )
                )
    return out


def _exemptions(spec: SystemSpec, provenance: Mapping[str, Origin]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    sections: dict[Kind, Mapping[str, Any]] = {
        Kind.DATA: spec.data,
        Kind.FEATURES: spec.features,
        Kind.MODEL: spec.models,
        Kind.DEPLOYMENT: spec.deployments,
        Kind.MONITOR: spec.monitors,
    }
    for index, exemption in enumerate(spec.policies.exemptions):
        if exemption.address is None:
            continue
        address = Address.parse(exemption.address)
        if address.name not in sections[address.kind]:
            key = f"policies.exemptions.{index}.address"
            out.append(
                Diagnostic.warning(
                    f"{key}: exemption for {address}, which is not declared",
                    f"The exemption of rule {exemption.rule} applies to nothing; declare "
                    f"{address.config_key} or remove the exemption.",
                    **where(key, provenance),
                )
            )
    return out
