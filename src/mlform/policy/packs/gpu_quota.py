"""Pack ``gpu-quota``: a team's GPUs stay within its quota.

The team is ``project.team``; its quota is ``resources.quotas[team].gpus``. Demand is
the sum over deployments of peak replicas (``autoscaling.max_replicas`` when larger than
``replicas``) times the GPUs of their resource profile, plus the GPUs of every model's
training profile. Without a quota for the team there is nothing to check.
"""

from __future__ import annotations

from collections.abc import Iterator

from mlform.policy.model import PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation
from mlform.policy.packs.spec_reading import dig, gpu_count, peak_replicas

TEAM = RuleInfo(
    id="gpu-quota.team",
    pack="gpu-quota",
    title="The team's GPU demand fits its quota",
    description="Serving replicas times GPUs per replica, plus training GPUs of every model, "
    "must not exceed `resources.quotas[project.team].gpus`.",
    help="Lower replicas or autoscaling.max_replicas, move a model to a smaller profile, or "
    "raise the team's quota under `resources.quotas`.",
)


def check_team(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    team = dig(inp.spec, "project", "team")
    quota = dig(inp.spec, "resources", "quotas", team, "gpus") if isinstance(team, str) else None
    if not isinstance(quota, int):
        return
    parts: list[str] = []
    total = 0
    for name, deployment in ctx.section("deployments"):
        gpus = peak_replicas(deployment) * gpu_count(deployment, inp.spec)
        if gpus:
            total += gpus
            parts.append(f"deployment.{name}: {gpus}")
    for name, model in ctx.section("models"):
        gpus = gpu_count(model, inp.spec)
        if gpus:
            total += gpus
            parts.append(f"model.{name}: {gpus}")
    if total > quota:
        yield Violation(
            TEAM.id,
            f"team {team} asks for {total} GPUs, over its quota of {quota} ({', '.join(parts)})",
            key=f"resources.quotas.{team}.gpus",
        )


PACK = RulePack("gpu-quota", ((TEAM, check_team),))
