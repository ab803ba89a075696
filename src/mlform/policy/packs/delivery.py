"""Pack ``delivery``: production rollouts are progressive and analysed.

"Production" is a stack listed in ``policies.settings.prod_stacks`` (default
``[prod, production]``). A deployment delivers progressively with ``strategy: canary``
and at least one analysis metric, or ``strategy: blue_green`` whose promotion is manual
(``auto_promote: false``) or waits for a preview period (``promote_after``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlform.policy.model import PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation
from mlform.policy.packs.spec_reading import dig

PROGRESSIVE = RuleInfo(
    id="delivery.progressive",
    pack="delivery",
    title="Production deployments roll out progressively with analysis",
    description="In a production stack every deployment uses a canary strategy with analysis "
    "metrics, or blue-green with a manual or delayed promotion.",
    help="Set `strategy: {type: canary}` (the default analysis checks success rate and p99 "
    "latency) or `strategy: {type: blue_green}` on the deployment.",
)
ANALYSIS = RuleInfo(
    id="delivery.analysis",
    pack="delivery",
    title="A planned canary rollout has analysis metrics",
    description="A deployment the plan rolls out (rollout, update or replace) with a canary "
    "strategy must declare at least one analysis metric; otherwise the canary is promoted "
    "blind.",
    help='Add `strategy.analysis.metrics`, e.g. `{name: success_rate, threshold: ">= 0.99"}`.',
    requires_plan=True,
)

ROLLOUT_ACTIONS = frozenset({"rollout", "update", "replace"})


def _metrics(strategy: Mapping[str, Any]) -> list[Any]:
    metrics = dig(strategy, "analysis", "metrics")
    return list(metrics) if isinstance(metrics, list) else []


def _progressive(strategy: Mapping[str, Any]) -> bool:
    kind = strategy.get("type")
    if kind == "canary":
        return bool(_metrics(strategy))
    if kind == "blue_green":
        return not strategy.get("auto_promote") or strategy.get("promote_after") is not None
    return False


def check_progressive(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    if not ctx.is_prod:
        return
    for name, deployment in ctx.section("deployments"):
        strategy = deployment.get("strategy") or {}
        if not isinstance(strategy, Mapping) or _progressive(strategy):
            continue
        kind = strategy.get("type", "rolling")
        if kind == "canary":
            detail, key = "a canary without analysis metrics", "strategy.analysis.metrics"
        elif kind == "blue_green":
            detail, key = "blue-green promoted automatically at once", "strategy.auto_promote"
        else:
            detail, key = f"strategy {kind}", "strategy.type"
        yield Violation(
            PROGRESSIVE.id,
            f"deployment.{name} in production stack {inp.stack!r} uses {detail}; "
            "use canary with analysis or blue-green",
            address=f"deployment.{name}",
            key=f"deployments.{name}.{key}",
        )


def check_analysis(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    for name, deployment in ctx.section("deployments"):
        change = ctx.change_for(f"deployment.{name}")
        if change is None or change.get("action") not in ROLLOUT_ACTIONS:
            continue
        strategy = deployment.get("strategy") or {}
        canary = isinstance(strategy, Mapping) and strategy.get("type") == "canary"
        if canary and not _metrics(strategy):
            yield Violation(
                ANALYSIS.id,
                f"the plan rolls out deployment.{name} as a canary with no analysis metrics",
                address=f"deployment.{name}",
                key=f"deployments.{name}.strategy.analysis.metrics",
            )


PACK = RulePack("delivery", ((PROGRESSIVE, check_progressive), (ANALYSIS, check_analysis)))
