"""Pack ``fairness``: models fed sensitive columns are checked for fairness.

A model whose feature set declares ``sensitive`` columns must declare ``fairness`` over
every one of them with ``min_ratio`` at least ``policies.settings.fairness_min_ratio``
(default 0.8, the four-fifths rule).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mlform.policy.model import PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation

RATIO = RuleInfo(
    id="fairness.ratio",
    pack="fairness",
    title="Fairness ratio ≥ 0.8 where sensitive columns are declared",
    description="A model whose feature set declares `sensitive` columns declares `fairness` "
    "over those columns with `min_ratio` of at least 0.8 (setting `fairness_min_ratio`).",
    help="Add `fairness: {sensitive: [COLUMNS], min_ratio: 0.8}` to the model.",
)

DEFAULT_MIN_RATIO = 0.8


def check_ratio(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    features = inp.spec.get("features") or {}
    floor = ctx.settings.get("fairness_min_ratio", DEFAULT_MIN_RATIO)
    for name, model in ctx.section("models"):
        feature = features.get(model.get("features"))
        sensitive = list(feature.get("sensitive") or ()) if isinstance(feature, Mapping) else []
        if not sensitive:
            continue
        fairness = model.get("fairness")
        where = f"models.{name}.fairness"
        if not isinstance(fairness, Mapping):
            problem, key = "declares no fairness check", f"models.{name}.features"
        elif missing := [c for c in sensitive if c not in (fairness.get("sensitive") or ())]:
            problem, key = f"does not check fairness over {', '.join(missing)}", where
        elif not isinstance(ratio := fairness.get("min_ratio", DEFAULT_MIN_RATIO), int | float):
            problem, key = "has no numeric fairness.min_ratio", f"{where}.min_ratio"
        elif ratio < floor:
            problem, key = f"accepts a fairness ratio of {ratio} (< {floor})", f"{where}.min_ratio"
        else:
            continue
        yield Violation(
            RATIO.id,
            f"model.{name} is fed sensitive columns ({', '.join(sensitive)}) but {problem}",
            address=f"model.{name}",
            key=key,
        )


PACK = RulePack("fairness", ((RATIO, check_ratio),))
