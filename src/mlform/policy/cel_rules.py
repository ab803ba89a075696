"""Custom rules written in CEL (``policies.rules``), evaluated with cel-python (``celpy``).

A rule's expression must evaluate to ``true``. Whole-system rules see ``spec``, ``stack``
and ``plan`` (null without a plan); ``for_each: SECTION`` rules run once per object of
that section and also see ``name``, ``object`` and ``change`` (the plan's change for the
object's address, or null). Each distinct expression is compiled once (cached).
A rule that fails to compile or to evaluate is an error diagnostic at
``policies.rules.N.expression``, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from mlform.diagnostics import Diagnostic
from mlform.policy.locate import Provenance, locate
from mlform.policy.model import Level, PolicyInput, RuleInfo
from mlform.policy.pack import Violation, address_of


@lru_cache(maxsize=1)
def _env() -> celpy.Environment:
    """Built on first use: building the CEL parser costs ~0.5 s, wasted without rules."""
    return celpy.Environment()


@dataclass(frozen=True, slots=True)
class CustomRule:
    """One entry of ``policies.rules``, at index ``index``."""

    index: int
    id: str
    expression: str
    level: Level = Level.ADVISORY
    message: str | None = None
    description: str | None = None
    for_each: str | None = None
    requires_plan: bool = False

    @property
    def key(self) -> str:
        return f"policies.rules.{self.index}"

    def info(self) -> RuleInfo:
        scope = f" for each object of {self.for_each}" if self.for_each else ""
        return RuleInfo(
            id=self.id,
            pack="custom",
            title=self.description or f"custom rule {self.id}",
            description=f"CEL rule{scope}: `{self.expression}` must be true.",
            help=self.message or f"Change the config so that `{self.expression}` holds.",
            default_level=self.level,
            requires_plan=self.requires_plan,
        )


def read_rules(policies: Mapping[str, Any]) -> list[CustomRule]:
    """The custom rules of ``policies.rules`` (entries without an id or expression skipped)."""
    rules = []
    for index, raw in enumerate(policies.get("rules") or ()):
        if not isinstance(raw, Mapping) or not raw.get("id") or not raw.get("expression"):
            continue
        rules.append(
            CustomRule(
                index=index,
                id=str(raw["id"]),
                expression=str(raw["expression"]),
                level=Level(raw["level"]) if raw.get("level") in set(Level) else Level.ADVISORY,
                message=raw.get("message"),
                description=raw.get("description"),
                for_each=raw.get("for_each"),
                requires_plan=bool(raw.get("requires_plan", False)),
            )
        )
    return rules


@lru_cache(maxsize=512)
def compile_expression(expression: str) -> celpy.Runner:
    """A reusable program for ``expression``; raises ``celpy.CELParseError``."""
    env = _env()
    return env.program(env.compile(expression))


def to_cel(value: Any) -> Any:
    """JSON-like Python data as CEL values (other scalars, e.g. dates, as strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return json_to_cel(value)
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(v) for v in value])
    return celtypes.StringType(str(value))


@dataclass(frozen=True, slots=True)
class _Outcome:
    violations: list[Violation]
    diagnostics: list[Diagnostic]


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, CELEvalError) and exc.args:
        return str(exc.args[0])
    return f"{type(exc).__name__}: {exc}".strip()


def _run(program: celpy.Runner, activation: Mapping[str, Any]) -> bool | str:
    """True/False, or the text of the evaluation error."""
    try:
        result = program.evaluate(dict(activation))
    except Exception as exc:  # celpy raises CELEvalError, and occasionally plain errors
        return _error_text(exc)
    if isinstance(result, CELEvalError):
        return _error_text(result)
    if isinstance(result, celtypes.BoolType):
        return bool(result)
    return f"the expression must evaluate to a bool, not {type(result).__name__} {result!r}"


class CelRunner:
    """Evaluates custom rules over one :class:`PolicyInput` (converted to CEL once)."""

    def __init__(self, inp: PolicyInput) -> None:
        self.inp = inp
        self._base: dict[str, Any] | None = None
        self._changes: dict[str, Any] | None = None

    @property
    def base(self) -> dict[str, Any]:
        if self._base is None:
            self._base = {
                "spec": to_cel(self.inp.spec),
                "stack": celtypes.StringType(self.inp.stack),
                "plan": to_cel(self.inp.plan),
            }
            changes = (self.inp.plan or {}).get("changes") or ()
            self._changes = {str(c.get("address")): to_cel(c) for c in changes}
        return self._base

    def _objects(self, section: str) -> Iterator[tuple[str, dict[str, Any]]]:
        base = self.base
        objects = base["spec"].get(celtypes.StringType(section)) or {}
        changes = self._changes or {}
        for name, obj in objects.items():
            change = changes.get(address_of(section, str(name)))
            yield str(name), {**base, "name": name, "object": obj, "change": change}

    def run(self, rule: CustomRule, provenance: Provenance) -> _Outcome:
        expr_key = f"{rule.key}.expression"
        file, line = locate(expr_key, provenance)
        try:
            program = compile_expression(rule.expression)
        except Exception as exc:
            detail = f"CEL: {exc}".strip()
            return _Outcome([], [_diag(rule, "does not compile", detail, expr_key, file, line)])
        if rule.for_each is None:
            result = _run(program, self.base)
            if isinstance(result, str):
                return _Outcome(
                    [], [_diag(rule, "failed to evaluate", result, expr_key, file, line)]
                )
            return _Outcome([] if result else [self._violation(rule, None)], [])
        violations: list[Violation] = []
        errors: list[str] = []
        for name, activation in self._objects(rule.for_each):
            result = _run(program, activation)
            if isinstance(result, str):
                errors.append(f"{address_of(rule.for_each, name)}: {result}")
            elif not result:
                violations.append(self._violation(rule, name))
        diagnostics = []
        if errors:
            more = f" (and {len(errors) - 1} more objects)" if len(errors) > 1 else ""
            detail = errors[0] + more
            diagnostics.append(_diag(rule, "failed to evaluate", detail, expr_key, file, line))
        return _Outcome(violations, diagnostics)

    @staticmethod
    def _violation(rule: CustomRule, name: str | None) -> Violation:
        message = rule.message or f"`{rule.expression}` is not true"
        if name is None or rule.for_each is None:
            return Violation(rule.id, message, key=rule.key)
        address = address_of(rule.for_each, name)
        return Violation(
            rule.id, f"{address}: {message}", address=address, key=f"{rule.for_each}.{name}"
        )


def _diag(
    rule: CustomRule, what: str, detail: str, key: str, file: str | None, line: int | None
) -> Diagnostic:
    return Diagnostic.error(
        f"custom policy rule {rule.id} {what}",
        f"{detail}\nFix the CEL expression of {rule.key} (see docs/policies.md).",
        key=key,
        file=file,
        line=line,
    )


def run_rules(
    inp: PolicyInput, rules: Sequence[CustomRule]
) -> tuple[list[Violation], list[Diagnostic]]:
    """Evaluate ``rules`` (already filtered to the enabled ones) over ``inp``."""
    runner = CelRunner(inp)
    violations: list[Violation] = []
    diagnostics: list[Diagnostic] = []
    for rule in rules:
        outcome = runner.run(rule, inp.provenance)
        violations.extend(outcome.violations)
        diagnostics.extend(outcome.diagnostics)
    return violations, diagnostics
