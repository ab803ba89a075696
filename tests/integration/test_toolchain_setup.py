"""Set-up on a machine without the cache builds or finds the toolchain.

``scripts/build-pulumi.sh`` finds a matching ``pulumi`` on PATH or in the cache without
building; the build itself is exercised with a fake ``go`` (a real cold build takes many
minutes and is proven by CI on a fresh machine): it lands in the cache only when complete,
an interrupted build leaves nothing that looks valid, and a second set-up waits on the lock.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlform.pulumi_engine import toolchain

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VERSION = toolchain.PULUMI_VERSION

# A stand-in for `go`: `env GOVERSION|GOCACHE`, `mod tidy`, `list -m` (the sdk module directory) and
# `build -o OUT` (writes a fake pulumi, or a half binary and fails when FAKE_GO_FAIL is set).
FAKE_GO = """#!/bin/sh
case "$1" in
  env)
    if [ "$2" = GOCACHE ]; then echo "$FAKE_SDK_DIR/go-build"
    else echo "${FAKE_GO_VERSION:-go1.26.0}"; fi ;;
  mod) exit 0 ;;
  list) echo "$FAKE_SDK_DIR" ;;
  build)
    while [ $# -gt 0 ]; do
      if [ "$1" = "-o" ]; then out="$2"; fi
      shift
    done
    if [ -n "${FAKE_GO_FAIL:-}" ]; then printf 'half' > "$out"; chmod +x "$out"; exit 1; fi
    printf '#!/bin/sh\\necho v%s\\n' "$FAKE_PULUMI_VERSION" > "$out"
    chmod +x "$out" ;;
  *) exit 2 ;;
