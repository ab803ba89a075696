"""Secrets: a secret value never reaches state, plan files, rendered output or logs.

``${secret:NAME}`` in a config resolves to a redaction token ``<secret:NAME:HMAC16>``,
where HMAC16 is the first 16 hex characters of HMAC-SHA256(key, value). A changed
secret therefore changes the config fingerprint without ever appearing in clear.
Providers call :func:`reveal` at the last moment to put the clear value back.

Values come from the environment variable ``MLFORM_SECRET_<NAME>`` (NAME upper-cased,
every non-alphanumeric character replaced by ``_``) or from the file
``$MLFORM_SECRETS_DIR/<name>``. The HMAC key is ``$MLFORM_SECRET_KEY`` when set, else a
random key generated once into ``<project>/.mlform/secret-hmac.key`` (mode 0600).

This module is pure Python (no Hydra) so that every stage can use it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets as _random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError

__all__ = [
    "KEY_ENV",
    "SECRETS_DIR_ENV",
    "SECRET_NAME_RE",
    "SECRET_TOKEN_RE",
    "SecretLookup",
    "default_lookup",
    "find_tokens",
    "is_sensitive",
    "key_file",
    "load_hmac_key",
    "missing_secret",
    "read_secret",
    "redact_token",
    "reveal",
    "secret_env_var",
]

KEY_ENV = "MLFORM_SECRET_KEY"
SECRETS_DIR_ENV = "MLFORM_SECRETS_DIR"
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
SECRET_TOKEN_RE = re.compile(r"<secret:([A-Za-z0-9][A-Za-z0-9_.\-]{0,127}):([0-9a-f]{16})>")

SecretLookup = Callable[[str], "str | None"]


def secret_env_var(name: str) -> str:
    """The environment variable that holds secret ``name``: ``MLFORM_SECRET_<NAME>``."""
    return "MLFORM_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def redact_token(name: str, value: str, key: bytes) -> str:
    """The redaction token that stands for ``value`` in configs, state and plans."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
    return f"<secret:{name}:{digest}>"


def default_lookup(name: str) -> str | None:
    """Read secret ``name`` from its environment variable, else from $MLFORM_SECRETS_DIR."""
    value = os.environ.get(secret_env_var(name))
    if value is not None:
        return value
    directory = os.environ.get(SECRETS_DIR_ENV)
    if directory:
        path = Path(directory) / name
        if path.is_file():
            return path.read_text(encoding="utf-8").rstrip("\r\n")
    return None


def missing_secret(name: str, key: str | None = None) -> Diagnostic:
    """The diagnostic for a secret that is referenced but not set anywhere."""
    return Diagnostic.error(
        f"secret {name!r} is not set",
        f"Set the environment variable {secret_env_var(name)}, or write the value to the file "
        f"${SECRETS_DIR_ENV}/{name} (and set {SECRETS_DIR_ENV}).",
        key=key,
    )


def read_secret(name: str, lookup: SecretLookup = default_lookup, key: str | None = None) -> str:
    """The clear value of secret ``name``; ConfigError naming both ways to set it if missing."""
    if not SECRET_NAME_RE.match(name):
        raise ConfigError(
            [
                Diagnostic.error(
                    f"invalid secret name {name!r}",
                    "Secret names use letters, digits, '_', '.' or '-', "
                    "e.g. ${secret:alert_token}.",
                    key=key,
                )
            ]
        )
    value = lookup(name)
    if value is None:
        raise ConfigError([missing_secret(name, key)])
    return value


def key_file(project_dir: Path) -> Path:
    """Where the generated HMAC key of a project lives."""
    return project_dir / ".mlform" / "secret-hmac.key"


def load_hmac_key(project_dir: Path | None) -> bytes:
    """The HMAC key: $MLFORM_SECRET_KEY, else the project's key file (generated once)."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return from_env.encode("utf-8")
    if project_dir is None:
        raise ConfigError(
            [
                Diagnostic.error(
                    "no key to redact secrets with",
                    f"Set {KEY_ENV}, or run mlform inside a project directory.",
                )
            ]
        )
    path = key_file(project_dir)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(_random.token_hex(32))
        if path.exists():  # another process won the race: keep its key
            tmp.unlink()
        else:
            os.replace(tmp, path)
    return path.read_text(encoding="ascii").strip().encode("ascii")


def find_tokens(obj: Any) -> set[str]:
    """Names of the secrets whose tokens appear anywhere inside ``obj``."""
    return {match.group(1) for text in _strings(obj) for match in SECRET_TOKEN_RE.finditer(text)}


def is_sensitive(value: Any) -> bool:
    """Whether ``value`` (a string or nested container) holds a secret token."""
    return any(SECRET_TOKEN_RE.search(text) for text in _strings(value))


def reveal(
    obj: Any,
    lookup: SecretLookup = default_lookup,
    *,
    key: bytes | None = None,
    project_dir: Path | None = None,
) -> Any:
    """A copy of ``obj`` with every secret token replaced by the secret's clear value.

    Tokens are checked with ``key``, or else the project's key (``load_hmac_key``).
    Raises ConfigError when a secret is missing or its value no longer matches the
    token (the secret changed since the config was composed: plan again).
    """
    keys: list[bytes] = [] if key is None else [key]

    def clear(match: re.Match[str]) -> str:
        name, digest = match.group(1), match.group(2)
        value = read_secret(name, lookup)
        if not keys:  # only when there is a token to check
            keys.append(load_hmac_key(project_dir))
        if not redact_token(name, value, keys[0]).endswith(f":{digest}>"):
            raise ConfigError(
                [
                    Diagnostic.error(
                        f"secret {name!r} changed since the config was composed",
                        "Its current value does not match the redacted value in the plan or "
                        "state. Run `mlform plan` again so that the change is planned.",
                    )
                ]
            )
        return value

    return _map_strings(obj, lambda text: SECRET_TOKEN_RE.sub(clear, text))


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from _strings(item)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from _strings(item)


def _map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: _map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_strings(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_map_strings(v, fn) for v in obj)
    return obj
