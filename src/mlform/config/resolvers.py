"""The custom OmegaConf resolvers, registered only while a compose runs.

``${env:VAR}`` / ``${env:VAR,default}``, ``${file_hash:path}`` (``sha256:<hex>`` of a file
relative to the project dir) and ``${secret:NAME}`` (a redaction token, see
:mod:`mlform.secrets`). A resolver that fails records a diagnostic in the
:class:`ResolverLog` and raises; the composer pairs it with the key being resolved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.basecontainer import BaseContainer

from mlform import secrets
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError

_NO_DEFAULT = object()


class ResolverFailedError(Exception):
    """Raised inside a resolver; the diagnostic is in the ResolverLog."""


@dataclass(slots=True)
class ResolverLog:
    """Diagnostics of failed resolver calls, newest last."""

    failures: list[Diagnostic] = field(default_factory=list)

    def fail(self, diagnostic: Diagnostic) -> ResolverFailedError:
        self.failures.append(diagnostic)
        return ResolverFailedError(diagnostic.summary)

    def take_last(self) -> Diagnostic | None:
        return self.failures.pop() if self.failures else None


def make_resolvers(
    project_dir: Path, log: ResolverLog, lookup: secrets.SecretLookup
) -> dict[str, Callable[..., Any]]:
    """The resolver functions for one compose of the project at ``project_dir``."""
    import os

    hmac_key: list[bytes] = []

    def env(name: Any, default: Any = _NO_DEFAULT) -> Any:
        value = os.environ.get(str(name))
        if value is not None:
            return value
        if default is not _NO_DEFAULT:
            return default
        raise log.fail(
            Diagnostic.error(
                f"environment variable {name} is not set",
                f"Set {name} in the environment, or give a default: ${{env:{name},default}}.",
            )
        )

    def file_hash(rel: Any) -> str:
        path = project_dir / str(rel)
        if not path.is_file():
            raise log.fail(
                Diagnostic.error(
                    f"file_hash: no file {rel}",
                    f"${{file_hash:{rel}}} names a file relative to the project directory "
                    f"({project_dir}); create it or fix the path.",
                )
            )
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"

    def secret(name: Any) -> str:
        try:
            value = secrets.read_secret(str(name), lookup)
            if not hmac_key:
                hmac_key.append(secrets.load_hmac_key(project_dir))
        except ConfigError as exc:
            raise log.fail(exc.diagnostics[0]) from None
        return secrets.redact_token(str(name), value, hmac_key[0])

    return {"env": env, "file_hash": file_hash, "secret": secret}


@contextmanager
def registered_resolvers(
    project_dir: Path, lookup: secrets.SecretLookup = secrets.default_lookup
) -> Iterator[ResolverLog]:
    """Register the resolvers for the duration of the block, then restore what was there."""
    log = ResolverLog()
    resolvers = make_resolvers(project_dir, log, lookup)
    registry: dict[str, Any] = BaseContainer._resolvers
    saved = {name: registry[name] for name in resolvers if name in registry}
    try:
        for name, fn in resolvers.items():
            OmegaConf.register_new_resolver(name, fn, replace=True, use_cache=False)
        yield log
    finally:
        for name in resolvers:
            if OmegaConf.has_resolver(name):
                OmegaConf.clear_resolver(name)
        registry.update(saved)
