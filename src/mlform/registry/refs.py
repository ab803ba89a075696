"""Model version references: ``model.churn``, ``model.churn@v3``, ``model.churn@champion``.

A selector after ``@`` is a version (``v3``), the word ``latest`` (the highest version,
whatever its status) or an alias name (``champion``, ``challenger``…). A bare address
means its champion when it has one, else its latest version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlform.addresses import Address, AddressError, Kind
from mlform.registry.errors import UnknownRefError

__all__ = ["ALIAS_RE", "LATEST", "ModelRef", "check_alias_name", "parse_model_address"]

LATEST = "latest"
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")


def parse_model_address(text: str, *, argument: str = "ADDRESS") -> str:
    """The canonical ``model.NAME`` string; UnknownRefError naming ``argument`` otherwise."""
    try:
        address = Address.parse(text)
    except AddressError as exc:
        raise UnknownRefError(f"{argument} {text!r}: {exc}") from None
    if address.kind is not Kind.MODEL:
        raise UnknownRefError(
            f"{argument} {text!r} is a {address.kind.value} address; the registry holds models "
            f"only (e.g. model.{address.name})"
        )
    return str(address)


def check_alias_name(alias: str) -> str:
    if not ALIAS_RE.match(alias) or _VERSION_RE.match(alias) or alias == LATEST:
        raise UnknownRefError(
            f"invalid alias {alias!r}: use lower-case letters, digits, '_' or '-', starting with a "
            f"letter, and neither 'latest' nor a version like 'v3' (e.g. champion, challenger)"
        )
    return alias


@dataclass(frozen=True, slots=True)
class ModelRef:
    address: str
    version: int | None = None  # set for '@vN'
    alias: str | None = None  # set for '@alias'; 'latest' for '@latest'

    @classmethod
    def parse(cls, text: str, *, argument: str = "REF") -> ModelRef:
        address_text, sep, selector = text.strip().partition("@")
        address = parse_model_address(address_text, argument=argument)
        if not sep:
            return cls(address)
        match = _VERSION_RE.match(selector)
        if match:
            return cls(address, version=int(match.group(1)))
        if selector == LATEST or ALIAS_RE.match(selector):
            return cls(address, alias=selector)
        raise UnknownRefError(
            f"{argument} {text!r}: after '@' write a version (v1, v2…), 'latest' or an alias "
            "(champion, challenger…)"
        )

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.address}@v{self.version}"
        if self.alias is not None:
            return f"{self.address}@{self.alias}"
        return self.address
