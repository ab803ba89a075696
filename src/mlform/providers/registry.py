"""Which provider applies each kind of object.

:func:`default_registry` holds the providers this release ships, then those installed
packages declare in the ``mlform.providers`` entry-point group (name = the kind,
value = ``module:Class``), which take precedence. A kind without a provider is planned
as usual but its steps are reported as unsupported by apply.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator

from mlform.addresses import Kind
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError
from mlform.providers.base import Provider

# (kind, "module:Class") of the providers that ship with mlform, imported lazily.
BUILTIN_PROVIDERS: tuple[tuple[Kind, str], ...] = (
    (Kind.DATA, "mlform.providers.data:DataProvider"),
    (Kind.FEATURES, "mlform.providers.features:FeaturesProvider"),
    (Kind.MODEL, "mlform.providers.models:ModelProvider"),
    (Kind.DEPLOYMENT, "mlform.providers.deployments:DeploymentProvider"),
    (Kind.MONITOR, "mlform.providers.monitors:MonitorProvider"),
)


class ProviderRegistry:
    """A mapping of object kinds to the provider that applies them.

    Entries may be providers or ``"module:Class"`` specs, imported on first :meth:`get`:
    planning only needs to know which kinds are supported, and importing every provider
    (scikit-learn, DuckDB, ...) would cost a no-op apply seconds.
    """

    def __init__(self, providers: dict[Kind, Provider] | None = None) -> None:
        self._providers: dict[Kind, Provider | str] = dict(providers or {})
        self._lock = threading.Lock()

    def register(self, provider: Provider | str, kind: Kind | None = None) -> None:
        """Use ``provider`` (or the ``module:Class`` it names) for ``kind``."""
        if isinstance(provider, str):
            if kind is None:
                raise ValueError("a provider given as 'module:Class' needs its kind")
            self._providers[kind] = provider
        else:
            self._providers[kind or provider.kind] = provider

    def get(self, kind: Kind | str) -> Provider | None:
        try:
            key = Kind(kind)
        except ValueError:
            return None
        with self._lock:
            entry = self._providers.get(key)
            if not isinstance(entry, str):
                return entry
            provider = load_provider(entry)
            if provider is None:
                del self._providers[key]
            else:
                self._providers[key] = provider
            return provider

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
    """The providers that ship with mlform, then installed plugins (which take precedence).

    Each is imported when first used (see :class:`ProviderRegistry`).
    """
    registry = ProviderRegistry()
    for kind, spec in (*BUILTIN_PROVIDERS, *_plugins()):
        registry.register(spec, kind)
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
