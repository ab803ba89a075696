"""Shared pytest options and fixtures.

``--update-goldens`` rewrites the golden files in tests/golden/; ``pulumi_toolchain`` finds
the Pulumi CLI that set-up builds (scripts/build-pulumi.sh).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NoReturn

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden files under tests/golden/ from the current output",
    )


@pytest.fixture(scope="session")
def pulumi_toolchain() -> Any:
    """The Pulumi CLI and plugins set-up built; skips outside CI when missing, fails in CI."""
    return _toolchain(kubernetes=False)


@pytest.fixture(scope="session")
def pulumi_kubernetes_toolchain() -> Any:
    """Like ``pulumi_toolchain`` but also needs the kubernetes provider plugin."""
    return _toolchain(kubernetes=True)


def _toolchain(*, kubernetes: bool) -> Any:
    from mlform.errors import ToolchainError
    from mlform.pulumi_engine.toolchain import find_toolchain

    try:
        return find_toolchain(kubernetes=kubernetes)
    except ToolchainError as exc:
        tool_missing(f"the Pulumi toolchain is missing: {exc}")


def tool_missing(reason: str) -> NoReturn:
    """A tool set-up builds is absent: fail under CI (set-up must provide it), else skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must have it: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def missing_tool() -> Callable[[str], NoReturn]:
    """:func:`tool_missing`, for test modules (conftest is not importable from them)."""
    return tool_missing
