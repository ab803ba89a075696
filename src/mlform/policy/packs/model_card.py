"""Pack ``model-card``: a model served in production has a model card."""

from __future__ import annotations

from collections.abc import Iterator

from mlform.policy.model import PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation
from mlform.policy.packs.spec_reading import dig, served_models

REQUIRED = RuleInfo(
    id="model-card.required",
    pack="model-card",
    title="Models served in production have a model card",
    description="In a production stack, every model a deployment serves (its model, A/B "
    "variants, shadow) declares `card.intended_use` and `card.limitations`.",
    help="Add `card: {intended_use: …, limitations: …}` to the model.",
)

CARD_FIELDS = ("intended_use", "limitations")


def check_required(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    if not ctx.is_prod:
        return
    served = {m for _, deployment in ctx.section("deployments") for m in served_models(deployment)}
    for name, model in ctx.section("models"):
        if name not in served:
            continue
        missing = [f for f in CARD_FIELDS if not dig(model, "card", f)]
        if missing:
            has_card = isinstance(model.get("card"), dict)
            yield Violation(
                REQUIRED.id,
                f"model.{name} is served in production stack {inp.stack!r} but its model "
                f"card lacks {' and '.join(missing)}",
                address=f"model.{name}",
                key=f"models.{name}.card" if has_card else f"models.{name}",
            )


PACK = RulePack("model-card", ((REQUIRED, check_required),))
