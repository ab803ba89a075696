"""What a policy pack is: the :class:`PolicyPack` protocol and the helpers packs share.

A pack is a named set of rules (:class:`~mlform.policy.model.RuleInfo`) with one
``check(inp, ctx)`` that yields :class:`Violation` values. The engine turns violations
into findings: it applies the effective level, finds the file and line of the key,
and matches exemptions. Packs never decide levels, locations or exemptions themselves.

Third-party packs register under the entry-point group ``mlform.policy_packs``; the
entry point names a pack instance (or a class that builds one with no arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mlform.addresses import Kind
from mlform.policy.model import Level, PolicyInput, RuleInfo

DEFAULT_PROD_STACKS = ("prod", "production")

OBJECT_SECTIONS = ("data", "features", "models", "deployments", "monitors")


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule broken at one place, as a pack reports it (before levels and exemptions)."""

    rule: str
    message: str
    address: str | None = None
    key: str | None = None  # config key path of the offending value, most specific first


class FindingLike(Protocol):
    """What the engine reads from a pack's output (:class:`Violation` or ``Finding``)."""

    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def address(self) -> str | None: ...
    @property
    def key(self) -> str | None: ...


@dataclass(slots=True)
class RuleContext:
    """What a pack may ask the engine while it checks: levels, settings, the plan.

    ``rule`` is set by a pack to the id of the rule it is checking, so that a crash is
    reported against that rule (:class:`RulePack` does this for you).
    """

    inp: PolicyInput
    levels: Mapping[str, Level]
    rule: str | None = None
    _changes: dict[str, Mapping[str, Any]] | None = field(default=None, repr=False)

    def level(self, rule_id: str) -> Level:
        return self.levels.get(rule_id, Level.DISABLED)

    def enabled(self, rule_id: str) -> bool:
        return self.level(rule_id) is not Level.DISABLED

    @property
    def settings(self) -> Mapping[str, Any]:
        """``policies.settings`` (free-form settings that packs read)."""
        policies = self.inp.spec.get("policies") or {}
        settings = policies.get("settings") or {}
        return settings if isinstance(settings, Mapping) else {}

    @property
    def is_prod(self) -> bool:
        """True when the stack is one of ``policies.settings.prod_stacks``."""
        stacks = self.settings.get("prod_stacks", DEFAULT_PROD_STACKS)
        if isinstance(stacks, str):
            stacks = [stacks]
        return self.inp.stack in set(stacks)

    def section(self, name: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(name, config)`` of every object declared in ``name``, in declaration order."""
        objects = self.inp.spec.get(name) or {}
        for object_name, config in objects.items():
            yield object_name, config if isinstance(config, Mapping) else {}

    @property
    def changes(self) -> Mapping[str, Mapping[str, Any]]:
        """The plan's changes by address ({} without a plan)."""
        if self._changes is None:
            plan = self.inp.plan or {}
            self._changes = {
                str(c["address"]): c for c in plan.get("changes") or () if "address" in c
            }
        return self._changes

    def change_for(self, address: str) -> Mapping[str, Any] | None:
        return self.changes.get(address)


def address_of(section: str, name: str) -> str:
    """``models`` + ``churn`` -> ``model.churn``."""
    return f"{Kind.from_section(section).value}.{name}"


@runtime_checkable
class PolicyPack(Protocol):
    """A named set of rules checked by Python code."""

    @property
    def name(self) -> str: ...
    @property
    def rules(self) -> tuple[RuleInfo, ...]: ...
    def check(self, inp: PolicyInput, ctx: RuleContext) -> Iterable[FindingLike]: ...


Check = Callable[[PolicyInput, RuleContext], Iterable[Violation]]


@dataclass(frozen=True, slots=True)
class RulePack:
    """A pack built from one check function per rule; disabled rules are not run."""

    name: str
    checks: tuple[tuple[RuleInfo, Check], ...]

    @property
    def rules(self) -> tuple[RuleInfo, ...]:
        return tuple(info for info, _ in self.checks)

    def check(self, inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
        for info, run in self.checks:
            if not ctx.enabled(info.id):
                continue
            if info.requires_plan and inp.plan is None:
                continue
            ctx.rule = info.id
            yield from run(inp, ctx)
        ctx.rule = None
