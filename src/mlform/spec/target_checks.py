"""Checks of the ``target`` settings against the rest of the spec (warnings only).

On the ``kubernetes`` target the stack's namespace belongs to ``project.team``, and only
that team's quota can be placed there (:mod:`mlform.infra.kubernetes_stack`): a quota of
another team in ``resources.quotas`` is still checked by the ``gpu-quota`` policy pack of
that team's own projects, but this stack places no ResourceQuota for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlform.diagnostics import Diagnostic
from mlform.infra.kubernetes_stack import foreign_quota_teams
from mlform.spec.problems import Origin, where
from mlform.spec.system import SystemSpec


def check_target(spec: SystemSpec, provenance: Mapping[str, Origin]) -> list[Diagnostic]:
    """Warnings for settings the target cannot act on."""
    if spec.target.type != "kubernetes":
        return []
    settings = {
        "project": spec.project.model_dump(),
        "resources": spec.resources.model_dump(),
    }
    team = spec.project.team
    out: list[Diagnostic] = []
    for other in foreign_quota_teams(settings):
        key = f"resources.quotas.{other}"
        owner = f"team {team} (project.team)" if team else "no team: project.team is not set"
        out.append(
            Diagnostic.warning(
                f"{key}: the GPU quota of team {other} is not placed on this stack",
                f"On the kubernetes target the stack's namespace belongs to {owner}, so only "
                "that team's quota becomes a ResourceQuota there. Set project.team to "
                f"{other} if this project is that team's, or move the quota to the "
                "projects of team " + other + ".",
                **where(key, provenance),
            )
        )
    return out
