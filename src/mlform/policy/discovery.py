"""Finding policy packs: the entry-point group ``mlform.policy_packs``.

This is the one place the policy package reads installed-package metadata; the engine
calls it only when no packs are passed in. A pack that fails to load is reported as an
error diagnostic naming the entry point, and the others still load.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from mlform.diagnostics import Diagnostic
from mlform.policy.pack import PolicyPack

GROUP = "mlform.policy_packs"


def _load(entry: EntryPoint) -> PolicyPack:
    obj = entry.load()
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, PolicyPack):
        raise TypeError(f"{entry.value} is not a policy pack (needs name, rules and check)")
    return obj


def discover_packs() -> tuple[tuple[PolicyPack, ...], tuple[Diagnostic, ...]]:
    """Every installed pack, sorted by name, and a diagnostic per pack that failed to load."""
    packs: dict[str, PolicyPack] = {}
    problems: list[Diagnostic] = []
    for entry in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        try:
            pack = _load(entry)
        except Exception as exc:  # third-party code: report, keep going
            problems.append(
                Diagnostic.error(
                    f"policy pack {entry.name} failed to load",
                    f"Entry point {entry.name} = {entry.value} (group {GROUP}) raised "
                    f"{type(exc).__name__}: {exc}. Fix or uninstall the package providing it.",
                )
            )
            continue
        packs.setdefault(pack.name, pack)
    return tuple(packs.values()), tuple(problems)
