"""Resolve a loaded system into the desired system: order, fingerprints, content digests.

:func:`resolve` reads what it must fingerprint (data files, user modules, installed
versions) and hands the results to :func:`assemble`, which is pure: it orders the
objects, digests every config and computes the Merkle content digests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlform.addresses import Address, Kind
from mlform.desired.code import code_fingerprints
from mlform.desired.fingerprint import FingerprintCache, data_fingerprint, digest
from mlform.desired.graph import DependencyGraph, GraphCycleError, format_cycle
from mlform.desired.model import DesiredObject, DesiredSystem
from mlform.diagnostics import Diagnostic, Diagnostics
from mlform.errors import ConfigError
from mlform.kind_rules import rules_for
from mlform.spec.declared import DeclaredObject, LoadedSystem

__all__ = ["assemble", "content_digest", "external_fingerprints", "input_digest", "resolve"]


def resolve(loaded: LoadedSystem, *, cache: FingerprintCache | None = None) -> DesiredSystem:
    """The desired system of ``loaded``; ConfigError for a cycle or missing data/dependencies."""
    _check_graph(loaded.objects, loaded.provenance)
    diagnostics = Diagnostics()
    external: dict[Address, dict[str, str]] = {}
    for obj in loaded.objects:
        try:
            external[obj.address] = external_fingerprints(obj, loaded, cache)
        except ConfigError as error:
            diagnostics.extend(_located(d, loaded.provenance, obj) for d in error.diagnostics)
    if cache is not None:
        cache.save()
    if diagnostics.has_errors:
        raise ConfigError(diagnostics)
    return assemble(
        loaded.project, loaded.stack, loaded.objects, external, settings=loaded.settings
    )


def external_fingerprints(
    obj: DeclaredObject, loaded: LoadedSystem, cache: FingerprintCache | None = None
) -> dict[str, str]:
    """The data, code and toolchain fingerprints of one object (reads files)."""
    out: dict[str, str] = {}
    key = obj.key or obj.address.config_key
    if obj.address.kind is Kind.DATA:
        out["data"] = data_fingerprint(
            obj.config, project_dir=loaded.project_dir, key=key, cache=cache
        )
    framework = None
    if obj.address.kind is Kind.MODEL:
        framework = str(obj.config.get("framework", "sklearn"))
    out.update(
        code_fingerprints(
            obj.code_targets, project_dir=loaded.project_dir, framework=framework, cache=cache
        )
    )
    return out


def assemble(
    project: str,
    stack: str,
    declared: Sequence[DeclaredObject],
    external: Mapping[Address, Mapping[str, str]],
    *,
    settings: Mapping[str, Any] | None = None,
) -> DesiredSystem:
    """Pure: order ``declared`` and digest it, given each object's external fingerprints."""
    by_address = {obj.address: obj for obj in declared}
    graph = DependencyGraph.from_edges({a: o.depends_on for a, o in by_address.items()})
    objects: dict[Address, DesiredObject] = {}
    for address in graph.topological_order():
        obj = by_address[address]
        fingerprints = {"config": digest(obj.config), **dict(external.get(address, {}))}
        depends_on = graph.dependencies[address]
        upstream = {dep: objects[dep].content_digest for dep in depends_on if dep in objects}
        objects[address] = DesiredObject(
            address=address,
            config=obj.config,
            depends_on=depends_on,
            fingerprints=fingerprints,
            content_digest=content_digest(address.kind, obj.config, fingerprints, upstream),
            source_file=obj.source_file,
        )
    settings = dict(settings or {})
    return DesiredSystem(
        project=project,
        stack=stack,
        objects=objects,
        input_digest=input_digest(project, stack, objects.values(), settings),
        settings=settings,
    )


def content_digest(
    kind: Kind,
    config: Mapping[str, Any],
    fingerprints: Mapping[str, str],
    upstream: Mapping[Address, str],
) -> str:
    """Merkle digest of what dependents consume: content config, data/code/toolchain, upstream."""
    return digest(
        {
            "content": rules_for(kind).content_view(config),
            "fingerprints": {k: v for k, v in fingerprints.items() if k != "config"},
            "upstream": [[str(a), upstream[a]] for a in sorted(upstream, key=Address.sort_key)],
        }
    )


def input_digest(
    project: str, stack: str, objects: Iterable[DesiredObject], settings: Mapping[str, Any]
) -> str:
    """Digest over every object's fingerprints and content digest, and the settings."""
    return digest(
        {
            "project": project,
            "stack": stack,
            "objects": [[str(o.address), dict(o.fingerprints), o.content_digest] for o in objects],
            "settings": settings,
        }
    )


def _check_graph(
    declared: Sequence[DeclaredObject], provenance: Mapping[str, tuple[str, int | None]]
) -> None:
    by_address = {obj.address: obj for obj in declared}
    graph = DependencyGraph.from_edges({a: o.depends_on for a, o in by_address.items()})
    diagnostics = Diagnostics()
    for node, dep in graph.missing():
        obj = by_address[node]
        diagnostics.add(
            _located(
                Diagnostic.error(
                    f"{node} depends on {dep}, which is not declared",
                    f"Declare {dep.config_key} or remove the reference from "
                    f"{obj.key or node.config_key}.",
                    key=obj.key or node.config_key,
                    address=str(node),
                ),
                provenance,
                obj,
            )
        )
    try:
        graph.topological_order()
    except GraphCycleError as error:
        first = by_address[error.cycle[0]]
        diagnostics.add(
            _located(
                Diagnostic.error(
                    f"dependency cycle: {format_cycle(error.cycle)}",
                    "Objects cannot depend on themselves, directly or through others. "
                    "Remove one of these references to break the cycle.",
                    key=first.key or first.address.config_key,
                    address=str(first.address),
                ),
                provenance,
                first,
            )
        )
    if diagnostics.has_errors:
        raise ConfigError(diagnostics)


def _located(
    diagnostic: Diagnostic,
    provenance: Mapping[str, tuple[str, int | None]],
    obj: DeclaredObject,
) -> Diagnostic:
    """Fill in file, line and address from provenance when the diagnostic lacks them."""
    key = diagnostic.key or obj.key or obj.address.config_key
    file, line = diagnostic.file, diagnostic.line
    if file is None:
        where = provenance.get(key) or provenance.get(obj.key or obj.address.config_key)
        if where is not None:
            file, line = where
        else:
            file = obj.source_file
    return Diagnostic(
        diagnostic.severity,
        diagnostic.summary,
        diagnostic.detail,
        key=key,
        file=file,
        line=line,
        address=diagnostic.address or str(obj.address),
    )
