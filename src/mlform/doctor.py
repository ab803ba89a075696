"""``mlform doctor``: what mlform needs, what is present, and the command that fixes the rest.

Every check returns a :class:`Check`; :func:`run_checks` gathers them into a :class:`Report`.
Nothing here prints: the CLI renders the report (a table, or JSON). The checks look at the
machine (``PATH``, the set-up cache, installed distributions) but change nothing, except
that the state directory check creates and deletes one temporary file when the directory
exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from importlib import metadata, util
from pathlib import Path
from typing import Any

from mlform.pulumi_engine import toolchain

MIN_PYTHON = (3, 11)
SETUP = "bash scripts/setup.sh"
# Targets whose infrastructure is provisioned through the kubernetes provider plugin.
KUBERNETES_TARGETS = frozenset({"kubernetes", "render"})


class Status(StrEnum):
    OK = "ok"
    MISSING = "missing"
    WRONG_VERSION = "wrong_version"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Check:
    """One thing mlform needs: what was found, and the exact command that fixes it."""

    name: str
    status: Status
    found: str
    fix: str | None = None

    @property
    def passed(self) -> bool:
        """Whether mlform can work as far as this check goes (a warning passes)."""
        return self.status in (Status.OK, Status.WARNING)


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [{**asdict(c), "status": c.status.value} for c in self.checks],
        }


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """What the project in the working directory asks for (``None`` fields: unknown)."""

    root: Path
    stack: str | None
    target: str | None
    state_dir: Path | None
    error: str | None = None


# -- helpers ------------------------------------------------------------------------------


def _script(command: str) -> str:
    """``bash scripts/x.sh`` as given when run from the repository root, else made absolute."""
    if Path("scripts").is_dir() or not command.startswith("bash scripts/"):
        return command
    repo_scripts = Path(__file__).resolve().parents[2] / "scripts"
    if repo_scripts.is_dir():
        return command.replace("scripts/", f"{shlex.quote(str(repo_scripts))}/", 1)
    return command


def _shown(path: Path | str) -> str:
    """A path as a user reads it: relative to the working directory when under it."""
    text = str(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:
        rel = ".."
    if not rel.startswith(".."):
        return rel
    home = str(Path.home())
    if text.startswith(home + os.sep):
        return "~" + text[len(home) :]
    return text


def _python_cmd() -> str:
    return shlex.quote(_shown(sys.executable))


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# -- the checks -------------------------------------------------------------------------------


def check_python() -> Check:
    version = ".".join(str(v) for v in sys.version_info[:3])
    found = f"{version} at {_shown(sys.executable)}"
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("Python", Status.OK, found)
    need = ".".join(str(v) for v in MIN_PYTHON)
    return Check(
        "Python",
        Status.WRONG_VERSION,
        f"{found}; need >= {need}",
        f"PYTHON=python{need} {_script(SETUP)}",
    )


def _requirement_name(requirement: str) -> str | None:
    """The distribution a ``Requires-Dist`` line names, or ``None`` for an extra's."""
    if "extra ==" in requirement.replace('"', "").replace("'", ""):
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return match.group(0) if match else None


def check_python_dependencies() -> Check:
    """Every runtime dependency of the installed ``mlform`` distribution is installed."""
    try:
        requires = metadata.requires("mlform") or []
    except metadata.PackageNotFoundError:
        return Check(
            "Python dependencies",
            Status.WARNING,
            "mlform is not installed as a distribution; dependencies not checked",
            f"{_python_cmd()} -m pip install -e '.[dev]'",
        )
    missing: list[str] = []
    for requirement in requires:
        name = _requirement_name(requirement)
        if name is None:
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.split(";")[0].strip())
    if not missing:
        return Check("Python dependencies", Status.OK, f"{len(requires)} requirements installed")
    quoted = " ".join(shlex.quote(r) for r in missing)
    return Check(
        "Python dependencies",
        Status.MISSING,
        "not installed: " + ", ".join(missing),
        f"{_python_cmd()} -m pip install {quoted}",
    )


def check_pinned_sdk(distribution: str, module: str, version: str) -> Check:
    """A Python SDK that must match the binary set-up builds, importable at that version."""
    name = f"Python {distribution}"
    fix = f"{_python_cmd()} -m pip install {distribution}=={version}"
    try:
        installed = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return Check(name, Status.MISSING, "not installed", fix)
    if util.find_spec(module) is None:
        return Check(
            name, Status.MISSING, f"{installed} installed but `{module}` not importable", fix
        )
    if installed != version:
        return Check(name, Status.WRONG_VERSION, f"{installed}; need {version}", fix)
    return Check(name, Status.OK, installed)


