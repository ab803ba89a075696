"""``mlform policy check`` in-process, with api.policy_check replaced by a fixed report."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from test_policy_render import advisory_report, clean_report, full_report
from typer.testing import CliRunner

from mlform import api
from mlform.cli.app import app
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError
from mlform.policy.model import PolicyReport

Calls = list[dict[str, Any]]


def _install(monkeypatch: pytest.MonkeyPatch, report: PolicyReport | Exception) -> Calls:
    calls: Calls = []

    def fake(
        project_dir: Any,
        stack: str | None = None,
        overrides: Any = (),
        *,
        with_plan: bool = True,
        today: date | None = None,
    ) -> PolicyReport:
        calls.append(
            {
                "project": str(project_dir),
                "stack": stack,
                "overrides": list(overrides),
                "with_plan": with_plan,
                "today": today,
            }
        )
        if isinstance(report, Exception):
            raise report
        return report

    monkeypatch.setattr(api, "policy_check", fake)
    return calls


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["policy", "check", *args], env={"NO_COLOR": "1"})


def test_clean_exits_0_and_passes_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _install(monkeypatch, clean_report())
    result = _invoke("-s", "prod", "models.x.epochs=3", "--no-plan", "--today", "2031-01-02")
    assert result.exit_code == 0, result.output
    assert "Policy: 0 mandatory, 0 advisory violations, 0 exempted" in result.stdout
    assert calls == [
        {
            "project": ".",
            "stack": "prod",
            "overrides": ["models.x.epochs=3"],
            "with_plan": False,
            "today": date(2031, 1, 2),
        }
    ]


def test_mandatory_violation_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _install(monkeypatch, full_report())
    result = _invoke("--format", "github")
    assert result.exit_code == 1
    assert result.stdout.startswith("::")
    assert calls[0]["with_plan"] is True and calls[0]["today"] is None


def test_advisory_exits_0_unless_fail_on_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, advisory_report())
    assert _invoke().exit_code == 0
    failing = _invoke("--fail-on-warn", "-f", "junit")
    assert failing.exit_code == 1
    assert 'type="warning"' in failing.stdout


def test_output_file_gets_the_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _install(monkeypatch, full_report())
    target = tmp_path / "reports" / "policy.sarif"
    result = _invoke("--format", "sarif", "--output", str(target))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "sarif report written to" in result.stderr
    assert json.loads(target.read_text(encoding="utf-8"))["version"] == "2.1.0"


def test_config_error_goes_through_the_error_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    error = ConfigError([Diagnostic.error("unknown key", file="configs/system.yaml", line=3)])
    _install(monkeypatch, error)
    result = _invoke()
    assert result.exit_code == 1
    assert "unknown key" in result.stderr
    assert "configs/system.yaml:3" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [("--today", "tomorrow"), ("--format", "yaml")], ids=["bad-date", "bad-format"]
)
def test_usage_errors_exit_2(monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    calls = _install(monkeypatch, clean_report())
    assert _invoke(*args).exit_code == 2
    assert calls == []
