"""What an apply did: per-step outcomes, diagnostics and the final state serial."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlform.diagnostics import Diagnostic


@dataclass(frozen=True, slots=True)
class StepReport:
    address: str
    action: str
    outcome: str  # succeeded | failed | skipped | unsupported
    message: str = ""
    duration_s: float = 0.0


@dataclass(slots=True)
class ApplyOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    serial: int = 0
    # True when should_stop() ended the apply before every step had run.
    interrupted: bool = False
    duration_s: float = 0.0
    steps: list[StepReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def add(self, report: StepReport) -> None:
        self.steps.append(report)
        getattr(self, report.outcome).append(report.address)

    def report_for(self, address: str) -> StepReport | None:
        for report in self.steps:
            if report.address == address:
                return report
        return None

    def summary(self) -> str:
        return (
            f"{len(self.succeeded)} succeeded, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped, {len(self.unsupported)} without a provider"
        )
