"""Exemptions: waivers written in ``policies.exemptions`` with a reason and an expiry.

An exemption is *in force* while ``expires >= today``. It matches a finding of its rule
at its address; an exemption without an address waives the rule for the whole system
(findings at any address, and findings with no address). An expired exemption waives
nothing and is itself a violation of ``policy.exemption-expired`` (always mandatory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from mlform.policy.locate import Provenance, locate
from mlform.policy.model import Exemption, Finding, Level, RuleInfo

EXPIRED = RuleInfo(
    id="policy.exemption-expired",
    pack="policy",
    title="Exemptions are renewed or removed when they expire",
    description="An exemption whose `expires` date has passed waives nothing and fails the "
    "check until it is removed or renewed.",
    help="Fix what the exemption waived and delete the exemption, or renew it with a new "
    "`expires` date and an up-to-date `reason`.",
    default_level=Level.MANDATORY,
)


def read_exemptions(policies: Mapping[str, Any], provenance: Provenance) -> list[Exemption]:
    """The exemptions of ``policies.exemptions``, with their key, file and line."""
    out: list[Exemption] = []
    for index, raw in enumerate(policies.get("exemptions") or ()):
        if not isinstance(raw, Mapping):
            continue
        expires = raw.get("expires")
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError:
                continue  # the spec validates dates; a hand-built input may not
        if not isinstance(expires, date):
            continue
        key = f"policies.exemptions.{index}"
        file, line = locate(key, provenance)
        out.append(
            Exemption(
                rule=str(raw.get("rule", "")),
                address=raw.get("address"),
                reason=str(raw.get("reason", "")),
                expires=expires,
                key=key,
                file=file,
                line=line,
            )
        )
    return out


def in_force(exemptions: Iterable[Exemption], today: date) -> tuple[Exemption, ...]:
    return tuple(e for e in exemptions if e.expires >= today)


def matching(rule: str, address: str | None, exemptions: Sequence[Exemption]) -> Exemption | None:
    """The first exemption in force (declaration order) that waives ``rule`` at ``address``."""
    for exemption in exemptions:
        if exemption.rule == rule and exemption.address in (None, address):
            return exemption
    return None


def expired_findings(exemptions: Iterable[Exemption], today: date) -> list[Finding]:
    """One mandatory finding per expired exemption, at the exemption's key, file and line."""
    return [
        Finding(
            rule=EXPIRED.id,
            level=Level.MANDATORY,
            message=f"the exemption from {e.rule}"
            + (f" for {e.address}" if e.address else "")
            + f" expired on {e.expires.isoformat()} (reason given: {e.reason})",
            address=e.address,
            key=e.key,
            file=e.file,
            line=e.line,
        )
        for e in exemptions
        if e.expires < today
    ]
