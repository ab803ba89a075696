"""The engine benchmarks' shared parts: the baseline's plain Automation API stack, and
timing a command as a fresh process.

What a Pulumi user would write to run an inline program on a local ``file://`` backend with
the same toolchain mlform uses; the bare scripts of benchmarks/infra_apply.py and
benchmarks/kubernetes_apply.py run their program through :func:`run`, in a fresh process.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pulumi import automation as auto

from mlform.pulumi_engine.environment import engine_environment
from mlform.pulumi_engine.toolchain import find_toolchain


def run(work: Path, program: Callable[[], None], *, destroy: bool = False) -> None:
    """``stack.up()`` (or ``destroy()``) of ``program`` in stack ``dev`` of project ``bare``."""
    toolchain = find_toolchain()
    work.mkdir(parents=True, exist_ok=True)
    (work / "backend").mkdir(exist_ok=True)
    stack = auto.create_or_select_stack(
        stack_name="dev",
        project_name="bare",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(work),
            pulumi_home=str(work / "home"),
            env_vars=engine_environment(work, toolchain),
            project_settings=auto.ProjectSettings(
                name="bare",
                runtime="python",
                backend=auto.ProjectBackend(f"file://{work / 'backend'}"),
            ),
            secrets_provider="passphrase",
            pulumi_command=auto.PulumiCommand(root=str(toolchain.root)),
        ),
    )
    if destroy:
        stack.destroy()
    else:
        stack.up()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds ``cmd`` took; exits with its output when it failed."""
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return elapsed
