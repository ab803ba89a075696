"""``mlform doctor`` through the real CLI: exit 0 with the toolchain, 1 naming the fix without."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _path_without(*tools: str) -> str:
    """The current PATH minus every directory that holds one of ``tools``."""
    keep = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not any(os.access(Path(entry) / tool, os.X_OK) for tool in tools)
    ]
    return os.pathsep.join(keep)


def _doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    full_env.pop("MLFORM_STACK", None)
    full_env.pop("MLFORM_PULUMI_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "mlform", "doctor", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def test_doctor_with_the_toolchain_present(pulumi_toolchain: Any) -> None:
    result = _doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Pulumi CLI" in result.stdout
    assert "Everything mlform needs is present." in result.stdout


def test_doctor_json_with_the_toolchain_present(pulumi_toolchain: Any) -> None:
    result = _doctor("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["Pulumi CLI"] == "ok"
    assert statuses["Python provider launcher"] == "ok"
    assert statuses["state directory"] == "ok"


def test_doctor_without_the_toolchain_names_the_build_script(tmp_path: Path) -> None:
    env = {"MLFORM_TOOLCHAIN_CACHE": str(tmp_path / "empty"), "PATH": _path_without("pulumi")}
    result = _doctor(env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "bash scripts/build-pulumi.sh" in result.stdout
    assert "missing" in result.stdout

    as_json = _doctor("--json", env=env)
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    cli = next(c for c in data["checks"] if c["name"] == "Pulumi CLI")
    assert cli["status"] == "missing"
    assert cli["fix"] == "bash scripts/build-pulumi.sh"