esac
"""


def _path_without(*tools: str) -> str:
    keep = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not any(os.access(Path(entry) / tool, os.X_OK) for tool in tools)
    ]
    return os.pathsep.join(keep)


def _run(script: str, cache: Path, path: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFORM_PULUMI_KUBERNETES_BIN"}
    env.update({"MLFORM_TOOLCHAIN_CACHE": str(cache), "PATH": path, **extra})
    return subprocess.run(
        ["bash", str(REPO / "scripts" / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def fake_go(tmp_path: Path) -> dict[str, str]:
    """A PATH whose only `go` is the fake one, and the environment it reads."""
    bindir = tmp_path / "fake-bin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    sdk = tmp_path / "sdk"
    launcher = sdk / "python" / "dist" / toolchain.PYTHON_LAUNCHER
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\nexit 0\n")
    return {
        "path": os.pathsep.join([str(bindir), _path_without("go", "pulumi")]),
        "FAKE_SDK_DIR": str(sdk),
        "FAKE_PULUMI_VERSION": VERSION,
    }


def _cache_bin(cache: Path) -> Path:
    return cache / "pulumi" / f"v{VERSION}" / "bin"


def test_finds_a_matching_pulumi_on_path_without_building(
    pulumi_toolchain: Any, tmp_path: Path
) -> None:
    real_bin = pulumi_toolchain.pulumi.parent
    cache = tmp_path / "empty-cache"
    path = os.pathsep.join([str(real_bin), _path_without("pulumi", "go")])
    result = _run("build-pulumi.sh", cache, path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(real_bin)
    assert "building" not in result.stderr
    assert not (cache / "pulumi").exists()


def test_a_cache_holding_the_binary_is_used_as_is(pulumi_toolchain: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bindir = _cache_bin(cache)
    bindir.mkdir(parents=True)
    for name in ("pulumi", toolchain.PYTHON_LAUNCHER):
        (bindir / name).symlink_to(pulumi_toolchain.pulumi.parent / name)
    result = _run("build-pulumi.sh", cache, _path_without("pulumi", "go"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(bindir)
    assert result.stderr == ""


def test_without_go_says_what_to_install(tmp_path: Path) -> None:
    result = _run("build-pulumi.sh", tmp_path / "cache", _path_without("pulumi", "go"))
    assert result.returncode == 1
    assert f"Go >= {toolchain.GO_MIN_VERSION}" in result.stderr
    assert f"pulumi v{VERSION}" in result.stderr and "PATH" in result.stderr
    assert not (tmp_path / "cache" / "pulumi" / f"v{VERSION}").exists()

    k8s = _run("build-pulumi-kubernetes.sh", tmp_path / "cache", _path_without("go"))
    assert k8s.returncode == 1
    assert "Go >= " in k8s.stderr and "MLFORM_PULUMI_KUBERNETES_BIN" in k8s.stderr


def test_too_old_a_go_is_refused(tmp_path: Path, fake_go: dict[str, str]) -> None:
    result = _run("build-pulumi.sh", tmp_path / "cache", **fake_go, FAKE_GO_VERSION="go1.20.1")
    assert result.returncode == 1
    assert "found go 1.20.1" in result.stderr


def test_a_cold_build_lands_in_the_cache_complete(tmp_path: Path, fake_go: dict[str, str]) -> None:
    cache = tmp_path / "cache"
    stale = _cache_bin(cache)
    stale.mkdir(parents=True)
    (stale / "pulumi").write_text("#!/bin/sh\necho v0.0.1\n")  # a leftover that must go
    (stale / "pulumi").chmod(0o755)
    result = _run("build-pulumi.sh", cache, **fake_go)
    assert result.returncode == 0, result.stderr
    assert "building the Pulumi CLI" in result.stderr
    bindir = _cache_bin(cache)
    assert result.stdout.strip() == str(bindir)
    assert sorted(p.name for p in bindir.iterdir()) == ["pulumi", toolchain.PYTHON_LAUNCHER]
    out = subprocess.run([bindir / "pulumi", "version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"v{VERSION}"
    assert [p.name for p in (cache / "pulumi").iterdir() if ".build." in p.name] == []


def test_a_disk_too_full_for_a_cold_build_is_refused_before_it_starts(
    tmp_path: Path, fake_go: dict[str, str]
) -> None:
    cache = tmp_path / "cache"
    result = _run("build-pulumi.sh", cache, **fake_go, MLFORM_BUILD_FREE_GIB="1000000")
    assert result.returncode == 1
    assert "building the Pulumi CLI" in result.stderr and "needs about 1000000 GiB" in result.stderr
    assert "MLFORM_SKIP_SPACE_CHECK=1" in result.stderr
    assert not (cache / "pulumi" / f"v{VERSION}").exists()
    assert [p.name for p in (cache / "pulumi").iterdir() if ".build." in p.name] == []
    skipped = _run(
        "build-pulumi.sh",
        cache,
        **fake_go,
        MLFORM_BUILD_FREE_GIB="1000000",
        MLFORM_SKIP_SPACE_CHECK="1",
    )
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.strip() == str(_cache_bin(cache))


def test_an_interrupted_build_leaves_nothing_that_looks_valid(
    tmp_path: Path, fake_go: dict[str, str]
) -> None:
    cache = tmp_path / "cache"
    result = _run("build-pulumi.sh", cache, **fake_go, FAKE_GO_FAIL="1")
    assert result.returncode != 0
    assert not (cache / "pulumi" / f"v{VERSION}").exists()
    assert [p.name for p in (cache / "pulumi").iterdir() if ".build." in p.name] == []


def test_a_second_setup_waits_for_the_first_instead_of_building(
    tmp_path: Path, fake_go: dict[str, str]
) -> None:
    cache = tmp_path / "cache"
    root = cache / "pulumi"
    root.mkdir(parents=True)
    env = {**os.environ, "MLFORM_TOOLCHAIN_CACHE": str(cache), "PATH": fake_go["path"]}
    env.update({k: v for k, v in fake_go.items() if k != "path"})
    with (root / f".v{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "build-pulumi.sh")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stderr is not None
            assert "waiting" in proc.stderr.readline()
            # "The first set-up" finishes: the cache appears, then the lock is released.
            bindir = _cache_bin(cache)
            bindir.mkdir(parents=True)
            for name, body in (("pulumi", f"echo v{VERSION}"), (toolchain.PYTHON_LAUNCHER, "")):
                (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
                (bindir / name).chmod(0o755)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == str(bindir)
    assert "building" not in stderr


def test_kubernetes_plugin_override_directory(tmp_path: Path) -> None:
    plugin = tmp_path / "k8s" / toolchain.KUBERNETES_PLUGIN
    plugin.parent.mkdir()
    plugin.write_text("#!/bin/sh\nexit 0\n")
    plugin.chmod(0o755)
    result = _run(
        "build-pulumi-kubernetes.sh",
        tmp_path / "cache",
        _path_without("go"),
        MLFORM_PULUMI_KUBERNETES_BIN=str(plugin.parent),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(plugin.parent)
