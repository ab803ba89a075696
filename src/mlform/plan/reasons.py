"""Small named predicates that compare one desired object with its recorded self.

Each ``detect_*`` function returns the reasons it found, each paired with the action
that reason asks for (see :mod:`mlform.kind_rules`); :mod:`mlform.plan.compute`
combines them. Messages are plain sentences; renderers add no wording of their own
beyond symbols and layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlform.addresses import Address
from mlform.desired.fingerprint import short_digest
from mlform.desired.model import DesiredObject
from mlform.kind_rules import KindRules
from mlform.plan.fields import diff_fields, top_level_changes
from mlform.plan.model import Action, Reason, ReasonKind
from mlform.spec.defaults import added_at_default
from mlform.state.model import ObjectStatus, RecordedObject

__all__ = [
    "CAUSE_SEPARATOR",
    "Finding",
    "detect_config",
    "detect_drifted",
    "detect_fingerprints",
    "detect_incomplete",
    "detect_pending_rollout",
    "detect_retrain_requested",
    "finish_upstream",
    "precedence",
    "upstream_finding",
]

CAUSE_SEPARATOR = " ⇒ "
_PRECEDENCE = {
    Action.NOOP: 0,
    Action.UPDATE: 1,
    Action.ROLLOUT: 2,
    Action.RETRAIN: 2,
    Action.CREATE: 3,
    Action.REPLACE: 4,
    Action.DELETE: 5,
}


def precedence(action: Action) -> int:
    """replace > the kind's content action (retrain/rollout) > update > no-op."""
    return _PRECEDENCE[action]


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason, the action it asks for, and how a dependent's cause chain names it."""

    reason: Reason
    action: Action
    root: str  # e.g. "data.tumors content changed sha256:ab12cd34… -> ef56ab12…"


def detect_incomplete(recorded: RecordedObject, address: Address) -> Finding | None:
    """A previous apply failed or did not finish on this object."""
    if recorded.status is ObjectStatus.PENDING:
        message = "the last apply started on this object but did not finish"
    elif recorded.status is ObjectStatus.FAILED:
        error = f": {recorded.error}" if recorded.error else ""
        message = f"the last apply failed on this object{error}"
    else:
        return None
    action = Action.UPDATE if recorded.outputs else Action.CREATE
    root = f"{address} incomplete"
    return Finding(Reason(kind=ReasonKind.INCOMPLETE, message=message), action, root)


def detect_drifted(recorded: RecordedObject, address: Address) -> Finding | None:
    """``mlform refresh`` recorded that the object's live infrastructure drifted."""
    drift = recorded.outputs.get("drift")
    if not drift:
        return None
    items = [str(d) for d in drift] if isinstance(drift, list) else [str(drift)]
    message = f"live infrastructure drifted: {'; '.join(items)} (found by mlform refresh)"
    reason = Reason(kind=ReasonKind.DRIFTED, message=message)
    return Finding(reason, Action.UPDATE, f"{address} drifted")


def detect_pending_rollout(recorded: RecordedObject, address: Address) -> Finding | None:
    """The object's rollout is paused or stopped midway (recorded by the deployment)."""
    rollout = recorded.outputs.get("rollout")
    if not isinstance(rollout, dict) or rollout.get("phase") not in ("progressing", "paused"):
        return None
    where = f"at {rollout.get('weight', 0)}% of traffic"
    if rollout.get("phase") == "paused":
        state = f"is paused {where}"
    else:
        state = f"stopped {where} (step {int(rollout.get('step', 0)) + 1}) before it finished"
    message = f"the rollout of {rollout.get('canary')} {state}"
    if rollout.get("message"):
        message += f": {rollout['message']}"
    reason = Reason(kind=ReasonKind.ROLLOUT_PENDING, message=message)
    return Finding(reason, Action.ROLLOUT, f"{address} rollout pending")


def detect_retrain_requested(recorded: RecordedObject, address: Address) -> Finding | None:
    """A monitor with ``on_breach: retrain`` breached after the model was last trained."""
    mark = recorded.outputs.get("retrain_requested")
    if not isinstance(mark, dict) or not mark.get("message"):
        return None
    message = str(mark["message"])
    reason = Reason(kind=ReasonKind.MONITOR_BREACHED, message=message)
    return Finding(reason, Action.RETRAIN, message)


