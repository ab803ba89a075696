"""The environment of the Pulumi CLI: passphrase, launcher python, PATH."""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from mlform.pulumi_engine.environment import (
    PASSPHRASE_FILE,
    engine_environment,
    passphrase,
    stored_passphrase,
)
from mlform.pulumi_engine.toolchain import Toolchain


@pytest.fixture(autouse=True)
def _no_configured_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFORM_PULUMI_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)


def _toolchain(tmp_path: Path) -> Toolchain:
    bin_dir = tmp_path / "pulumi" / "bin"
    return Toolchain(
        pulumi=bin_dir / "pulumi",
        version="3.259.0",
        python_launcher=bin_dir / "pulumi-resource-pulumi-python",
        kubernetes_plugin=tmp_path / "k8s" / "bin" / "pulumi-resource-kubernetes",
    )


def test_a_generated_passphrase_is_stored_once_with_mode_0600(tmp_path: Path) -> None:
    first = passphrase(tmp_path / "pulumi")
    path = tmp_path / "pulumi" / PASSPHRASE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert path.read_text() == first
    assert passphrase(tmp_path / "pulumi") == first  # read back, not generated again
    assert passphrase(tmp_path / "other") != first


def test_concurrent_first_use_agrees_on_one_passphrase(tmp_path: Path) -> None:
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(stored_passphrase(tmp_path / "p")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert (tmp_path / "p").read_text() == results[0]


def test_a_configured_passphrase_wins_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "from-pulumi")
    assert passphrase(tmp_path) == "from-pulumi"
    monkeypatch.setenv("MLFORM_PULUMI_PASSPHRASE", "from-mlform")
    assert passphrase(tmp_path) == "from-mlform"
    assert not (tmp_path / PASSPHRASE_FILE).exists()


def test_an_empty_configured_passphrase_is_used_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    assert passphrase(tmp_path) == ""


def test_the_environment_points_the_launcher_at_this_python_and_mlform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = engine_environment(tmp_path, _toolchain(tmp_path))
    assert env["PULUMI_PYTHON_CMD"] == sys.executable
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PULUMI_HOME"] == str(tmp_path / "home")
    assert env["PULUMI_CONFIG_PASSPHRASE"] == (tmp_path / PASSPHRASE_FILE).read_text()
    assert env["PATH"].split(os.pathsep) == [
        str(tmp_path / "pulumi" / "bin"),
        str(tmp_path / "k8s" / "bin"),
        "/usr/bin",
    ]
    assert env["PYTHONPATH"].split(os.pathsep)[-1] == "/elsewhere"
    # The launcher is a separate python: PYTHONPATH must lead it to this mlform.
    first = Path(env["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "mlform" / "pulumi_engine" / "local_process.py").is_file()
    import mlform

    assert first / "mlform" == Path(mlform.__file__).resolve().parent
