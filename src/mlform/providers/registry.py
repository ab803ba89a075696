"""Which provider applies each kind of object.

:func:`default_registry` holds the providers this release ships, then those installed
packages declare in the ``mlform.providers`` entry-point group (name = the kind,
value = ``module:Class``), which take precedence. A kind without a provider is planned
as usual but its steps are reported as unsupported by apply.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from mlform.addresses import Kind
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError
from mlform.providers.base import Provider

# (kind, "module:Class") of the providers that ship with mlform, imported lazily.
BUILTIN_PROVIDERS: tuple[tuple[Kind, str], ...] = (
    (Kind.DATA, "mlform.providers.data:DataProvider"),
    (Kind.FEATURES, "mlform.providers.features:FeaturesProvider"),
)


class ProviderRegistry:
    """A mapping of object kinds to the provider that applies them."""

    def __init__(self, providers: dict[Kind, Provider] | None = None) -> None:
        self._providers: dict[Kind, Provider] = dict(providers or {})

    def register(self, provider: Provider, kind: Kind | None = None) -> None:
        """Use ``provider`` for ``kind`` (default: the provider's own ``kind``)."""
        self._providers[kind or provider.kind] = provider

    def get(self, kind: Kind | str) -> Provider | None:
        try:
            return self._providers.get(Kind(kind))
        except ValueError:
            return None

    def supported_kinds(self) -> frozenset[Kind]:
        return frozenset(self._providers)

    def __contains__(self, kind: object) -> bool:
        return kind in self._providers

    def __iter__(self) -> Iterator[Kind]:
        return iter(sorted(self._providers, key=lambda k: k.rank))

    def __len__(self) -> int:
        return len(self._providers)


def load_provider(spec: str) -> Provider | None:
    """Instantiate ``module:Class``; None when that provider is not available in this build."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the provider module itself being absent means "not in this build"; a
        # provider that fails to import is a bug and must not silently disappear.
        if exc.name != module_name:
            raise
        return None
    factory = getattr(module, class_name, None)
    if factory is None:
        return None
    provider: Provider = factory()
    return provider


ENTRY_POINT_GROUP = "mlform.providers"


def default_registry() -> ProviderRegistry:
    """The providers that ship with mlform, then installed plugins (which take precedence)."""
    registry = ProviderRegistry()
    for kind, spec in (*BUILTIN_PROVIDERS, *_plugins()):
        provider = load_provider(spec)
        if provider is not None:
            registry.register(provider, kind)
    return registry


def _plugins() -> list[tuple[Kind, str]]:
    from importlib.metadata import entry_points

    found: list[tuple[Kind, str]] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            kind = Kind(entry.name)
        except ValueError as exc:
            raise ConfigError(
                [
                    Diagnostic.error(
                        f"provider plugin {entry.value!r} is registered for unknown kind "
                        f"{entry.name!r}",
                        f"Entry points in the {ENTRY_POINT_GROUP} group are named after the "
                        f"kind they apply ({', '.join(k.value for k in Kind)}). Fix or "
                        "uninstall the package that declares it.",
                    )
                ]
            ) from exc
        found.append((kind, entry.value))
    return found
