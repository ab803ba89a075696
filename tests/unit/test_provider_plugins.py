"""Providers from installed packages (the ``mlform.providers`` entry-point group)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from mlform.addresses import Kind
from mlform.errors import ConfigError
from mlform.providers.infrastructure import InfrastructureProvider
from mlform.providers.registry import default_registry

MODULE = """
from mlform.addresses import Kind
from mlform.providers.infrastructure import InfrastructureProvider


class Served(InfrastructureProvider):
    kind = Kind.DATA

    def resources(self, address, config, context):
        return ()
"""


def _install(site: Path, name: str, entry_points: str) -> None:
    (site / f"{name}.py").write_text(MODULE)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[mlform.providers]\n{entry_points}\n")
    importlib.invalidate_caches()


def test_a_plugin_provider_takes_precedence_over_the_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path, "served_plugin", "data = served_plugin:Served")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = default_registry()
    provider = registry.get(Kind.DATA)
    assert isinstance(provider, InfrastructureProvider)
    assert type(provider).__module__ == "served_plugin"
    assert Kind.FEATURES in registry  # the built-ins are still there


def test_a_plugin_for_an_unknown_kind_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path, "odd_plugin", "widget = odd_plugin:Served")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        default_registry()
    message = caught.value.diagnostics[0].summary
    assert "unknown kind 'widget'" in message and "odd_plugin:Served" in message
