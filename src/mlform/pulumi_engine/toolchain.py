"""Finding the Pulumi CLI and its plugins (no downloads, ever).

Search order for the CLI: ``$MLFORM_PULUMI_ROOT/bin``, a ``pulumi`` on ``PATH`` whose
version matches the pinned Python SDK, then the set-up cache
``~/.cache/mlform/pulumi/v<version>/bin`` (``$MLFORM_TOOLCHAIN_CACHE`` moves the cache).
The kubernetes provider plugin is looked up next to the CLI, on ``PATH``, then in
``~/.cache/mlform/pulumi-kubernetes/v<version>/bin``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mlform.errors import ToolchainError

PULUMI_VERSION = "3.259.0"
KUBERNETES_PROVIDER_VERSION = "4.25.0"
PYTHON_LAUNCHER = "pulumi-resource-pulumi-python"
KUBERNETES_PLUGIN = "pulumi-resource-kubernetes"
BUILD_PULUMI = "bash scripts/build-pulumi.sh"
BUILD_KUBERNETES = "bash scripts/build-pulumi-kubernetes.sh"
# The oldest Go that builds the CLI (the go directive of pulumi pkg/sdk v3.259.0); the
# kubernetes plugin needs 1.24.7. Only matters when set-up has something to build.
GO_MIN_VERSION = "1.25.11"
# Written by scripts/build-pulumi-kubernetes.sh next to bin/ after a build: the plugin cannot
# report its own version, so this stamp is the only record of what was built.
KUBERNETES_STAMP = "BUILT"


def cache_root() -> Path:
    configured = os.environ.get("MLFORM_TOOLCHAIN_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mlform"


@dataclass(frozen=True, slots=True)
class Toolchain:
    """Where the CLI and plugins are. ``root`` is the parent of the CLI's ``bin``."""

    pulumi: Path
    version: str
    python_launcher: Path | None
    kubernetes_plugin: Path | None

    @property
    def root(self) -> Path:
        return self.pulumi.parent.parent

    @property
    def path_entries(self) -> tuple[str, ...]:
        """Directories to put first on the CLI's PATH so it finds every plugin."""
        dirs = [self.pulumi.parent]
        for plugin in (self.python_launcher, self.kubernetes_plugin):
            if plugin is not None and plugin.parent not in dirs:
                dirs.append(plugin.parent)
        return tuple(str(d) for d in dirs)


@cache
def _version_of(pulumi: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(pulumi), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    text = out.stdout.strip()
    return text.removeprefix("v") if out.returncode == 0 and text else None


def pulumi_cache_bin() -> Path:
    """Where ``scripts/build-pulumi.sh`` puts the CLI and the Python launcher."""
    return cache_root() / "pulumi" / f"v{PULUMI_VERSION}" / "bin"


def kubernetes_cache_bin() -> Path:
    """Where ``scripts/build-pulumi-kubernetes.sh`` puts the kubernetes provider plugin."""
    return cache_root() / "pulumi-kubernetes" / f"v{KUBERNETES_PROVIDER_VERSION}" / "bin"


def _candidates() -> list[Path]:
    found: list[Path] = []
    root = os.environ.get("MLFORM_PULUMI_ROOT")
    if root:
        found.append(Path(root) / "bin" / "pulumi")
    on_path = shutil.which("pulumi")
    if on_path:
        found.append(Path(on_path))
    found.append(pulumi_cache_bin() / "pulumi")
    return found


def find_pulumi() -> tuple[Path | None, list[str]]:
    """The first matching CLI, and notes on every candidate that did not match."""
    notes: list[str] = []
    for candidate in _candidates():
        if not candidate.is_file():
            continue
        version = _version_of(candidate.resolve())
        if version == PULUMI_VERSION:
            return candidate, notes
        notes.append(f"{candidate} is version {version or 'unknown'}, need {PULUMI_VERSION}")
    return None, notes


def _find_plugin(name: str, near: Path, cache_dir: Path) -> Path | None:
    for candidate in (near / name, cache_dir / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which(name)
    return Path(on_path) if on_path else None


def find_python_launcher(pulumi: Path) -> Path | None:
    """The Python dynamic-provider launcher: next to the CLI, in the cache, or on PATH."""
    return _find_plugin(PYTHON_LAUNCHER, pulumi.parent, pulumi_cache_bin())


def find_kubernetes_plugin(pulumi: Path | None) -> Path | None:
    """The kubernetes provider plugin: next to the CLI, in the cache, or on PATH."""
    near = pulumi.parent if pulumi is not None else kubernetes_cache_bin()
    return _find_plugin(KUBERNETES_PLUGIN, near, kubernetes_cache_bin())


def find_toolchain(*, kubernetes: bool = False) -> Toolchain:
    """The toolchain, or :class:`ToolchainError` naming the command that installs it."""
    pulumi, notes = find_pulumi()
    if pulumi is None:
        why = "; ".join(notes) if notes else "not on PATH and not in the set-up cache"
        raise ToolchainError(
            f"the Pulumi CLI v{PULUMI_VERSION} was not found ({why})", BUILD_PULUMI
        )
    launcher = find_python_launcher(pulumi)
    k8s = find_kubernetes_plugin(pulumi)
    if launcher is None:
        raise ToolchainError(
            f"{PYTHON_LAUNCHER} (the Python dynamic-provider launcher) is not next to {pulumi}",
            BUILD_PULUMI,
        )
    if kubernetes and k8s is None:
        raise ToolchainError(
            f"the Pulumi kubernetes provider plugin v{KUBERNETES_PROVIDER_VERSION} "
            "was not found (needed by the kubernetes and render targets)",
            BUILD_KUBERNETES,
        )
    return Toolchain(
        pulumi=pulumi, version=PULUMI_VERSION, python_launcher=launcher, kubernetes_plugin=k8s
    )
