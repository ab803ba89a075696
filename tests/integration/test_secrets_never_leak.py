"""A ${secret:} value never reaches state, plan files, rendered output or logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_project import copy_example, run_cli

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Value-7f3a9c"
OTHER = "another-Secret-41d2"


def _all_text_under(root: Path) -> str:
    chunks = []
    for path in root.rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(chunks)


def test_secret_value_appears_nowhere(tmp_path: Path) -> None:
    project = copy_example(tmp_path / "proj")
    env = {"MLFORM_SECRET_ALERT_TOKEN": SECRET, "ALERT_WEBHOOK_URL": "https://hooks.test/x"}
    # Also route the secret into an object that apply really records (a data source).
    override = "data.tumors.description=token ${secret:alert_token}"
    outputs: list[str] = []
    for args in (
        ("validate", "-s", "prod", override),
        ("plan", "-s", "prod", override),
        ("plan", "-s", "prod", "--detailed", override),
        ("plan", "-s", "prod", "--format", "json", override),
        ("plan", "-s", "prod", "--format", "markdown", override),
        ("plan", "-s", "prod", "--out", str(project / "prod.mlplan"), override),
        ("apply", "-s", "prod", "--auto-approve", override),
        ("apply", "-s", "prod", "--auto-approve", "--json", override),
        ("state", "show", "data.tumors", "-s", "prod"),
        ("state", "export", "-s", "prod"),
    ):
        result = run_cli(project, *args, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert (project / ".mlform").is_dir()
    assert (project / "prod.mlplan").is_file()

    everything = "\n".join(outputs) + _all_text_under(project / ".mlform")
    everything += (project / "prod.mlplan").read_text()
    assert SECRET not in everything
    assert "<secret:alert_token:" in everything  # the redaction token is what is kept

    # A changed secret is detected (keyed hash) but still never shown.
    env["MLFORM_SECRET_ALERT_TOKEN"] = OTHER
    changed = run_cli(project, "plan", "-s", "prod", "--detailed", override, env=env)
    assert changed.returncode == 0, changed.stderr
    assert "data.tumors" in changed.stdout
    assert "sensitive" in changed.stdout
    assert OTHER not in changed.stdout + changed.stderr
    assert SECRET not in changed.stdout + changed.stderr


def test_missing_secret_is_a_clear_error(tmp_path: Path) -> None:
    project = copy_example(tmp_path / "proj")
    result = run_cli(project, "plan", "-s", "prod")
    assert result.returncode == 1
    assert "alert_token" in result.stderr
    assert "MLFORM_SECRET_ALERT_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
