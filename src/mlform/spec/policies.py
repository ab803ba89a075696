"""The ``policies`` section: built-in packs, levels, custom CEL rules and exemptions.

CEL expressions are stored as text here; the policy engine evaluates them.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field, field_validator

from mlform.addresses import Address, AddressError
from mlform.spec.base import SpecModel

Level = Literal["advisory", "mandatory", "disabled"]
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)+$"


Section = Literal["data", "features", "models", "deployments", "monitors"]


class Rule(SpecModel):
    """A custom CEL rule. The expression must evaluate to true for the system to comply.

    Without ``for_each`` it sees ``spec``, ``stack`` and ``plan`` (null when no plan is
    being checked). With ``for_each: deployments`` it runs once per deployment and also
    sees ``name``, ``object`` (that deployment's config) and ``change`` (its planned
    change, or null), so violations point at the object's file and line.
    ``requires_plan`` rules are skipped when no plan is being checked (``validate``).
    """

    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str | None = None
    expression: str = Field(min_length=1)
    level: Level = "advisory"
    message: str | None = None
    for_each: Section | None = None
    requires_plan: bool = False


class Exemption(SpecModel):
    """Waives ``rule`` for ``address`` (or for the whole system when no address is given)
    until ``expires``; an expired exemption is itself a violation."""

    rule: str = Field(pattern=RULE_ID_PATTERN)
    address: str | None = None
    reason: str = Field(min_length=1)
    expires: date

    @field_validator("address")
    @classmethod
    def _address_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            Address.parse(value)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        return value


class Policies(SpecModel):
    packs: list[str] = Field(default_factory=list)
    levels: dict[str, Level] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    exemptions: list[Exemption] = Field(default_factory=list)
