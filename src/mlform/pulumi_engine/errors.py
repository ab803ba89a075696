"""Pulumi failures, translated into :class:`mlform.errors.InfraError` diagnostics.

Every reading of Pulumi's error text lives here. Per-resource error diagnostics (collected
from the engine events) become one diagnostic each, addressed to the owning mlform object;
a failure no resource explains (a locked stack, a broken program, a CLI problem) becomes one
diagnostic built from the CLI's own error lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pulumi.automation import CommandError, ConcurrentUpdateError, InlineSourceRuntimeError

from mlform.diagnostics import Diagnostic
from mlform.errors import InfraError
from mlform.infra.model import split_logical_name
from mlform.pulumi_engine.events import ResourceFailure, resource_type

_NOISE_PREFIXES = ("Exception calling application: ",)
_GENERIC_MESSAGES = frozenset(
    {"update failed", "preview failed", "refresh failed", "destroy failed"}
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m|<\{%[a-z]*%\}>")
_VERBS = {
    "create": "created",
    "create-replacement": "replaced",
    "replace": "replaced",
    "update": "updated",
    "delete": "deleted",
    "delete-replaced": "replaced",
    "refresh": "read",
    "read": "read",
}
_OPERATION_VERBS = {
    "preview": "planned",
    "up": "provisioned",
    "refresh": "read",
    "drift": "read",
    "destroy": "deleted",
}
MAX_DETAIL_LINES = 40


def clean_message(message: str) -> str:
    """Pulumi's message without colour codes, wrapper prefixes and trailing blank lines."""
    text = _ANSI.sub("", message).strip()
    for prefix in _NOISE_PREFIXES:
        text = text.removeprefix(prefix)
    lines = [line.rstrip() for line in text.splitlines()]
    if len(lines) > MAX_DETAIL_LINES:
        lines = [*lines[:5], "...", *lines[-(MAX_DETAIL_LINES - 6) :]]
    return "\n".join(lines).strip()


def command_output(exc: CommandError) -> tuple[str, str]:
    """(stdout, stderr) of the failed CLI run, from the exception's text."""
    text = str(exc)
    _, _, rest = text.partition(" stdout: ")
    stdout, _, stderr = rest.partition("\n stderr: ")
    return stdout, stderr


def _hint(operation: str, op: str | None, kind: str) -> str:
    if op in ("delete", "delete-replaced") or operation == "destroy":
        return (
            "It is still recorded as existing. Stop or remove it by hand if needed, run "
            "`mlform refresh` so the recorded state follows the live world, and try again."
        )
    if operation in ("refresh", "drift") or op in ("refresh", "read"):
        return "Its live state could not be read; fix the cause above and run `mlform refresh`."
    if kind == "process":
        return (
            "The process log named above has its full output. Fix the command or its "
            "environment and apply again; `mlform refresh` first if processes were stopped "
            "outside mlform."
        )
    return "Fix the cause above and apply again."


def _resource_diagnostic(failure: ResourceFailure, operation: str) -> Diagnostic | None:
    logical = failure.logical_name
    split = split_logical_name(logical) if logical else None
    if logical is None or split is None:
        return None
    owner, _ = split
    verb = _VERBS.get(failure.op or "", _OPERATION_VERBS.get(operation, "provisioned"))
    kind = resource_type(failure.type or "")
    detail = f"{clean_message(failure.message)}\n{_hint(operation, failure.op, kind)}"
    return Diagnostic.error(f"{logical}: could not be {verb}", detail, address=str(owner))


def _error_lines(text: str) -> list[str]:
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    return [line for line in lines if line.startswith("error:")]


def _general_diagnostic(
    exc: CommandError, operation: str, stack: str, general: Sequence[str]
) -> Diagnostic:
    stdout, stderr = command_output(exc)
    if isinstance(exc, ConcurrentUpdateError) or "currently locked by" in stderr:
        return Diagnostic.error(
            f"the Pulumi stack {stack!r} is locked",
            "Another Pulumi operation holds the stack, or an interrupted one left its lock "
            "behind. If no mlform command is running for this stack, run the operation "
            f"again (stale locks of dead processes are removed).\n{clean_message(stderr)}",
        )
    messages = [m for m in general if m not in _GENERIC_MESSAGES]
    messages += [line for line in _error_lines(stderr) if line not in messages]
    if not messages:
        messages = _error_lines(stdout) or [clean_message(stderr or stdout) or str(exc)]
    detail = clean_message("\n".join(dict.fromkeys(messages)))
    if isinstance(exc, InlineSourceRuntimeError):
        return Diagnostic.error(
            "the Pulumi program of the stack failed",
            f"{detail}\nThis is a bug in mlform's program for the target; please report it.",
        )
    return Diagnostic.error(f"the Pulumi {operation} of stack {stack!r} failed", detail)


def infra_error(
    exc: CommandError, operation: str, stack: str, failures: Sequence[ResourceFailure]
) -> InfraError:
    """The InfraError for a failed ``operation``: one diagnostic per failed resource."""
    diagnostics: list[Diagnostic] = []
    general: list[str] = []
    seen: set[tuple[str | None, str]] = set()
    for failure in failures:
        key = (failure.urn, failure.message)
        if key in seen:
            continue
        seen.add(key)
        diagnostic = _resource_diagnostic(failure, operation)
        if diagnostic is not None:
            diagnostics.append(diagnostic)
        else:
            general.append(clean_message(failure.message))
    if not diagnostics:
        diagnostics.append(_general_diagnostic(exc, operation, stack, general))
    return InfraError(diagnostics)
