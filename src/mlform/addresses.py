"""Typed addresses of the objects mlform manages: ``data.customers``, ``model.churn``.

An address is a frozen value with ``parse()`` and ``__str__``; bare strings are only
used at the edges (CLI arguments, JSON documents).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """The closed set of object kinds, in dependency order."""

    DATA = "data"
    FEATURES = "features"
    MODEL = "model"
    DEPLOYMENT = "deployment"
    MONITOR = "monitor"

    @property
    def section(self) -> str:
        """The config section that declares objects of this kind."""
        return _SECTIONS[self]

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @classmethod
    def from_section(cls, section: str) -> Kind:
        for kind, name in _SECTIONS.items():
            if name == section:
                return kind
        raise ValueError(f"no object kind is declared by section {section!r}")


_SECTIONS: dict[Kind, str] = {
    Kind.DATA: "data",
    Kind.FEATURES: "features",
    Kind.MODEL: "models",
    Kind.DEPLOYMENT: "deployments",
    Kind.MONITOR: "monitors",
}
_ORDER = list(_SECTIONS)

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,62}"
_NAME_RE = re.compile(rf"^{NAME_PATTERN}$")


class AddressError(ValueError):
    """Raised by :meth:`Address.parse` for a malformed address."""


@dataclass(frozen=True, order=False, slots=True)
class Address:
    kind: Kind
    name: str

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise AddressError(
                f"invalid object name {self.name!r}: use letters, digits, '_' or '-' "
                "(at most 63 characters, starting with a letter or digit)"
            )

    @classmethod
    def parse(cls, text: str) -> Address:
        kind_text, sep, name = text.partition(".")
        if not sep:
            raise AddressError(
                f"invalid address {text!r}: expected KIND.NAME, e.g. model.churn "
                f"(kinds: {', '.join(k.value for k in Kind)})"
            )
        try:
            kind = Kind(kind_text)
        except ValueError:
            raise AddressError(
                f"invalid address {text!r}: unknown kind {kind_text!r} "
                f"(kinds: {', '.join(k.value for k in Kind)})"
            ) from None
        return cls(kind, name)

    @property
    def config_key(self) -> str:
        """The config key path that declares this object, e.g. ``models.churn``."""
        return f"{self.kind.section}.{self.name}"

    def sort_key(self) -> tuple[int, str]:
        return (self.kind.rank, self.name)

    def __lt__(self, other: Address) -> bool:
        return self.sort_key() < other.sort_key()

    def __str__(self) -> str:
        return f"{self.kind.value}.{self.name}"
