"""A conformance test suite that every provider's tests reuse (like Hydra's LauncherTestSuite).

Subclass :class:`ProviderConformance` in a test module (name the subclass ``Test...``) and
supply these pytest fixtures, as methods of the subclass or in a conftest:

``provider``          the provider under test
``context``           a :class:`ProviderContext` over a temporary project and state directory
``address``           the address of the object to apply
``valid_config``      a config that validates and applies
``invalid_config``    a config that ``validate`` must flag with an error diagnostic
``upstream_outputs``  outputs of the upstream objects, by address string

The base class's name does not start with ``Test``, so pytest never collects it alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlform.addresses import Address
from mlform.diagnostics import Severity
from mlform.providers.base import (
    ApplyRequest,
    ApplyResult,
    DeleteRequest,
    DiffRequest,
    Provider,
    ProviderContext,
    ReadRequest,
    ValidateRequest,
)

__all__ = ["ProviderConformance"]

Config = Mapping[str, Any]
Upstream = Mapping[str, Mapping[str, Any]]


def _create(
    provider: Provider, address: Address, config: Config, upstream: Upstream, ctx: ProviderContext
) -> ApplyResult:
    request = ApplyRequest(address, "create", config, None, {}, upstream, ctx)
    return provider.create(request)


class ProviderConformance:
    """The behaviour every provider promises; subclasses supply the fixtures above."""

    def test_is_a_provider_of_the_address_kind(self, provider: Provider, address: Address) -> None:
        assert isinstance(provider, Provider)
        assert provider.kind == address.kind

    def test_validate_accepts_valid_config(
        self, provider: Provider, address: Address, valid_config: Config, context: ProviderContext
    ) -> None:
        diagnostics = provider.validate(ValidateRequest(address, valid_config, context))
        assert [d for d in diagnostics if d.severity is Severity.ERROR] == []

    def test_validate_flags_invalid_config_with_a_key(
        self,
        provider: Provider,
        address: Address,
        invalid_config: Config,
        context: ProviderContext,
    ) -> None:
        diagnostics = provider.validate(ValidateRequest(address, invalid_config, context))
        errors = [d for d in diagnostics if d.severity is Severity.ERROR]
        assert errors, "validate must flag the invalid config"
        for error in errors:
            assert error.key and error.key.startswith(address.config_key), error
            assert error.detail, "a diagnostic says what to do"

    def test_create_returns_json_serialisable_outputs(
        self,
        provider: Provider,
        address: Address,
        valid_config: Config,
        upstream_outputs: Upstream,
        context: ProviderContext,
    ) -> None:
        result = _create(provider, address, valid_config, upstream_outputs, context)
        assert result.status == "applied"
        assert result.outputs
        assert json.loads(json.dumps(result.outputs)) == result.outputs

    def test_read_after_create_finds_the_object(
        self,
        provider: Provider,
        address: Address,
        valid_config: Config,
        upstream_outputs: Upstream,
        context: ProviderContext,
    ) -> None:
        created = _create(provider, address, valid_config, upstream_outputs, context)
        read = provider.read(ReadRequest(address, valid_config, created.outputs, context))
        assert read.outputs is not None
        assert dict(read.outputs) == dict(created.outputs)

    def test_update_with_same_config_is_idempotent(
        self,
        provider: Provider,
        address: Address,
        valid_config: Config,
        upstream_outputs: Upstream,
        context: ProviderContext,
    ) -> None:
        created = _create(provider, address, valid_config, upstream_outputs, context)
        request = ApplyRequest(
            address,
            "update",
            valid_config,
            valid_config,
            created.outputs,
            upstream_outputs,
            context,
        )
        assert dict(provider.update(request).outputs) == dict(created.outputs)

    def test_diff_of_same_config_is_unchanged(
        self,
        provider: Provider,
        address: Address,
        valid_config: Config,
        context: ProviderContext,
    ) -> None:
        request = DiffRequest(address, valid_config, valid_config, {}, context)
        assert provider.diff(request).changed is False

    def test_delete_then_read_returns_none(
        self,
        provider: Provider,
        address: Address,
        valid_config: Config,
        upstream_outputs: Upstream,
        context: ProviderContext,
    ) -> None:
        created = _create(provider, address, valid_config, upstream_outputs, context)
        provider.delete(DeleteRequest(address, valid_config, created.outputs, context))
        read = provider.read(ReadRequest(address, valid_config, created.outputs, context))
        assert read.outputs is None
        # Deleting what is already gone is not an error.
        provider.delete(DeleteRequest(address, valid_config, created.outputs, context))
