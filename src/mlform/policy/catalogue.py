"""The rule catalogue of one evaluation: selected packs, custom rules, effective levels.

Packs are chosen by name in ``policies.packs``; an unknown name is an error at
``policies.packs.N`` listing the packs available. A rule's effective level is
``policies.levels[rule_id]`` when set (stack overlays set it), else its default; custom
rules default to their own ``level``. ``policy.exemption-expired`` is always mandatory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlform.diagnostics import Diagnostic
from mlform.policy.cel_rules import CustomRule
from mlform.policy.exemptions import EXPIRED
from mlform.policy.locate import Provenance, locate
from mlform.policy.model import Level, RuleInfo
from mlform.policy.pack import PolicyPack


def _where(key: str, provenance: Provenance) -> dict[str, Any]:
    file, line = locate(key, provenance)
    return {"key": key, "file": file, "line": line}


def select_packs(
    available: Sequence[PolicyPack], names: Iterable[Any], provenance: Provenance
) -> tuple[list[tuple[int, PolicyPack]], list[Diagnostic]]:
    """``(index in policies.packs, pack)`` for every named pack, and unknown-name errors."""
    by_name = {pack.name: pack for pack in available}
    chosen: list[tuple[int, PolicyPack]] = []
    problems: list[Diagnostic] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        pack = by_name.get(str(name))
        if pack is None:
            problems.append(
                Diagnostic.error(
                    f"unknown policy pack {name!r}",
                    f"Available packs: {', '.join(sorted(by_name)) or 'none installed'}. "
                    "Fix the name, or install the package that provides the pack.",
                    **_where(f"policies.packs.{index}", provenance),
                )
            )
        elif pack.name not in seen:
            seen.add(pack.name)
            chosen.append((index, pack))
    return chosen, problems


@dataclass(frozen=True, slots=True)
class Catalogue:
    rules: tuple[RuleInfo, ...]  # every known rule of this evaluation
    levels: Mapping[str, Level]  # effective level of every known rule
    custom: tuple[CustomRule, ...]  # custom rules kept (unique ids)
    diagnostics: tuple[Diagnostic, ...]

    def evaluated(self, *, has_plan: bool) -> tuple[RuleInfo, ...]:
        """Rules that run: enabled, and not needing a plan that is missing; sorted by id."""
        return tuple(
            sorted(
                (
                    r
                    for r in self.rules
                    if self.levels[r.id] is not Level.DISABLED and (has_plan or not r.requires_plan)
                ),
                key=lambda r: r.id,
            )
        )


def build_catalogue(
    packs: Sequence[PolicyPack],
    custom: Sequence[CustomRule],
    overrides: Mapping[str, Any],
    provenance: Provenance,
) -> Catalogue:
    problems: list[Diagnostic] = []
    rules: dict[str, RuleInfo] = {EXPIRED.id: EXPIRED}
    for pack in packs:
        for info in pack.rules:
            rules.setdefault(info.id, info)
    kept: list[CustomRule] = []
    for rule in custom:
        if rule.id in rules:
            problems.append(
                Diagnostic.error(
                    f"custom policy rule id {rule.id} is already taken",
                    "Another rule (built-in or custom) has this id; give the rule a unique "
                    "id, e.g. custom.NAME.",
                    **_where(f"{rule.key}.id", provenance),
                )
            )
            continue
        rules[rule.id] = rule.info()
        kept.append(rule)
    levels = {rule_id: info.default_level for rule_id, info in rules.items()}
    for rule_id, value in overrides.items():
        key = f"policies.levels.{rule_id}"
        if rule_id not in rules:
            problems.append(
                Diagnostic.warning(
                    f"policies.levels names unknown rule {rule_id}",
                    f"Known rules: {', '.join(sorted(rules))}. Check the id, or add the "
                    "pack that defines it to policies.packs.",
                    **_where(key, provenance),
                )
            )
        elif rule_id == EXPIRED.id or value not in set(Level):
            problems.append(
                Diagnostic.warning(
                    f"the level of {rule_id} cannot be set to {value!r}",
                    f"{EXPIRED.id} is always mandatory; other rules take one of "
                    "advisory, mandatory, disabled.",
                    **_where(key, provenance),
                )
            )
        else:
            levels[rule_id] = Level(value)
    return Catalogue(tuple(rules.values()), levels, tuple(kept), tuple(problems))
