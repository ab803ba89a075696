"""Saved plans (``.mlplan``): write atomically, read back, and check they are still fresh.

A saved plan is JSON: ``{"format_version", "kind": "mlform-plan", "plan": {...}}``. It
binds the state lineage and serial it was made against and the input digest of the
desired system; :func:`check_fresh` says, as diagnostics, what moved since.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlform.desired.model import DesiredSystem
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError, StalePlanError
from mlform.plan.model import PLAN_FORMAT_VERSION, Plan
from mlform.plan.render.json import plan_document
from mlform.state.model import StateDocument

__all__ = ["SAVED_PLAN_KIND", "check_fresh", "load_plan", "save_plan"]

SAVED_PLAN_KIND = "mlform-plan"
_REPLAN = "Run `mlform plan --out FILE` again and apply the new plan."


def save_plan(plan: Plan, path: Path) -> None:
    """Write ``plan`` to ``path`` atomically (temp file, fsync, rename)."""
    document = {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": SAVED_PLAN_KIND,
        "plan": plan_document(plan),
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_plan(path: Path) -> Plan:
    """Read a saved plan; ConfigError when missing or corrupt, StalePlanError for other versions."""
    where = {"file": str(path)}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                Diagnostic.error(
                    f"plan file {path} does not exist",
                    "Give the path of a file written by `mlform plan --out FILE`.",
                    **where,
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([_corrupt(path, str(error))]) from None
    try:
        document: Any = json.loads(text)
    except ValueError as error:
        raise ConfigError([_corrupt(path, f"it is not valid JSON ({error})")]) from None
    if not isinstance(document, dict) or document.get("kind") != SAVED_PLAN_KIND:
        raise ConfigError([_corrupt(path, 'it has no "kind": "mlform-plan"')])
    version = str(document.get("format_version", ""))
    if version.partition(".")[0] != PLAN_FORMAT_VERSION.partition(".")[0]:
        raise StalePlanError(
            [
                Diagnostic.error(
                    f"plan file {path} has format version {version or 'unknown'}",
                    f"This mlform reads plan format {PLAN_FORMAT_VERSION.partition('.')[0]}.x; "
                    f"the plan was made by another mlform version. {_REPLAN}",
                    **where,
                )
            ]
        )
    raw = document.get("plan")
    if isinstance(raw, dict) and isinstance(raw.get("summary"), dict):
        raw["summary"].pop("line", None)  # derived; written for readers of the file
    try:
        return Plan.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(p) for p in first["loc"])
        raise ConfigError([_corrupt(path, f"plan.{location}: {first['msg']}")]) from None


def _corrupt(path: Path, why: str) -> Diagnostic:
    return Diagnostic.error(
        f"plan file {path} is not a valid mlform plan",
        f"It cannot be read: {why}. {_REPLAN}",
        file=str(path),
    )


def check_fresh(
    plan: Plan, desired: DesiredSystem, state: StateDocument | None
) -> list[Diagnostic]:
    """Why ``plan`` can no longer be applied to (``desired``, ``state``); empty when fresh."""
    problems: list[Diagnostic] = []
    lineage = state.lineage if state is not None else None
    serial = state.serial if state is not None else 0
    if lineage != plan.lineage:
        problems.append(
            Diagnostic.error(
                "stale plan: the state was replaced since the plan was made",
                f"The plan was made against state lineage {plan.lineage or '(no state)'}, "
                f"but the state now has lineage {lineage or '(no state)'}. {_REPLAN}",
            )
        )
    elif serial != plan.serial:
        problems.append(
            Diagnostic.error(
                "stale plan: the state changed since the plan was made",
                f"The plan was made at state serial {plan.serial}; the state is now at serial "
                f"{serial} (another apply ran in between). {_REPLAN}",
            )
        )
    if desired.input_digest != plan.input_digest:
        moved = _moved_objects(plan, desired)
        what = (
            f"The inputs of {', '.join(moved[:10])}"
            + (f" and {len(moved) - 10} more" if len(moved) > 10 else "")
            + " changed"
            if moved
            else "Global settings (target, backend, policies or project) changed"
        )
        problems.append(
            Diagnostic.error(
                "stale plan: the configuration or its inputs changed since the plan was made",
                f"{what} since the plan was made. {_REPLAN}",
            )
        )
    return problems


def _moved_objects(plan: Plan, desired: DesiredSystem) -> list[str]:
    """Objects whose fingerprints differ between the plan and the desired system."""
    planned = {c.address: c for c in plan.changes if c.after is not None}
    now = {str(o.address): o for o in desired}
    moved: list[str] = []
    for address, obj in now.items():
        change = planned.get(address)
        if change is None:
            if not plan.destroy:
                moved.append(address)
        elif (
            dict(obj.fingerprints) != change.fingerprints
            or (obj.content_digest or None) != change.content_digest
        ):
            moved.append(address)
    moved += [address for address in planned if address not in now]
    return moved
