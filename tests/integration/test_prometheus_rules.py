"""The rendered Prometheus rules pass ``promtool check rules`` and, under ``promtool test
rules``, fire exactly when they should: the expressions are right, not only well formed.

promtool comes from Debian's ``prometheus`` package (/usr/bin/promtool). Without it these
tests skip, except under CI=true where they fail (set-up must provide it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from mlform.monitoring.prometheus_rules import monitor_rules, render_rules
from mlform.spec.monitors import MonitorSpec

pytestmark = pytest.mark.integration

PROJECT, STACK = "clinic", "prod"


@pytest.fixture(scope="module")
def promtool(missing_tool: Callable[[str], NoReturn]) -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if found is None:
        missing_tool("promtool is not installed (apt-get install prometheus)")
    return found


MONITORS: dict[str, dict[str, Any]] = {
    # Latency of two deployments with the same threshold: one slow, one fast.
    "slow-latency": {
        "deployment": "slow-api",
        "type": "latency",
        "threshold": "500ms",
        "quantile": 0.99,
        "window": {"duration": "5m"},
        "schedule": {"every": "5m"},
        "alerts": [{"sink": "prometheus", "severity": "critical"}],
    },
    "fast-latency": {
        "deployment": "fast-api",
        "type": "latency",
        "threshold": "500ms",
        "quantile": 0.99,
        "window": {"duration": "5m"},
        "alerts": [{"sink": "prometheus", "severity": "critical"}],
    },
    "slow-errors": {
        "deployment": "slow-api",
        "type": "error_rate",
        "threshold": 0.01,
        "schedule": {"every": "2m"},
        "alerts": [{"sink": "prometheus"}, {"sink": "log"}],
    },
    "fast-errors": {
        "deployment": "fast-api",
        "type": "error_rate",
        "threshold": 0.01,
        "schedule": {"every": "2m"},
        "alerts": [{"sink": "prometheus"}],
    },
    "diagnosis-drift": {
        "deployment": "diagnosis-api",
        "type": "data_drift",
        "method": "psi",
        "columns": ["mean_radius"],
        "alerts": [{"sink": "prometheus", "severity": "critical"}],
        "on_breach": "rollback",
    },
    "hung-drift": {
        "deployment": "diagnosis-api",
        "type": "prediction_drift",
        "alerts": [{"sink": "prometheus"}],
    },
    "dead-drift": {
        "deployment": "diagnosis-api",
        "type": "data_drift",
        "alerts": [{"sink": "prometheus"}],
    },
}

_BUCKETS = ("0.25", "0.5", "1", "+Inf")


def _histogram(model: str, per_minute: dict[str, int]) -> list[dict[str, str]]:
    """Bucket series growing by ``per_minute[le]`` each minute for 30 minutes."""
    return [
        {
            "series": f'http_request_duration_seconds_bucket{{model="{model}",version="2",'
            f'endpoint="infer",status="200",le="{le}"}}',
            "values": f"0+{per_minute[le]}x30",
        }
        for le in _BUCKETS
    ]


def _count(model: str, status: str, per_minute: int) -> dict[str, str]:
    return {
        "series": f'http_request_duration_seconds_count{{model="{model}",version="2",'
        f'endpoint="infer",status="{status}"}}',
        "values": f"0+{per_minute}x30",
    }


def _monitor_series(monitor: str, breached: str, last_run: str) -> list[dict[str, str]]:
    ids = f'{{monitor="{monitor}",deployment="diagnosis-api",project="{PROJECT}",stack="{STACK}"}}'
    return [
        {"series": f"mlform_monitor_breached{ids}", "values": breached},
        {"series": f"mlform_monitor_last_run_timestamp_seconds{ids}", "values": last_run},
    ]


INPUT_SERIES = [
    # slow-api: every request between 0.5 s and 1 s, so p99 = 0.995 s (> 500ms).
    *_histogram("slow-api", {"0.25": 0, "0.5": 0, "1": 60, "+Inf": 60}),
    # fast-api: every request under 250 ms, so p99 < 250 ms.
    *_histogram("fast-api", {"0.25": 60, "0.5": 60, "1": 60, "+Inf": 60}),
    # A model nobody monitors, slow: must not leak into the others' rules.
    *_histogram("other", {"0.25": 0, "0.5": 0, "1": 0, "+Inf": 60}),
    # slow-api: 10 % of infer requests fail with 500; fast-api: only 4xx (not errors).
    _count("slow-api", "200", 90),
    _count("slow-api", "500", 10),
    _count("fast-api", "200", 100),
    _count("fast-api", "404", 50),
    # The scheduler: diagnosis-drift breaches from minute 3 and runs every minute; hung-drift
    # stops at minute 2 but keeps exporting its old timestamp; dead-drift's scheduler is gone
    # after minute 5 (no samples at all).
    *_monitor_series("diagnosis-drift", "0 0 0 1x27", "0+60x30"),
    *_monitor_series("hung-drift", "0x30", "0 60 120x28"),
    *_monitor_series("dead-drift", "0x5", "0+60x5"),
]


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for name, values in MONITORS.items():
        config = MonitorSpec.model_validate(values).model_dump()
        model_name = str(values["deployment"])  # `mlform serve --name <deployment>`
        rules += monitor_rules(
            name, config, deployment_model_name=model_name, project=PROJECT, stack=STACK
        )
    return rules


def _rule(rules: list[dict[str, Any]], alert: str) -> dict[str, Any]:
    return next(r for r in rules if r["alert"] == alert)


def _expected(rule: dict[str, Any], value: str = "") -> dict[str, Any]:
    """The alert promtool should report: the rule's labels and annotations, templates
    expanded to ``value``."""
    annotations = {k: re.sub(r"\{\{.*?\}\}", value, v) for k, v in rule["annotations"].items()}
    return {"exp_labels": dict(rule["labels"]), "exp_annotations": annotations}


def _case(alert: str, minute: int, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": list(expected)}


def _write(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    rules = _rules()
    path = tmp_path / "mlform-rules.yml"
    path.write_text(render_rules({f"mlform-{PROJECT}-{STACK}": rules}), encoding="utf-8")
    return path, rules


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_rendered_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    path, rules = _write(tmp_path)
    assert len(rules) == 10  # 4 HTTP rules, 3 breach rules, 3 staleness rules
    result = _promtool(promtool, "check", "rules", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output and "10 rules found" in output


def test_rules_fire_exactly_when_they_should(promtool: str, tmp_path: Path) -> None:
    path, rules = _write(tmp_path)
    slow_latency = _rule(rules, "MlformSlowLatency")
    slow_errors = _rule(rules, "MlformSlowErrors")
    drift = _rule(rules, "MlformDiagnosisDrift")
    tests = {
        "rule_files": [path.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": INPUT_SERIES,
                "alert_rule_test": [
                    # p99 0.995 s > 500ms, held for the 5m `for`: fires at 10m, pending at 3m.
                    _case("MlformSlowLatency", 3),
                    _case("MlformSlowLatency", 10, _expected(slow_latency, "995ms")),
                    _case("MlformFastLatency", 10),
                    # 10 % 5xx > 1 %; 404s are not errors.
                    _case("MlformSlowErrors", 10, _expected(slow_errors, "10%")),
                    _case("MlformFastErrors", 10),
                    # The scheduler's breach gauge.
                    _case("MlformDiagnosisDrift", 2),
                    _case("MlformDiagnosisDrift", 4, _expected(drift)),
                    _case("MlformHungDrift", 10),
                    _case("MlformDeadDrift", 10),
                    # Staleness: 3 × every (5m) = 15m without a run.
                    _case("MlformMonitorStaleDiagnosisDrift", 25),
                    _case("MlformMonitorStaleHungDrift", 10),
                    _case(
                        "MlformMonitorStaleHungDrift",
                        20,
                        _expected(_rule(rules, "MlformMonitorStaleHungDrift")),
                    ),
                    _case("MlformMonitorStaleDeadDrift", 15),
                    _case(
                        "MlformMonitorStaleDeadDrift",
                        25,
                        _expected(_rule(rules, "MlformMonitorStaleDeadDrift")),
                    ),
                ],
            }
        ],
    }
    test_file = tmp_path / "mlform-rules.test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = _promtool(promtool, "test", "rules", str(test_file))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output
