"""Helpers for tests that run the real CLI over a copy of the example project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PARTS = ("configs", "stacks", "ml", "data")


def copy_example(dest: Path) -> Path:
    """Copy the example system (configs/, stacks/, ml/, data/) into ``dest``.

    The copy's deployment listens on a free port (``port: 0``) instead of the example's
    8080, so tests running side by side do not compete for it; the processes an apply
    leaves running are stopped when the test session ends (tests/integration/conftest.py).
    """
    for part in EXAMPLE_PARTS:
        shutil.copytree(REPO / part, dest / part)
    deployment = dest / "configs" / "deployments" / "diagnosis_api.yaml"
    text = deployment.read_text()
    deployment.write_text(text + "port: 0  # a free port (tests run side by side)\n")
    return dest


def example_config(relative: str) -> dict[str, Any]:
    """One object's config exactly as the example declares it (``configs/<relative>``)."""
    loaded: dict[str, Any] = yaml.safe_load((REPO / "configs" / relative).read_text())
    return loaded


def run_cli(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mlform -C project ARGS`` and capture its output."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", **(env or {})}
    full_env.pop("MLFORM_STACK", None)
    return subprocess.run(
        [sys.executable, "-m", "mlform", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
