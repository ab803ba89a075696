"""The README's main job, end to end through the real CLI, on a copy of the example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "proj")


def _plan_json(project: Path, *extra: str) -> dict:
    result = run_cli(project, "plan", "-s", "dev", "--format", "json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _actions(plan: dict) -> dict[str, str]:
    return {c["address"]: c["action"] for c in plan["changes"]}


def test_validate_then_plan_lists_every_object(project: Path) -> None:
    result = run_cli(project, "validate", "-s", "dev")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    plan = _plan_json(project)
    assert plan["format_version"]
    assert _actions(plan) == {
        "data.tumors": "create",
        "data.patients": "create",
        "features.diagnosis": "create",
        "model.diagnosis": "create",
        "model.diagnosis_torch": "create",
        "deployment.diagnosis-api": "create",
        "monitor.diagnosis-drift": "create",
        "monitor.diagnosis-latency": "create",
    }


def test_apply_builds_data_features_and_models_then_plan_is_stable(project: Path) -> None:
    applied = run_cli(project, "apply", "-s", "dev", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "8 succeeded, 0 failed, 0 skipped, 0 without a provider yet" in applied.stdout

    listed = run_cli(project, "state", "list", "-s", "dev")
    assert listed.returncode == 0, listed.stderr
    assert "data.tumors" in listed.stdout and "features.diagnosis" in listed.stdout
    shown = json.loads(run_cli(project, "state", "show", "features.diagnosis", "-s", "dev").stdout)
    assert shown["status"] == "applied"
    assert Path(shown["outputs"]["table"]).is_file()

    actions = _actions(_plan_json(project))
    assert actions["data.tumors"] == "no-op"
    assert actions["data.patients"] == "no-op"
    assert actions["features.diagnosis"] == "no-op"
    assert actions["model.diagnosis"] == "no-op"
    assert actions["model.diagnosis_torch"] == "no-op"
    assert actions["deployment.diagnosis-api"] == "no-op"  # served: see test_rollouts.py
    assert actions["monitor.diagnosis-drift"] == "no-op"  # scheduled: see test_monitors.py
    assert actions["monitor.diagnosis-latency"] == "no-op"

    # Planning twice gives byte-identical JSON.
    first = run_cli(project, "plan", "-s", "dev", "--format", "json").stdout
    second = run_cli(project, "plan", "-s", "dev", "--format", "json").stdout
    assert first == second


def test_data_change_explains_the_cause_chain(project: Path) -> None:
    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    csv = project / "data" / "patients.csv"
    lines = csv.read_text().splitlines()
    lines[1] = (
        lines[1].replace(",F,", ",M,") if ",F," in lines[1] else lines[1].replace(",M,", ",F,")
    )
    csv.write_text("\n".join(lines) + "\n")

    result = run_cli(project, "plan", "-s", "dev")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "data.patients" in text and "content changed" in text
    assert "features.diagnosis" in text
    assert "⇒" in text
    plan = _plan_json(project)
    actions = _actions(plan)
    assert actions["data.patients"] == "update"
    assert actions["features.diagnosis"] == "update"
    assert actions["data.tumors"] == "no-op"


def test_override_changes_only_what_it_touches(project: Path) -> None:
    plan = _plan_json(project, "deployments.diagnosis-api.replicas=5")
    change = next(c for c in plan["changes"] if c["address"] == "deployment.diagnosis-api")
    assert change["after"]["replicas"] == 5


def test_detailed_exitcode(project: Path) -> None:
    assert run_cli(project, "plan", "-s", "dev", "--detailed-exitcode").returncode == 2
    broken = run_cli(project, "plan", "-s", "nope", "--detailed-exitcode")
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr


def test_saved_plan_applies_once_and_is_then_stale(project: Path) -> None:
    plan_file = project / "dev.mlplan"
    made = run_cli(project, "plan", "-s", "dev", "--out", str(plan_file))
    assert made.returncode == 0, made.stderr
    assert plan_file.is_file()
    first = run_cli(project, "apply", str(plan_file))
    assert first.returncode == 0, first.stdout + first.stderr
    again = run_cli(project, "apply", str(plan_file))
    assert again.returncode == 1
    assert "stale" in again.stderr.lower()
    assert "Traceback" not in again.stderr


def test_markdown_plan_is_a_pr_comment(project: Path) -> None:
    result = run_cli(project, "plan", "-s", "dev", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith(("#", "**", "Plan", "<!--"))
    assert "Plan:" in result.stdout
    assert len(result.stdout) < 65_536


def test_graph_formats(project: Path) -> None:
    mermaid = run_cli(project, "graph", "-s", "dev")
    assert mermaid.returncode == 0, mermaid.stderr
    assert "features.diagnosis" in mermaid.stdout and "-->" in mermaid.stdout
    dot = run_cli(project, "graph", "-s", "dev", "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.lstrip().startswith("digraph")


def test_destroy_removes_recorded_objects(project: Path) -> None:
    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    gone = run_cli(project, "destroy", "-s", "dev", "--auto-approve")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    listed = run_cli(project, "state", "list", "-s", "dev")
    assert "data.tumors" not in listed.stdout


def test_state_history_and_rollback(project: Path) -> None:
    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    history = run_cli(project, "state", "history", "-s", "dev")
    assert history.returncode == 0 and "apply" in history.stdout
    # Change a feature-set field, apply, then roll back to the first apply's final serial.
    state = json.loads(run_cli(project, "state", "export", "-s", "dev").stdout)
    serial = state["serial"]
    changed = run_cli(
        project, "apply", "-s", "dev", "--auto-approve", "features.diagnosis.split.seed=7"
    )
    assert changed.returncode == 0, changed.stderr
    rollback = run_cli(project, "rollback", "-s", "dev", "--to", str(serial))
    assert rollback.returncode == 0, rollback.stderr
    assert "features.diagnosis" in rollback.stdout
    applied = run_cli(project, "rollback", "-s", "dev", "--to", str(serial), "--apply", "-y")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    shown = json.loads(run_cli(project, "state", "show", "features.diagnosis", "-s", "dev").stdout)
    assert shown["config"]["split"]["seed"] == 42


def test_refresh_rehashes_what_size_and_mtime_hide(project: Path) -> None:
    import os

    csv = project / "data" / "patients.csv"
    old = csv.stat()
    os.utime(csv, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))  # settled, 10 s old
    settled = csv.stat()
    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    # Same size, same mtime, different content: only a full re-hash can notice.
    text = csv.read_bytes()
    swapped = text.replace(b",F,", b",X,").replace(b",M,", b",F,").replace(b",X,", b",M,")
    assert len(swapped) == len(text) and swapped != text
    csv.write_bytes(swapped)
    os.utime(csv, ns=(settled.st_atime_ns, settled.st_mtime_ns))

    assert _actions(_plan_json(project))["data.patients"] == "no-op"
    refreshed = _actions(_plan_json(project, "--refresh"))
    assert refreshed["data.patients"] == "update"
    assert refreshed["features.diagnosis"] == "update"


def test_refresh_reports_drift_of_data_and_derived_files(project: Path) -> None:
    import shutil

    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    clean = run_cli(project, "refresh", "-s", "dev", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No drift" in clean.stdout

    csv = project / "data" / "patients.csv"
    csv.write_bytes(csv.read_bytes().replace(b",west,", b",east,", 1))
    shown = json.loads(run_cli(project, "state", "show", "features.diagnosis", "-s", "dev").stdout)
    shutil.rmtree(Path(shown["outputs"]["table"]).parent)

    drift = run_cli(project, "refresh", "-s", "dev", "--detailed-exitcode")
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "data.patients: changed: content_sha256" in drift.stdout
    assert "features.diagnosis: no longer exists" in drift.stdout
    assert "data.tumors" not in drift.stdout


def test_rollback_to_a_serial_taken_mid_apply(project: Path) -> None:
    """Serial 3 was written while data.tumors was being created (pending, no config yet)."""
    assert (
        run_cli(project, "apply", "-s", "dev", "--auto-approve", "--parallelism", "1").returncode
        == 0
    )
    planned = run_cli(project, "rollback", "-s", "dev", "--to", "3")
    assert planned.returncode == 0, planned.stderr
    applied = run_cli(project, "rollback", "-s", "dev", "--to", "3", "--apply", "-y")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr
    # What did not exist yet at serial 3 is gone; what did is kept; the state still parses.
    snapshot = json.loads(
        (project / ".mlform" / "stacks" / "dev" / "history" / "00000003.json").read_text()
    )
    assert snapshot["objects"]["data.tumors"]["status"] == "pending"
    listed = run_cli(project, "state", "list", "-s", "dev")
    assert listed.returncode == 0
    assert "data.patients" in listed.stdout
    assert "data.tumors" not in listed.stdout
    assert "features.diagnosis" not in listed.stdout
    # And the next ordinary apply brings the configured system back.
    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    assert "features.diagnosis" in run_cli(project, "state", "list", "-s", "dev").stdout


def test_state_export_then_import_keeps_lineage_and_bumps_serial(project: Path) -> None:
    assert run_cli(project, "apply", "-s", "dev", "--auto-approve").returncode == 0
    exported = run_cli(project, "state", "export", "-s", "dev")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    backup = project / "backup.json"
    backup.write_text(exported.stdout)

    imported = run_cli(project, "state", "import", str(backup), "-s", "dev")
    assert imported.returncode == 0, imported.stderr
    after = json.loads(run_cli(project, "state", "export", "-s", "dev").stdout)
    assert after["lineage"] == document["lineage"]
    assert after["serial"] == document["serial"] + 1
    assert after["objects"] == document["objects"]

    foreign = dict(document, lineage="00000000-0000-4000-8000-000000000000")
    backup.write_text(json.dumps(foreign))
    refused = run_cli(project, "state", "import", str(backup), "-s", "dev")
    assert refused.returncode == 1 and "lineage" in refused.stderr
    assert "Traceback" not in refused.stderr
