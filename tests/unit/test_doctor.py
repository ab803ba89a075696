"""``mlform.doctor``: each check against a fake PATH and a set-up cache in a tmp directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlform import doctor
from mlform.doctor import Check, Report, Status
from mlform.pulumi_engine import toolchain

VERSION = toolchain.PULUMI_VERSION
K8S_VERSION = toolchain.KUBERNETES_PROVIDER_VERSION


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty directory as the whole PATH, and an empty set-up cache."""
    bindir = tmp_path / "path-bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("MLFORM_TOOLCHAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFORM_PULUMI_ROOT", raising=False)
    toolchain._version_of.cache_clear()
    yield bindir
    toolchain._version_of.cache_clear()


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# -- Pulumi CLI ------------------------------------------------------------------------------


def test_missing_cli_names_the_build_script(fake_path: Path) -> None:
    check, pulumi = doctor.check_pulumi_cli()
    assert pulumi is None
    assert check.status is Status.MISSING
    assert not check.passed
    assert check.fix is not None
    assert check.fix.startswith("bash ")
    assert check.fix.endswith("scripts/build-pulumi.sh")
    assert VERSION in check.found


def test_cli_of_the_wrong_version(fake_path: Path) -> None:
    _script(fake_path / "pulumi", "echo v3.100.0")
    check, pulumi = doctor.check_pulumi_cli()
    assert pulumi is None
    assert check.status is Status.WRONG_VERSION
    assert "3.100.0" in check.found
    assert check.fix is not None and check.fix.endswith("scripts/build-pulumi.sh")


def test_cli_of_the_right_version_on_path(fake_path: Path) -> None:
    fake = _script(fake_path / "pulumi", f"echo v{VERSION}")
    check, pulumi = doctor.check_pulumi_cli()
    assert check.status is Status.OK
    assert pulumi == fake
    assert "(PATH)" in check.found
    assert check.fix is None


def test_cli_in_the_setup_cache(fake_path: Path, tmp_path: Path) -> None:
    bindir = _cache(tmp_path) / "pulumi" / f"v{VERSION}" / "bin"
    _script(bindir / "pulumi", f"echo v{VERSION}")
    check, pulumi = doctor.check_pulumi_cli()
    assert check.status is Status.OK
    assert pulumi == bindir / "pulumi"
    assert "set-up cache" in check.found


def test_launcher_next_to_the_cli_or_missing(fake_path: Path) -> None:
    fake = _script(fake_path / "pulumi", f"echo v{VERSION}")
    missing = doctor.check_python_launcher(fake)
    assert missing.status is Status.MISSING
    assert missing.fix is not None and missing.fix.endswith("scripts/build-pulumi.sh")
    _script(fake_path / toolchain.PYTHON_LAUNCHER, "exit 0")
    assert doctor.check_python_launcher(fake).status is Status.OK
    assert doctor.check_python_launcher(None).status is Status.MISSING


# -- kubernetes provider plugin ---------------------------------------------------------------


def test_kubernetes_plugin_missing_is_a_warning_unless_required(fake_path: Path) -> None:
    optional = doctor.check_kubernetes_plugin(None, required=False)
    assert optional.status is Status.WARNING
    assert optional.passed
    assert optional.fix is not None
    assert optional.fix.endswith("scripts/build-pulumi-kubernetes.sh")
    required = doctor.check_kubernetes_plugin(None, required=True)
    assert required.status is Status.MISSING
    assert not required.passed


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (f"{K8S_VERSION} v4.0.0-20260115033456-f47bc2d6f199", Status.OK),
        ("4.20.0 v4.20.0", Status.WRONG_VERSION),
        (None, Status.WRONG_VERSION),
    ],
)
def test_kubernetes_plugin_in_the_cache_is_judged_by_its_stamp(
    fake_path: Path, tmp_path: Path, stamp: str | None, expected: Status
) -> None:
    cache = _cache(tmp_path) / "pulumi-kubernetes" / f"v{K8S_VERSION}"
    _script(cache / "bin" / toolchain.KUBERNETES_PLUGIN, "exit 0")
    if stamp is not None:
        (cache / toolchain.KUBERNETES_STAMP).write_text(stamp + "\n")
    assert doctor.check_kubernetes_plugin(None, required=True).status is expected


def test_kubernetes_plugin_on_path_is_trusted(fake_path: Path) -> None:
    _script(fake_path / toolchain.KUBERNETES_PLUGIN, "exit 0")
    check = doctor.check_kubernetes_plugin(None, required=True)
    assert check.status is Status.OK
    assert "version not recorded" in check.found


# -- Go -----------------------------------------------------------------------------------


