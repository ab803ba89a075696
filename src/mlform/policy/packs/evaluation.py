"""Pack ``evaluation``: every model is gated by at least one evaluation gate."""

from __future__ import annotations

from collections.abc import Iterator

from mlform.policy.model import PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation

GATE = RuleInfo(
    id="evaluation.gate",
    pack="evaluation",
    title="Every model has an evaluation gate",
    description="A model declares at least one gate: a metric threshold "
    '(`roc_auc: ">= 0.95"`) or `must_beat_champion`.',
    help='Add `gates: {METRIC: ">= VALUE"}` to the model, so a worse candidate is rejected '
    "instead of deployed.",
)


def check_gate(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    for name, model in ctx.section("models"):
        gates = model.get("gates") or {}
        if not isinstance(gates, dict) or not any(v is not None for v in gates.values()):
            yield Violation(
                GATE.id,
                f"model.{name} has no evaluation gate",
                address=f"model.{name}",
                key=f"models.{name}.gates",
            )


PACK = RulePack("evaluation", ((GATE, check_gate),))