def _where(pulumi: Path) -> str:
    root = os.environ.get("MLFORM_PULUMI_ROOT")
    if root and pulumi == Path(root) / "bin" / "pulumi":
        return "MLFORM_PULUMI_ROOT"
    if pulumi == toolchain.pulumi_cache_bin() / "pulumi":
        return "set-up cache"
    return "PATH"


def check_pulumi_cli() -> tuple[Check, Path | None]:
    """The Pulumi CLI at the pinned version, and where it is (for the plugin checks)."""
    pulumi, notes = toolchain.find_pulumi()
    fix = _script(toolchain.BUILD_PULUMI)
    if pulumi is not None:
        found = f"v{toolchain.PULUMI_VERSION} at {_shown(pulumi)} ({_where(pulumi)})"
        return Check("Pulumi CLI", Status.OK, found), pulumi
    if notes:
        return Check("Pulumi CLI", Status.WRONG_VERSION, "; ".join(notes), fix), None
    found = (
        f"no pulumi v{toolchain.PULUMI_VERSION} on PATH or in "
        f"{_shown(toolchain.pulumi_cache_bin())}"
    )
    return Check("Pulumi CLI", Status.MISSING, found, fix), None


def check_python_launcher(pulumi: Path | None) -> Check:
    name = "Python provider launcher"
    fix = _script(toolchain.BUILD_PULUMI)
    if pulumi is None:
        return Check(name, Status.MISSING, "not looked for: no Pulumi CLI", fix)
    launcher = toolchain.find_python_launcher(pulumi)
    if launcher is None:
        found = f"no {toolchain.PYTHON_LAUNCHER} next to {_shown(pulumi)} or on PATH"
        return Check(name, Status.MISSING, found, fix)
    return Check(name, Status.OK, _shown(launcher))


def check_kubernetes_plugin(pulumi: Path | None, *, required: bool) -> Check:
    """The kubernetes provider plugin; only a warning when the target does not need it."""
    name = "kubernetes provider plugin"
    version = toolchain.KUBERNETES_PROVIDER_VERSION
    fix = _script(toolchain.BUILD_KUBERNETES)
    failing = Status.MISSING if required else Status.WARNING
    why = "" if required else " (only needed by the kubernetes and render targets)"
    plugin = toolchain.find_kubernetes_plugin(pulumi)
    if plugin is None:
        return Check(name, failing, f"not found{why}", fix)
    if plugin.parent == toolchain.kubernetes_cache_bin():
        stamp = plugin.parent.parent / toolchain.KUBERNETES_STAMP
        try:
            built = stamp.read_text().split()
        except OSError:
            built = []
        if not built or built[0] != version:
            seen = built[0] if built else "unknown (no build stamp)"
            status = Status.WRONG_VERSION if required else Status.WARNING
            return Check(
                name, status, f"{_shown(plugin)} is version {seen}, need {version}{why}", fix
            )
        return Check(name, Status.OK, f"v{version} at {_shown(plugin)} (set-up cache)")
    # Outside the cache the plugin cannot tell its version; trust whoever put it there.
    return Check(name, Status.OK, f"{_shown(plugin)} (version not recorded)")


def _go_version(go: str) -> str | None:
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip().removeprefix("go")
    return text if out.returncode == 0 and text else None


def check_go(*, needed: bool, wanted: bool = False) -> Check:
    """The Go toolchain; it matters only when set-up still has something to build.

    ``needed``: something mlform needs must be built; ``wanted``: only something optional
    (the kubernetes plugin for a local target) is missing, so a missing Go is a warning.
    """
    name = "Go (builds the toolchain)"
    need = toolchain.GO_MIN_VERSION
    fix = f"install Go >= {need} (or put pulumi v{toolchain.PULUMI_VERSION} on PATH)"
    go = shutil.which("go")
    version = _go_version(go) if go is not None else None
    if go is not None and version is not None and _version_tuple(version) >= _version_tuple(need):
        return Check(name, Status.OK, f"go{version} at {_shown(go)}")
    if go is None:
        found, status = "not on PATH", Status.MISSING
    else:
        found = f"go {version or 'of unknown version'} at {_shown(go)}; need >= {need}"
        status = Status.WRONG_VERSION
    if needed:
        return Check(name, status, f"{found}, and set-up has something to build", fix)
    if wanted:
        return Check(name, Status.WARNING, f"{found}; needed to build the optional plugin", fix)
    return Check(name, Status.OK, f"{found}; not needed, nothing to build")


