"""Typed events the core emits; views (rich, JSON lines) render them.

The core never prints. It calls an :data:`EventSink` with these values; the CLI
chooses a human view or a JSON-lines view over the same stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["event"] = type(self).__name__
        return data


@dataclass(frozen=True, slots=True)
class ApplyStarted(Event):
    steps: int
    parallelism: int
    serial: int


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    address: str
    action: str


@dataclass(frozen=True, slots=True)
class StepProgress(Event):
    address: str
    message: str
    fraction: float | None = None


@dataclass(frozen=True, slots=True)
class StepFinished(Event):
    address: str
    action: str
    outcome: str  # "succeeded" | "failed" | "skipped" | "unsupported"
    duration_s: float
    serial: int
    message: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApplyFinished(Event):
    succeeded: int
    failed: int
    skipped: int
    unsupported: int
    serial: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class DiagnosticEvent(Event):
    severity: str
    summary: str
    detail: str = ""
    address: str | None = None
    key: str | None = None


EventSink = Callable[[Event], None]


def discard(_event: Event) -> None:
    """An event sink that drops everything (library default)."""
