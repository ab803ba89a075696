"""Value types of the policy engine (shared by the engine, the renderers and the plan).

Evaluation is pure: :class:`PolicyInput` in (spec, provenance, stack, plan, today),
:class:`PolicyReport` out. Rule ids are stable (``pii.encryption``) because SARIF,
exemptions and level overrides refer to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from mlform.diagnostics import Diagnostic


class Level(StrEnum):
    ADVISORY = "advisory"
    MANDATORY = "mandatory"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What a rule is, for reports: SARIF ``tool.driver.rules``, JUnit test cases, docs."""

    id: str  # stable, e.g. "pii.encryption"
    pack: str  # "pii", or "custom" for config rules
    title: str  # one line
    description: str  # what it checks and why
    help: str  # what to do about a violation
    default_level: Level = Level.ADVISORY
    requires_plan: bool = False


@dataclass(frozen=True, slots=True)
class Exemption:
    rule: str
    address: str | None
    reason: str
    expires: date
    key: str | None = None  # config key of the exemption (policies.exemptions.0)
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One violation of one rule (possibly waived by an exemption)."""

    rule: str
    level: Level  # effective level after config and stack overrides
    message: str
    address: str | None = None
    key: str | None = None  # config key path of the offending value
    file: str | None = None  # file that set that key (relative to the project dir)
    line: int | None = None
    exempted_by: Exemption | None = None

    @property
    def blocking(self) -> bool:
        return self.level is Level.MANDATORY and self.exempted_by is None


@dataclass(frozen=True, slots=True)
class PolicyInput:
    # The resolved, redacted config: {"project": …, "data": {name: …}, "features": …,
    # "models": …, "resources": …, "deployments": …, "monitors": …, "policies": …,
    # "target": …, "backend": …}.
    spec: Mapping[str, Any]
    # Config key path -> (file relative to project dir, 1-based line or None).
    provenance: Mapping[str, tuple[str, int | None]]
    stack: str
    today: date
    # The plan as JSON data (mlform.plan.render.json.plan_document), or None (validate).
    plan: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PolicyReport:
    rules: tuple[RuleInfo, ...]  # every rule evaluated (enabled), sorted by id
    findings: tuple[Finding, ...]  # sorted by (rule, address, key)
    exemptions_in_force: tuple[Exemption, ...] = ()
    # Rules that crashed (a Python pack raising, a CEL expression failing to compile or
    # evaluate): errors naming the rule and pack; they fail the check like a violation.
    diagnostics: tuple[Diagnostic, ...] = field(default_factory=tuple)

    @property
    def mandatory(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocking)

    @property
    def advisory(self) -> tuple[Finding, ...]:
        return tuple(
            f for f in self.findings if f.exempted_by is None and f.level is Level.ADVISORY
        )

    def exit_code(self, *, fail_on_warn: bool = False) -> int:
        """As conftest: 0 clean, 1 a mandatory violation (or any, with fail_on_warn)."""
        if self.mandatory or any(d.severity.value == "error" for d in self.diagnostics):
            return 1
        if fail_on_warn and self.advisory:
            return 1
        return 0
