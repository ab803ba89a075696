"""compute_plan: a pure function of (desired system, recorded state) to a frozen Plan.

No I/O, no clock, no randomness: equal inputs give an equal plan and byte-identical
JSON. Objects are visited in the desired system's topological order, so each one
sees the planned changes of its upstream objects and can carry their cause chain
(``data.tumors content changed … ⇒ features.diagnosis update ⇒ model.diagnosis
retrain``). Field diffs are computed only for objects whose config fingerprint moved,
which keeps a 10,000-object plan fast.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from mlform.addresses import Address, AddressError, Kind
from mlform.desired.graph import DependencyGraph, GraphCycleError
from mlform.desired.model import DesiredObject, DesiredSystem
from mlform.kind_rules import rules_for
from mlform.plan.model import Action, Plan, PlanSummary, Reason, ReasonKind, ResourceChange
from mlform.plan.reasons import (
    Finding,
    detect_config,
    detect_drifted,
    detect_fingerprints,
    detect_incomplete,
    detect_pending_rollout,
    detect_retrain_requested,
    finish_upstream,
    precedence,
    upstream_finding,
)
from mlform.state.model import RecordedObject, StateDocument

__all__ = ["compute_plan"]


def compute_plan(
    desired: DesiredSystem,
    state: StateDocument | None,
    *,
    supported_kinds: frozenset[Kind],
    destroy: bool = False,
    mlform_version: str,
) -> Plan:
    """The plan that takes ``state`` to ``desired`` (or destroys everything if ``destroy``)."""
    recorded: Mapping[str, RecordedObject] = state.objects if state is not None else {}
    changes: list[ResourceChange] = []
    if not destroy:
        causes: dict[Address, tuple[str, ...]] = {}
        retrained: set[Address] = set()
        for obj in desired:
            rec = recorded.get(str(obj.address))
            change, cause = _plan_object(
                obj, rec, desired, causes, supported_kinds, frozenset(retrained)
            )
            if cause is not None:
                causes[obj.address] = cause
                if any(r.kind is ReasonKind.MONITOR_BREACHED for r in change.reasons):
                    retrained.add(obj.address)
            changes.append(change)
    gone = [rec for key, rec in recorded.items() if destroy or _parsed(key) not in desired.objects]
    changes.extend(_deletes(gone, supported_kinds, destroy=destroy))
    counts = Counter(change.action for change in changes)
    summary = PlanSummary(
        create=counts[Action.CREATE],
        update=counts[Action.UPDATE],
        replace=counts[Action.REPLACE],
        delete=counts[Action.DELETE],
        retrain=counts[Action.RETRAIN],
        rollout=counts[Action.ROLLOUT],
        no_op=counts[Action.NOOP],
    )
    return Plan(
        mlform_version=mlform_version,
        project=desired.project,
        stack=desired.stack,
        lineage=state.lineage if state is not None else None,
        serial=state.serial if state is not None else 0,
        destroy=destroy,
        changes=tuple(changes),
        summary=summary,
        input_digest=desired.input_digest,
    )


def _plan_object(
    obj: DesiredObject,
    rec: RecordedObject | None,
    desired: DesiredSystem,
    causes: Mapping[Address, tuple[str, ...]],
    supported_kinds: frozenset[Kind],
    retrained: frozenset[Address] = frozenset(),
) -> tuple[ResourceChange, tuple[str, ...] | None]:
    """One object's change, and the cause chain its dependents inherit (None: unchanged).

    ``retrained``: upstream objects retrained without a content change (a monitor asked),
    which their dependents treat as changed.
    """
    address = obj.address
    available = address.kind in supported_kinds
    if rec is None:
        reason = Reason(kind=ReasonKind.NEW, message=f"{address} is declared but not yet created")
        return _change(obj, None, Action.CREATE, (reason,), available), (f"{address} is new",)
    rules = rules_for(address.kind)
    own: list[Finding] = detect_fingerprints(obj, rec, rules)
    config = detect_config(obj, rec, rules)
    if config is not None:
        own.append(config)
    drifted = detect_drifted(rec, address)
    if drifted is not None:
        own.append(drifted)
    pending = detect_pending_rollout(rec, address)
    if pending is not None:
        own.append(pending)
    requested = detect_retrain_requested(rec, address)
    if requested is not None:
        own.append(requested)
    upstream: list[Finding] = []
    for dep in obj.depends_on:
        dep_obj = desired.get(dep)
        if dep_obj is None:
            continue
        recorded_digest = rec.upstream.get(str(dep))
        if recorded_digest == dep_obj.content_digest and dep not in retrained:
            continue
        upstream.append(
            upstream_finding(
                address,
                dep,
                recorded_digest,
                dep_obj.content_digest,
                causes.get(dep),
                rules,
            )
        )
    incomplete = detect_incomplete(rec, address)
    findings = own + upstream + ([incomplete] if incomplete else [])
    if not findings:
        return _change(obj, rec, Action.NOOP, (), available), None
    if incomplete is not None and incomplete.action is Action.CREATE:
        action = Action.CREATE
    else:
        action = max((f.action for f in findings), key=precedence)
        if incomplete is not None and precedence(action) < precedence(Action.UPDATE):
            action = Action.UPDATE
    reasons = tuple(
        finish_upstream(f.reason, address, action)
        if f.reason.kind is ReasonKind.UPSTREAM_CHANGED
        else f.reason
        for f in findings
    )
    cause: tuple[str, ...] | None = None
    if requested is not None and action is Action.RETRAIN:
        # Retrained on a monitor's request: same config, new version, so dependents
        # (the deployment) roll it out.
        cause = (requested.root, f"{address} {action.value}")
    elif obj.content_digest != rec.content_digest:
        if upstream:
            cause = (*upstream[0].reason.chain, f"{address} {action.value}")
        else:
            cause = ((own or findings)[0].root,)
    return _change(obj, rec, action, reasons, available), cause


def _change(
    obj: DesiredObject,
    rec: RecordedObject | None,
    action: Action,
    reasons: tuple[Reason, ...],
    available: bool,
) -> ResourceChange:
    return ResourceChange(
        address=str(obj.address),
        kind=obj.address.kind.value,
        action=action,
        reasons=reasons,
        before=dict(rec.config) if rec is not None else None,
        after=dict(obj.config),
        depends_on=tuple(str(d) for d in obj.depends_on),
        fingerprints=dict(obj.fingerprints),
        content_digest=obj.content_digest or None,
        provider_available=available,
        source_file=obj.source_file,
    )


def _deletes(
    gone: list[RecordedObject], supported_kinds: frozenset[Kind], *, destroy: bool
) -> list[ResourceChange]:
    """Deletes of recorded objects, dependents first."""
    out: list[ResourceChange] = []
    for rec in _dependents_first(gone):
        reason = (
            Reason(kind=ReasonKind.REQUESTED, message="destroy was requested")
            if destroy
            else Reason(
                kind=ReasonKind.REMOVED,
                message=f"{rec.address} is no longer declared in the configuration",
            )
        )
        out.append(
            ResourceChange(
                address=rec.address,
                kind=rec.kind,
                action=Action.DELETE,
                reasons=(reason,),
                before=dict(rec.config),
                after=None,
                depends_on=tuple(rec.depends_on),
                fingerprints=dict(rec.fingerprints),
                content_digest=rec.content_digest or None,
                provider_available=_kind(rec.kind) in supported_kinds,
            )
        )
    return out


def _dependents_first(gone: list[RecordedObject]) -> list[RecordedObject]:
    by_address = {_parsed(rec.address): rec for rec in gone}
    valid = {a: rec for a, rec in by_address.items() if a is not None}
    unparsed = sorted((rec for a, rec in by_address.items() if a is None), key=lambda r: r.address)
    edges = {
        a: [d for d in (_parsed(t) for t in rec.depends_on) if d is not None and d in valid]
        for a, rec in valid.items()
    }
    graph = DependencyGraph.from_edges(edges)
    try:
        order = graph.topological_order()
    except GraphCycleError:
        order = graph.nodes
    return [*unparsed, *(valid[a] for a in reversed(order))]


def _parsed(text: str) -> Address | None:
    try:
        return Address.parse(text)
    except AddressError:
        return None


def _kind(text: str) -> Kind | None:
    try:
        return Kind(text)
    except ValueError:
        return None
