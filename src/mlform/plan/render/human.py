"""The human view of a plan: Terraform-like symbols, reasons, and the summary line.

Rendered with rich into a string (``Console(file=StringIO())``) at a fixed width, so
the same plan always gives the same text; colour only when asked.
"""

from __future__ import annotations

from io import StringIO

from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from mlform.desired.fingerprint import short_digest
from mlform.plan.model import Action, Plan, PolicyResult, ReasonKind, ResourceChange
from mlform.plan.render.values import ACTION_WORDS, PROVIDER_NOTE, describe_field, rollout_steps

__all__ = ["NO_CHANGES", "render_human"]

NO_CHANGES = "No changes. The system matches the configuration."

_STYLES: dict[Action, str] = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.REPLACE: "bold red",
    Action.DELETE: "red",
    Action.RETRAIN: "magenta",
    Action.ROLLOUT: "cyan",
    Action.NOOP: "dim",
}
_FIELD_STYLES = {"+": "green", "-": "red", "~": "yellow"}
_LEGEND_ORDER = (
    Action.CREATE,
    Action.UPDATE,
    Action.RETRAIN,
    Action.ROLLOUT,
    Action.REPLACE,
    Action.DELETE,
)


def render_human(
    plan: Plan, *, detailed: bool = False, color: bool = False, width: int = 100
) -> str:
    """The plan as terminal text; no-op objects are listed only when ``detailed``."""
    buffer = StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    if not plan.has_changes:
        if detailed:
            _print_changes(console, plan, detailed=True)
        console.print(Text(NO_CHANGES, style="bold green"))
        _print_policy(console, plan)
        return _tidy(buffer.getvalue())
    console.print(Text("mlform will perform these actions:"))
    console.print(_legend(plan))
    console.print()
    _print_changes(console, plan, detailed=detailed)
    unchanged = plan.summary.no_op
    if unchanged and not detailed:
        noun = "object" if unchanged == 1 else "objects"
        console.print(Text(f"{unchanged} unchanged {noun} not shown (use --detailed).", "dim"))
        console.print()
    console.print(Text(plan.summary.line(), style="bold"))
    _print_policy(console, plan)
    return _tidy(buffer.getvalue())


def _tidy(text: str) -> str:
    """Drop the padding rich adds at line ends."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _legend(plan: Plan) -> Text:
    used = {c.action for c in plan.changes}
    text = Text(" ")
    for action in _LEGEND_ORDER:
        if action in used:
            text.append(" ")
            text.append(action.symbol, style=_STYLES[action])
            text.append(f" {ACTION_WORDS[action]} ")
    return text


def _print_changes(console: Console, plan: Plan, *, detailed: bool) -> None:
    for change in plan.changes:
        if change.action is Action.NOOP and not detailed:
            continue
        _print_change(console, change, detailed=detailed)


def _print_change(console: Console, change: ResourceChange, *, detailed: bool) -> None:
    style = _STYLES[change.action]
    head = Text(f"{change.action.symbol:>3} ", style=style)
    head.append(change.address, style="bold")
    head.append(f"  {ACTION_WORDS[change.action]}", style=style)
    console.print(head)
    for reason in change.reasons:
        message = reason.message
        if reason.kind is ReasonKind.NEW:
            message = "new: " + message
        console.print(Padding(Text(message), (0, 0, 0, 6)))
        for field in reason.fields:
            sign, line = describe_field(field)
            text = Text(f"{sign} ", style=_FIELD_STYLES[sign])
            text.append(line)
            console.print(Padding(text, (0, 0, 0, 8)))
    steps = rollout_steps(change)
    if steps:
        console.print(Padding(Text(steps, style="cyan"), (0, 0, 0, 6)))
    if not change.provider_available and change.action is not Action.NOOP:
        console.print(Padding(Text(PROVIDER_NOTE, style="dim italic"), (0, 0, 0, 6)))
    if detailed:
        if change.depends_on:
            deps = "depends on: " + ", ".join(change.depends_on)
            console.print(Padding(Text(deps, style="dim"), (0, 0, 0, 6)))
        if change.fingerprints:
            prints = ", ".join(
                f"{name} {short_digest(value, length=12)}"
                for name, value in sorted(change.fingerprints.items())
            )
            console.print(Padding(Text(f"fingerprints: {prints}", style="dim"), (0, 0, 0, 6)))
        _print_infrastructure(console, change)
    console.print()


_INFRA_SIGNS = {
    "create": ("+", "green"),
    "update": ("~", "yellow"),
    "delete": ("-", "red"),
    "same": (" ", "dim"),
    "gone": ("!", "red"),
    "drifted": ("!", "yellow"),
}


def _print_infrastructure(console: Console, change: ResourceChange) -> None:
    """The object's own resources (processes, Kubernetes objects), one line each."""
    if not change.infrastructure:
        return
    console.print(Padding(Text("infrastructure:", style="dim"), (0, 0, 0, 6)))
    for item in change.infrastructure:
        sign, style = _INFRA_SIGNS.get(item.op, ("?", "dim"))
        line = Text(f"{sign} ", style=style)
        line.append(f"{item.type} {item.name}")
        if item.op in ("gone", "drifted"):
            line.append(f"  {item.op} (found by refresh)", style=style)
        if item.fields:
            line.append(f"  ({', '.join(item.fields)})", style="dim")
        console.print(Padding(line, (0, 0, 0, 8)))


def _print_policy(console: Console, plan: Plan) -> None:
    """Rule diagnostics, then a "Policy:" block: violations, then the exemptions in force."""
    from mlform.policy.render.plan_results import exemption_location, plan_policy

    for diagnostic in plan.diagnostics:
        console.print(Text(f"{diagnostic.get('severity', 'warning')}: {diagnostic.get('summary')}"))
    policy = plan_policy(plan.policy_results, plan.policy_exemptions)
    if not policy.notable:
        return
    console.print()
    console.print(Text(policy.summary_line(), style="bold"))
    for result in policy.violations:
        style = "bold red" if result.level == "mandatory" else "yellow"
        head = Text("  ")
        head.append(f"[{result.level}]", style=style)
        head.append(f" {result.rule}" + (f"  {result.address}" if result.address else ""))
        console.print(head)
        console.print(Padding(_with_location(result.message, result), (0, 0, 0, 6)))
    if policy.exemptions:
        console.print(Text("  Exemptions in force:"))
    for exemption in policy.exemptions:
        target = f"  {exemption.address}" if exemption.address else ""
        console.print(Text(f"    {exemption.rule}{target}"))
        reason = Text(f"{exemption.reason} (until {exemption.expires})")
        where = exemption_location(exemption)
        if where:
            reason.append(f" ({where})", style="dim")
        console.print(Padding(reason, (0, 0, 0, 6)))
        waived = "; ".join(exemption.waives) or "nothing in this plan"
        console.print(Padding(Text(f"waives: {waived}", style="dim"), (0, 0, 0, 6)))


def _with_location(message: str, result: PolicyResult) -> Text:
    from mlform.policy.render.plan_results import result_location

    text = Text(message)
    where = result_location(result)
    if where:
        text.append(f" ({where})", style="dim")
    return text