def test_go_missing_matters_only_when_something_must_be_built(fake_path: Path) -> None:
    assert doctor.check_go(needed=False).status is Status.OK
    assert doctor.check_go(needed=False, wanted=True).status is Status.WARNING
    needed = doctor.check_go(needed=True)
    assert needed.status is Status.MISSING
    assert needed.fix is not None and toolchain.GO_MIN_VERSION in needed.fix


def test_go_too_old_and_new_enough(fake_path: Path) -> None:
    go = _script(fake_path / "go", 'echo "go1.20.3"')
    old = doctor.check_go(needed=True)
    assert old.status is Status.WRONG_VERSION
    assert "1.20.3" in old.found
    _script(go, 'echo "go1.99.0"')
    assert doctor.check_go(needed=True).status is Status.OK


# -- Python -------------------------------------------------------------------------------


def test_python_and_dependencies_of_this_environment() -> None:
    assert doctor.check_python().status is Status.OK
    assert doctor.check_python_dependencies().status is Status.OK


def test_pinned_sdk_versions() -> None:
    assert doctor.check_pinned_sdk("pulumi", "pulumi", VERSION).status is Status.OK
    wrong = doctor.check_pinned_sdk("pulumi", "pulumi", "0.0.1")
    assert wrong.status is Status.WRONG_VERSION
    assert wrong.fix is not None and wrong.fix.endswith("-m pip install pulumi==0.0.1")
    absent = doctor.check_pinned_sdk("mlform-no-such-dist", "mlform_no_such", "1.0")
    assert absent.status is Status.MISSING


def test_requirement_names() -> None:
    assert doctor._requirement_name("hydra-core<1.4,>=1.3.2") == "hydra-core"
    assert doctor._requirement_name('pytest>=8.2; extra == "dev"') is None


# -- state directory and the whole report -----------------------------------------------------


def test_state_dir_existing_and_not_yet_created(tmp_path: Path) -> None:
    existing = tmp_path / "state"
    existing.mkdir()
    assert doctor.check_state_dir(existing).status is Status.OK
    assert list(existing.iterdir()) == []
    later = doctor.check_state_dir(tmp_path / "a" / "b" / "stacks" / "dev")
    assert later.status is Status.OK
    assert not (tmp_path / "a").exists()


def test_state_dir_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    # Permission bits do not stop root (CI runs as root), so the access check says no.
    real_access = doctor.os.access
    monkeypatch.setattr(
        doctor.os, "access", lambda path, mode: path != locked and real_access(path, mode)
    )
    check = doctor.check_state_dir(locked / "stacks" / "dev")
    assert check.status is Status.MISSING
    assert check.fix is not None and check.fix.startswith("chmod u+w")


def test_report_outside_a_project_with_nothing_built(fake_path: Path, tmp_path: Path) -> None:
    report = doctor.run_checks(tmp_path, None)
    names = [c.name for c in report.checks]
    assert "project" not in names and "state directory" not in names
    assert not report.ok
    by_name = {c.name: c for c in report.checks}
    assert by_name["Pulumi CLI"].status is Status.MISSING
    assert by_name["Go (builds the toolchain)"].status is Status.MISSING
    data = report.to_dict()
    assert data["ok"] is False
    assert {c["status"] for c in data["checks"]} >= {"ok", "missing", "warning"}


def test_report_with_a_fake_toolchain_is_ok(fake_path: Path, tmp_path: Path) -> None:
    _script(fake_path / "pulumi", f"echo v{VERSION}")
    _script(fake_path / toolchain.PYTHON_LAUNCHER, "exit 0")
    report = doctor.run_checks(tmp_path, None)
    assert report.ok, report.problems
    by_name = {c.name: c for c in report.checks}
    assert by_name["kubernetes provider plugin"].status is Status.WARNING
    # Go is missing, but only the optional plugin would need it.
    assert by_name["Go (builds the toolchain)"].status is Status.WARNING


def test_a_check_that_raises_becomes_a_warning() -> None:
    def broken() -> Check:
        raise RuntimeError("boom")

    check = doctor._guarded("broken", broken)
    assert check.status is Status.WARNING
    assert "boom" in check.found
    assert Report((check,)).ok


def test_a_render_target_needs_the_kubernetes_plugin(
    fake_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(fake_path / "pulumi", f"echo v{VERSION}")
    _script(fake_path / toolchain.PYTHON_LAUNCHER, "exit 0")
    info = doctor.ProjectInfo(tmp_path, "dev", "render", tmp_path / ".mlform" / "stacks" / "dev")
    monkeypatch.setattr(doctor, "load_project", lambda project, stack: info)
    report = doctor.run_checks(tmp_path, "dev")
    by_name = {c.name: c for c in report.checks}
    assert by_name["kubernetes provider plugin"].status is Status.MISSING
    assert by_name["Go (builds the toolchain)"].status is Status.MISSING
    assert by_name["project"].found.endswith("(stack dev, target render)")
    assert by_name["state directory"].status is Status.OK
    assert not report.ok