def load_project(project_dir: Path, stack: str | None) -> ProjectInfo | None:
    """The project at ``project_dir`` (``None`` when there is none): target and state dir."""
    from mlform.errors import DiagnosticsError, MlformError
    from mlform.workspace import load_system, project_root, state_dir

    try:
        root = project_root(project_dir)
    except DiagnosticsError:
        return None
    try:
        loaded = load_system(root, stack)
    except MlformError as exc:
        return ProjectInfo(root, stack, None, None, error=str(exc))
    target = dict(loaded.settings.get("target") or {"type": "local"})
    return ProjectInfo(root, loaded.stack, str(target.get("type", "local")), state_dir(loaded))


def check_project(info: ProjectInfo) -> Check:
    where = _shown(info.root) or "."
    if info.error is not None:
        stack = f" -s {info.stack}" if info.stack else ""
        return Check(
            "project",
            Status.WARNING,
            f"{where}: the config does not load ({info.error})",
            f"mlform validate{stack}",
        )
    return Check("project", Status.OK, f"{where} (stack {info.stack}, target {info.target})")


def check_state_dir(state_dir: Path) -> Check:
    """The stack's state directory can be written (created, when it does not exist yet)."""
    name = "state directory"
    if state_dir.is_dir():
        try:
            with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".doctor-"):
                pass
        except OSError as exc:
            found = f"{_shown(state_dir)} is not writable ({exc.strerror or exc})"
            return Check(name, Status.MISSING, found, f"chmod u+w {shlex.quote(str(state_dir))}")
        return Check(name, Status.OK, f"{_shown(state_dir)} (writable)")
    parent = state_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check(name, Status.OK, f"{_shown(state_dir)} (not created yet; can be)")
    found = f"{_shown(state_dir)} cannot be created: {_shown(parent)} is not writable"
    return Check(name, Status.MISSING, found, f"chmod u+w {shlex.quote(str(parent))}")


_BUILT_BY_SETUP = ("Pulumi CLI", "Python provider launcher", "kubernetes provider plugin")


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    """A check that raised is reported as a warning, so doctor always finishes."""
    try:
        return fn()
    except Exception as exc:  # doctor reports; it never fails on its own bug
        return Check(name, Status.WARNING, f"could not check: {type(exc).__name__}: {exc}")


def run_checks(project_dir: Path | None = None, stack: str | None = None) -> Report:
    """Every check, in the order a user fixes them; ``project_dir`` adds the project's."""
    checks = [
        _guarded("Python", check_python),
        _guarded("Python dependencies", check_python_dependencies),
        _guarded(
            "Python pulumi",
            lambda: check_pinned_sdk("pulumi", "pulumi", toolchain.PULUMI_VERSION),
        ),
        _guarded(
            "Python pulumi-kubernetes",
            lambda: check_pinned_sdk(
                "pulumi-kubernetes", "pulumi_kubernetes", toolchain.KUBERNETES_PROVIDER_VERSION
            ),
        ),
    ]
    info: ProjectInfo | None = None
    if project_dir is not None:
        try:
            info = load_project(project_dir, stack)
        except Exception as exc:  # a broken project must not stop the toolchain checks
            checks.append(
                Check("project", Status.WARNING, f"could not load: {type(exc).__name__}: {exc}")
            )
    needs_kubernetes = info is not None and info.target in KUBERNETES_TARGETS

    pulumi: Path | None = None

    def cli() -> Check:
        nonlocal pulumi
        check, pulumi = check_pulumi_cli()
        return check

    checks.append(_guarded("Pulumi CLI", cli))
    checks.append(_guarded("Python provider launcher", lambda: check_python_launcher(pulumi)))
    checks.append(
        _guarded(
            "kubernetes provider plugin",
            lambda: check_kubernetes_plugin(pulumi, required=needs_kubernetes),
        )
    )
    built = [c for c in checks if c.name in _BUILT_BY_SETUP]
    needed = any(not c.passed for c in built)
    wanted = any(c.status is Status.WARNING for c in built)
    checks.append(
        _guarded("Go (builds the toolchain)", lambda: check_go(needed=needed, wanted=wanted))
    )
    if info is not None:
        project = info
        checks.append(_guarded("project", lambda: check_project(project)))
        if project.state_dir is not None:
            state = project.state_dir
            checks.append(_guarded("state directory", lambda: check_state_dir(state)))
    return Report(tuple(checks))
