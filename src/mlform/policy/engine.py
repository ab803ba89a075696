"""Policy evaluation: a pure function from :class:`PolicyInput` to :class:`PolicyReport`.

1. Choose packs (``policies.packs``) from the packs given, or from those installed under
   the entry-point group ``mlform.policy_packs``.
2. Build the catalogue: pack rules, custom CEL rules, ``policy.exemption-expired``; the
   effective level of each; disabled rules and plan-aware rules without a plan are not
   evaluated.
3. Run each pack behind an error boundary (a crash is an error diagnostic naming the pack
   and rule; the other packs still run), then the custom CEL rules.
4. Turn violations into findings: level, file and line of the key (nearest parent key
   with a provenance), the exemption in force that waives it; add a mandatory finding
   per expired exemption. Findings are sorted by (rule, address, key, message).

No I/O (beyond entry-point discovery when no packs are passed), no clock, no printing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlform.diagnostics import Diagnostic
from mlform.policy.catalogue import Catalogue, build_catalogue, select_packs
from mlform.policy.cel_rules import read_rules, run_rules
from mlform.policy.discovery import discover_packs
from mlform.policy.exemptions import expired_findings, in_force, matching, read_exemptions
from mlform.policy.locate import locate
from mlform.policy.model import Exemption, Finding, PolicyInput, PolicyReport
from mlform.policy.pack import FindingLike, PolicyPack, RuleContext

__all__ = ["evaluate"]


def _policies(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    policies = spec.get("policies") or {}
    return policies if isinstance(policies, Mapping) else {}


def _run_pack(
    index: int, pack: PolicyPack, inp: PolicyInput, ctx: RuleContext
) -> tuple[list[FindingLike], list[Diagnostic]]:
    """The pack's violations of evaluated rules; a crash becomes an error diagnostic."""
    declared = {info.id for info in pack.rules}
    found: list[FindingLike] = []
    problems: list[Diagnostic] = []
    ctx.rule = None
    key = f"policies.packs.{index}"
    file, line = locate(key, inp.provenance)
    try:
        for item in pack.check(inp, ctx):
            if item.rule not in declared:
                problems.append(
                    Diagnostic.error(
                        f"policy pack {pack.name} reported undeclared rule {item.rule}",
                        "A pack may only report the rules it lists in `rules`; this finding "
                        "was dropped. Report it to the pack's authors.",
                        key=key,
                        file=file,
                        line=line,
                    )
                )
            elif ctx.enabled(item.rule):
                found.append(item)
    except Exception as exc:  # user code: the error boundary
        rule = ctx.rule or ", ".join(sorted(r for r in declared if ctx.enabled(r)))
        problems.append(
            Diagnostic.error(
                f"policy pack {pack.name} failed in rule {rule}",
                f"{type(exc).__name__}: {exc}. The rule's result is unknown, so the check "
                "fails; fix or update the pack, or disable the rule in policies.levels.",
                key=key,
                file=file,
                line=line,
            )
        )
    return found, problems


def _finding(
    item: FindingLike, catalogue: Catalogue, ctx: RuleContext, waivers: Sequence[Exemption]
) -> Finding:
    file, line = locate(item.key, ctx.inp.provenance)
    if file is None and item.address is not None:  # e.g. a deleted object: no config left
        change = ctx.change_for(item.address) or {}
        file = change.get("source_file")
    return Finding(
        rule=item.rule,
        level=catalogue.levels[item.rule],
        message=item.message,
        address=item.address,
        key=item.key,
        file=file,
        line=line,
        exempted_by=matching(item.rule, item.address, waivers),
    )


def _unknown_exemption_rules(
    exemptions: Sequence[Exemption], catalogue: Catalogue
) -> list[Diagnostic]:
    known = {r.id for r in catalogue.rules}
    return [
        Diagnostic.warning(
            f"exemption for unknown rule {e.rule}",
            "No selected pack or custom rule has this id, so the exemption waives nothing. "
            "Check the rule id, or remove the exemption.",
            key=f"{e.key}.rule",
            file=e.file,
            line=e.line,
        )
        for e in exemptions
        if e.rule not in known
    ]


def evaluate(inp: PolicyInput, *, packs: Sequence[PolicyPack] | None = None) -> PolicyReport:
    """Evaluate every enabled rule over ``inp``; findings, exemptions and rule errors."""
    policies = _policies(inp.spec)
    diagnostics: list[Diagnostic] = []
    if packs is None:
        available, load_problems = discover_packs()
        diagnostics.extend(load_problems)
    else:
        available = tuple(packs)
    selected, problems = select_packs(available, policies.get("packs") or (), inp.provenance)
    diagnostics.extend(problems)
    catalogue = build_catalogue(
        [pack for _, pack in selected],
        read_rules(policies),
        policies.get("levels") or {},
        inp.provenance,
    )
    diagnostics.extend(catalogue.diagnostics)
    evaluated = catalogue.evaluated(has_plan=inp.plan is not None)
    ctx = RuleContext(inp, {r.id: catalogue.levels[r.id] for r in evaluated})

    items: list[FindingLike] = []
    for index, pack in selected:
        if any(ctx.enabled(r.id) for r in pack.rules):
            found, problems = _run_pack(index, pack, inp, ctx)
            items.extend(found)
            diagnostics.extend(problems)
    custom = [rule for rule in catalogue.custom if ctx.enabled(rule.id)]
    violations, problems = run_rules(inp, custom)
    items.extend(violations)
    diagnostics.extend(problems)

    exemptions = read_exemptions(policies, inp.provenance)
    diagnostics.extend(_unknown_exemption_rules(exemptions, catalogue))
    waivers = in_force(exemptions, inp.today)
    findings = [_finding(item, catalogue, ctx, waivers) for item in items]
    findings.extend(expired_findings(exemptions, inp.today))
    findings.sort(key=lambda f: (f.rule, f.address or "", f.key or "", f.message))
    return PolicyReport(
        rules=evaluated,
        findings=tuple(findings),
        exemptions_in_force=waivers,
        diagnostics=tuple(diagnostics),
    )
