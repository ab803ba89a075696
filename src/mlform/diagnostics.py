"""Diagnostics: how mlform reports user mistakes.

A user mistake (a bad key, a missing reference, a stale plan) is never an
exception that escapes to the user. It is a :class:`Diagnostic` with a severity,
a short summary, a full-sentence detail that says what to do, and where it came
from: the config key path, the file (and line when known) and the object address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    summary: str
    detail: str = ""
    key: str | None = None
    file: str | None = None
    line: int | None = None
    address: str | None = None

    @classmethod
    def error(cls, summary: str, detail: str = "", **where: Any) -> Diagnostic:
        return cls(Severity.ERROR, summary, detail, **where)

    @classmethod
    def warning(cls, summary: str, detail: str = "", **where: Any) -> Diagnostic:
        return cls(Severity.WARNING, summary, detail, **where)

    @property
    def location(self) -> str:
        """``file:line`` (or just the file) where the problem was written, if known."""
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.value, "summary": self.summary}
        for name in ("detail", "key", "file", "line", "address"):
            value = getattr(self, name)
            if value not in (None, ""):
                out[name] = value
        return out

    def __str__(self) -> str:
        head = f"{self.severity.value}: {self.summary}"
        where = [w for w in (self.key and f"key {self.key}", self.location) if w]
        if where:
            head += f" ({', '.join(where)})"
        return f"{head}\n  {self.detail}" if self.detail else head


@dataclass(slots=True)
class Diagnostics:
    """An ordered, appendable collection of diagnostics."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diagnostic: Diagnostic) -> None:
        self.items.append(diagnostic)

    def error(self, summary: str, detail: str = "", **where: Any) -> None:
        self.items.append(Diagnostic.error(summary, detail, **where))

    def warning(self, summary: str, detail: str = "", **where: Any) -> None:
        self.items.append(Diagnostic.warning(summary, detail, **where))

    def extend(self, other: Iterable[Diagnostic]) -> None:
        self.items.extend(other)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)
