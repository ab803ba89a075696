"""Pack ``registries``: deployment images come from approved registries.

Active when ``policies.settings.approved_registries`` is set. An image is approved when
it equals a listed prefix or continues it at a path boundary (``/``, ``:`` or ``@``), so
``ghcr.io/example-org`` approves ``ghcr.io/example-org/api:1`` but not
``ghcr.io/example-org-evil/api``. Deployments without ``image`` use the server image
mlform builds and are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from mlform.policy.model import PolicyInput, RuleInfo
from mlform.policy.pack import RuleContext, RulePack, Violation

APPROVED = RuleInfo(
    id="registries.approved",
    pack="registries",
    title="Images come from approved registries",
    description="Every deployment `image` starts with one of "
    "`policies.settings.approved_registries`.",
    help="Push the image to an approved registry, or add the registry to "
    "`policies.settings.approved_registries`.",
)


def approved(image: str, registries: list[str]) -> bool:
    for prefix in registries:
        stem = prefix.rstrip("/")
        if image == stem or (image.startswith(stem) and image[len(stem)] in "/:@"):
            return True
    return False


def check_approved(inp: PolicyInput, ctx: RuleContext) -> Iterator[Violation]:
    registries = ctx.settings.get("approved_registries")
    if registries is None:
        return
    allowed = [registries] if isinstance(registries, str) else [str(r) for r in registries]
    for name, deployment in ctx.section("deployments"):
        image = deployment.get("image")
        if isinstance(image, str) and not approved(image, allowed):
            yield Violation(
                APPROVED.id,
                f"deployment.{name} runs image {image!r}, not from an approved registry "
                f"({', '.join(allowed) or 'none approved'})",
                address=f"deployment.{name}",
                key=f"deployments.{name}.image",
            )


PACK = RulePack("registries", ((APPROVED, check_approved),))
