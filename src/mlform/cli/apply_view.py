"""Views of the apply event stream: live human progress, or one JSON object per line."""

from __future__ import annotations

import json
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlform.events import (
    ApplyFinished,
    ApplyStarted,
    DiagnosticEvent,
    Event,
    StepFinished,
    StepProgress,
    StepStarted,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

_OUTCOME_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "yellow",
    "unsupported": "dim",
}


class JsonLinesView:
    """Streams each event as one JSON object per line on stdout (``--json``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        payload = event.to_dict()
        payload["timestamp"] = time.time()
        line = json.dumps(payload, sort_keys=True, default=str)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def __enter__(self) -> JsonLinesView:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


class HumanApplyView:
    """A live progress display: one bar for the whole apply, a line per finished step."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from mlform.cli.console import out

        self._console = out()
        self._progress: Progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=self._console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._running: dict[str, str] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> HumanApplyView:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        from rich.markup import escape

        if isinstance(event, ApplyStarted):
            self._task = self._progress.add_task("Applying", total=event.steps, status="")
        elif isinstance(event, StepStarted):
            self._running[event.address] = f"{event.action}…"
            self._refresh()
        elif isinstance(event, StepProgress):
            self._running[event.address] = event.message
            self._refresh()
        elif isinstance(event, StepFinished):
            self._running.pop(event.address, None)
            style = _OUTCOME_STYLE.get(event.outcome, "")
            text = event.message if event.outcome != "succeeded" else _summarise(event.outputs)
            detail = f" — {escape(text)}" if text else ""
            self._console.print(
                f"[{style}]{event.outcome:>11}[/] {event.address} "
                f"[dim]{event.action}, {event.duration_s:.2f}s[/]{detail}"
            )
            if self._task is not None:
                self._progress.advance(self._task)
            self._refresh()
        elif isinstance(event, DiagnosticEvent):
            style = "red" if event.severity == "error" else "yellow"
            self._console.print(f"[{style}]{event.severity}:[/] {escape(event.summary)}")
        elif isinstance(event, ApplyFinished):
            self._console.print(
                f"\n[bold]Apply finished[/] in {event.duration_s:.1f}s: "
                f"{event.succeeded} succeeded, {event.failed} failed, {event.skipped} skipped, "
                f"{event.unsupported} without a provider yet. State serial {event.serial}."
            )

    def _refresh(self) -> None:
        if self._task is None:
            return
        status = "; ".join(f"{a}: {m}" for a, m in sorted(self._running.items())[:3])
        self._progress.update(self._task, status=status)


def _summarise(outputs: dict[str, Any]) -> str:
    """A few words about a step's outputs: row counts where the provider reports them."""
    rows = outputs.get("rows")
    if isinstance(rows, int):
        return f"{rows} rows"
    if isinstance(rows, dict):
        return ", ".join(f"{part} {count}" for part, count in rows.items())
    return ""


def make_view(json_lines: bool) -> Any:
    return JsonLinesView() if json_lines else HumanApplyView()
