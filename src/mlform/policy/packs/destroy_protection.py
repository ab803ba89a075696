"""Pack ``destroy-protection``: a production deployment is never destroyed by accident.

Plan-aware: a planned ``delete`` or ``replace`` of a deployment in a production stack
(``policies.settings.prod_stacks``) is a violation unless an exemption for
``destroy-protection.prod`` names the deployment.
"""

from __future__ import annotations

from collections.abc import Iterator

from mlform.policy.model import Level, PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation

PROD = RuleInfo(
    id="destroy-protection.prod",
    pack="destroy-protection",
    title="No production deployment is destroyed without an exemption",
    description="In a production stack, the plan may not delete or replace a deployment.",
    help="If the destroy is intended, add an exemption: `{rule: destroy-protection.prod, "
    "address: deployment.NAME, reason: …, expires: DATE}`; otherwise restore the deployment "
    "or undo the change that forces a replacement.",
    default_level=Level.MANDATORY,
    requires_plan=True,
)

DESTROY_ACTIONS = frozenset({"delete", "replace"})


def check_prod(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    if not ctx.is_prod:
        return
    for address, change in sorted(ctx.changes.items()):
        if not address.startswith("deployment.") or change.get("action") not in DESTROY_ACTIONS:
            continue
        name = address.removeprefix("deployment.")
        yield Violation(
            PROD.id,
            f"the plan would {change.get('action')} {address} in production stack {inp.stack!r}",
            address=address,
            key=f"deployments.{name}",
        )


PACK = RulePack("destroy-protection", ((PROD, check_prod),))