def detect_config(
    desired: DesiredObject, recorded: RecordedObject, rules: KindRules
) -> Finding | None:
    """The config fingerprint moved: field diffs, classified by the kind's rules."""
    new_fp = desired.fingerprints.get("config")
    old_fp = recorded.fingerprints.get("config")
    if old_fp is not None and old_fp == new_fp:
        return None
    old, new = dict(recorded.config), dict(desired.config)
    added = {k for k in set(new) - set(old) if added_at_default(rules.kind, k, old, new)}
    top = top_level_changes(old, new) - added  # keys a newer mlform added, at their default
    if not top:
        return None
    fields = tuple(
        f for f in diff_fields(old, new) if f.path.split(".", 1)[0].split("[", 1)[0] not in added
    )
    paths = _names([f.path for f in fields] or sorted(top))
    replacing = sorted(top & rules.replace_fields)
    if replacing:
        action = Action.REPLACE
        message = f"config changed: {paths} ({', '.join(replacing)} forces replacement)"
    elif top - rules.local_fields:
        action = rules.on_content_change
        message = f"config changed: {paths}"
    else:
        action = rules.on_local_change
        message = f"config changed: {paths}"
    root = f"{desired.address} config changed ({paths})"
    reason = Reason(kind=ReasonKind.CONFIG_CHANGED, message=message, fields=fields)
    return Finding(reason, action, root)


def detect_fingerprints(
    desired: DesiredObject, recorded: RecordedObject, rules: KindRules
) -> list[Finding]:
    """Data, code and toolchain fingerprints that moved since the object was applied."""
    found: list[Finding] = []
    new, old = desired.fingerprints, recorded.fingerprints
    address = desired.address
    if "data" in new and new["data"] != old.get("data"):
        message = f"{address} content changed {_move(old.get('data'), new['data'])}"
        found.append(_finding(ReasonKind.DATA_CHANGED, message, rules))
    code_keys = sorted(k for k in set(new) | set(old) if k.startswith("code:"))
    for key in code_keys:
        if new.get(key) != old.get(key):
            module = key.removeprefix("code:")
            message = f"code of {module} changed {_move(old.get(key), new.get(key))}"
            found.append(_finding(ReasonKind.CODE_CHANGED, message, rules))
    if new.get("toolchain") != old.get("toolchain") and "toolchain" in new:
        message = (
            f"toolchain of {address} changed (framework, library or Python versions) "
            f"{_move(old.get('toolchain'), new['toolchain'])}"
        )
        found.append(_finding(ReasonKind.TOOLCHAIN_CHANGED, message, rules))
    return found


def upstream_finding(
    address: Address,
    dep: Address,
    recorded_digest: str | None,
    desired_digest: str,
    dep_cause: tuple[str, ...] | None,
    rules: KindRules,
) -> Finding:
    """An upstream object's content moved since this object was built from it."""
    chain = dep_cause or (f"{dep} content changed {_move(recorded_digest, desired_digest)}",)
    reason = Reason(
        kind=ReasonKind.UPSTREAM_CHANGED,
        message=CAUSE_SEPARATOR.join(chain),  # completed with this object's link by compute
        upstream=str(dep),
        chain=chain,
    )
    return Finding(reason, rules.on_upstream_change, chain[0])


def finish_upstream(reason: Reason, address: Address, action: Action) -> Reason:
    """The upstream reason's message with this object's own link at the end."""
    link = f"{address} {action.value}"
    return reason.model_copy(update={"message": CAUSE_SEPARATOR.join((*reason.chain, link))})


def _finding(kind: ReasonKind, message: str, rules: KindRules) -> Finding:
    return Finding(Reason(kind=kind, message=message), rules.on_content_change, message)


def _move(old: str | None, new: str | None) -> str:
    return f"{short_digest(old)} -> {short_digest(new, prefix=False)}"


def _names(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown if len(paths) <= limit else f"{shown} and {len(paths) - limit} more"
