"""Policies gate validate, plan and apply — and the plan reads state under the lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from example_project import copy_example, run_cli

from mlform.state.store import LocalStateStore

pytestmark = pytest.mark.integration

PII_FILE = "configs/data/patients.yaml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "proj")


def _drop_encryption(project: Path) -> None:
    path = project / PII_FILE
    text = path.read_text()
    start = text.index("encryption:")
    end = text.index("freshness:")
    path.write_text(text[:start] + text[end:])


def _state_file(project: Path) -> Path:
    return project / ".mlform" / "stacks" / "dev" / "state.json"


def test_mandatory_violation_blocks_validate_and_apply_but_not_plan(project: Path) -> None:
    _drop_encryption(project)
    validated = run_cli(project, "validate", "-s", "dev")
    assert validated.returncode == 1
    assert "pii.encryption" in validated.stderr and PII_FILE in validated.stderr

    plan = run_cli(project, "plan", "-s", "dev", "--format", "json")
    assert plan.returncode == 0, plan.stderr
    results = json.loads(plan.stdout)["policy_results"]
    assert {r["rule"] for r in results} >= {"pii.encryption"}
    encryption = next(r for r in results if r["rule"] == "pii.encryption")
    assert encryption["level"] == "mandatory" and encryption["file"] == PII_FILE

    applied = run_cli(project, "apply", "-s", "dev", "--auto-approve")
    assert applied.returncode == 1
    assert "pii.encryption" in applied.stderr
    assert "Traceback" not in applied.stderr
    assert not _state_file(project).exists()  # blocked before any step


def test_saved_plan_with_a_violation_is_refused_at_apply(project: Path) -> None:
    _drop_encryption(project)
    plan_file = project / "dev.mlplan"
    made = run_cli(project, "plan", "-s", "dev", "--out", str(plan_file))
    assert made.returncode == 0, made.stderr  # a plan may be saved and reviewed...
    assert "pii.encryption" in made.stdout
    applied = run_cli(project, "apply", str(plan_file))
    assert applied.returncode == 1  # ...but never applied while a mandatory rule fails
    assert "pii.encryption" in applied.stderr
    assert not _state_file(project).exists()


def test_expired_exemption_is_a_violation(project: Path) -> None:
    system = project / "configs" / "system.yaml"
    system.write_text(system.read_text().replace('expires: "2027-06-30"', 'expires: "2026-01-31"'))
    checked = run_cli(project, "policy", "check", "-s", "dev", "--today", "2026-11-23")
    assert checked.returncode == 1
    assert "policy.exemption-expired" in checked.stdout
    assert "configs/system.yaml" in checked.stdout


def test_plan_waits_for_the_state_lock_or_names_the_holder(project: Path) -> None:
    store = LocalStateStore(project / ".mlform" / "stacks" / "dev")
    with store.lock("apply"):
        busy = run_cli(project, "plan", "-s", "dev")
        assert busy.returncode == 1
        assert "apply" in busy.stderr and "state unlock" in busy.stderr
        unlocked = run_cli(project, "plan", "-s", "dev", "--no-lock")
        assert unlocked.returncode == 0, unlocked.stderr

    held = store.lock("apply")
    held.__enter__()
    started = time.monotonic()
    releaser = threading.Timer(1.5, lambda: held.__exit__(None, None, None))
    releaser.start()
    try:
        waited = run_cli(project, "plan", "-s", "dev", "--lock-timeout", "30")
    finally:
        releaser.join()
    assert waited.returncode == 0, waited.stderr
    assert time.monotonic() - started >= 1.5
    assert not (project / ".mlform" / "stacks" / "dev" / "state.lock").exists()
