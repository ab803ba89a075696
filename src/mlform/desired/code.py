"""Code and toolchain fingerprints of ``_target_`` paths, found without importing them.

A target whose longest module prefix exists as a file under the project directory
(``ml/pipelines.py`` or ``ml/pipelines/__init__.py``) is *user code*: it gets a
``code:<module>`` fingerprint, the digest of that source file. Any other target is
library code: the name and version of the distribution that provides its top-level
package go into the ``toolchain`` fingerprint. Models always add the framework
version (scikit-learn or torch; ``not-installed`` otherwise), numpy and Python
``major.minor``.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from mlform.desired.fingerprint import FingerprintCache, digest, file_digest

__all__ = [
    "CodeFingerprints",
    "code_fingerprints",
    "distribution_version",
    "find_project_module",
]

NOT_INSTALLED = "not-installed"
_FRAMEWORK_DISTRIBUTIONS = {"sklearn": "scikit-learn", "torch": "torch"}

CodeFingerprints = dict[str, str]


def find_project_module(target: str, project_dir: Path) -> tuple[str, Path] | None:
    """The longest module prefix of ``target`` that is a file under ``project_dir``."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        base = project_dir.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return ".".join(parts[:end]), candidate
    return None


@cache
def _packages() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution`` (read once per process), or not-installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _library_versions(top_level: str) -> dict[str, str]:
    if top_level in sys.stdlib_module_names or top_level == "builtins":
        return {"python": _python_version()}
    distributions = sorted(_packages().get(top_level, []))
    if not distributions:
        return {top_level: NOT_INSTALLED}
    return {name: distribution_version(name) for name in distributions}


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def code_fingerprints(
    targets: Iterable[str],
    *,
    project_dir: Path,
    framework: str | None = None,
    cache: FingerprintCache | None = None,
) -> CodeFingerprints:
    """``code:<module>`` fingerprints for user code, plus ``toolchain`` when relevant.

    ``framework`` is the model's framework (``sklearn``/``torch``) or None for other kinds;
    a model always gets a ``toolchain`` fingerprint, other objects only when a target
    is library code.
    """
    out: CodeFingerprints = {}
    toolchain: dict[str, str] = {}
    for target in sorted(set(targets)):
        found = find_project_module(target, project_dir)
        if found is not None:
            module, path = found
            value = cache.file_digest(path) if cache is not None else file_digest(path)
            out[f"code:{module}"] = value
        elif target:
            toolchain.update(_library_versions(target.split(".")[0]))
    if framework is not None:
        distribution = _FRAMEWORK_DISTRIBUTIONS.get(framework, framework)
        toolchain[distribution] = distribution_version(distribution)
        toolchain["numpy"] = distribution_version("numpy")
        toolchain["python"] = _python_version()
    if toolchain:
        out["toolchain"] = digest(toolchain)
    return out
