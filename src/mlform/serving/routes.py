"""The traffic router's route table: model, validation, JSON and upstream selection.

Pure: no I/O. The router (:mod:`mlform.serving.router`) holds one :class:`RouteTable` and
swaps it for a new one when the rollout controller PUTs one; every request uses the table
that was current when it arrived. The JSON form (the routes file and the admin PUT body)::

    {
      "generation": 5,
      "upstreams": {
        "v1": {"url": "http://127.0.0.1:41001", "version": "1"},
        "v2": {"url": "http://127.0.0.1:41002", "version": "2"}
      },
      "split": {"v1": 90, "v2": 10},
      "route_by": "weight",
      "key": null,
      "mirror": {"upstream": "v3", "percent": 20},
      "preview": "v2"
    }

Selection order for one request (:meth:`RouteTable.select`): a
``/v2/models/{m}/versions/{v}/...`` path goes to the upstream serving version ``v``
(see :meth:`RouteTable.for_version`); else a preview request (header
``X-Mlform-Preview: true``) goes to ``preview`` when set; else ``route_by`` decides:
``weight`` draws by weight, ``header`` takes the upstream named by header ``key`` (absent
or unknown: by weight), ``hash`` maps ``crc32(value of header key) % 100`` onto the
cumulative weights in the order of ``split``'s keys (absent header: by weight).
"""

from __future__ import annotations

import json
import random
import re
import zlib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

__all__ = [
    "PREVIEW_HEADER",
    "ROUTE_BY",
    "Mirror",
    "RouteError",
    "RouteTable",
    "Upstream",
    "is_preview",
    "json_kind",
    "version_from_path",
]

RouteBy = Literal["weight", "header", "hash"]
ROUTE_BY: Final[tuple[str, ...]] = ("weight", "header", "hash")
PREVIEW_HEADER: Final = "X-Mlform-Preview"
TOTAL_WEIGHT: Final = 100

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# RFC 9110 token: the characters a header field name may hold.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TOP_KEYS: Final = frozenset(
    {"generation", "upstreams", "split", "route_by", "key", "mirror", "preview"}
)
_UPSTREAM_KEYS: Final = frozenset({"url", "version"})
_MIRROR_KEYS: Final = frozenset({"upstream", "percent"})


class RouteError(ValueError):
    """A route table is invalid; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One model server the router can send requests to."""

    name: str
    url: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        if self.version is not None:
            out["version"] = self.version
        return out


@dataclass(frozen=True, slots=True)
class Mirror:
    """Copy ``percent`` of proxied requests to ``upstream``; its answers are discarded."""

    upstream: str
    percent: float

    def to_dict(self) -> dict[str, Any]:
        percent: float | int = self.percent
        if float(percent).is_integer():
            percent = int(percent)
        return {"upstream": self.upstream, "percent": percent}


@dataclass(frozen=True, eq=True)
class RouteTable:
    """An immutable, validated route table (construct it, or use :meth:`from_json`)."""

    generation: int = 0
    upstreams: Mapping[str, Upstream] = field(default_factory=dict)
    split: Mapping[str, int] = field(default_factory=dict)
    route_by: RouteBy = "weight"
    key: str | None = None
    mirror: Mirror | None = None
    preview: str | None = None

    # Derived on construction, for selection without per-request work.
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Copy the mappings so that a table never changes after it is validated.
        object.__setattr__(self, "upstreams", _validate(self))
        object.__setattr__(self, "split", dict(self.split))
        names: list[str] = []
        cumulative: list[int] = []
        total = 0
        for name, weight in self.split.items():
            total += weight
            names.append(name)
            cumulative.append(total)
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    # -- construction -------------------------------------------------------------------

    @classmethod
    def empty(cls) -> RouteTable:
        """Generation 0, no upstreams: every proxied request gets 503 until a PUT."""
        return cls()

    @classmethod
    def from_dict(cls, data: Any) -> RouteTable:
        """Validate a decoded JSON document; :class:`RouteError` names the bad field."""
        if not isinstance(data, Mapping):
            raise RouteError(f"the route table must be a JSON object, not {json_kind(data)}")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise RouteError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(_TOP_KEYS))}"
            )
        generation = data.get("generation", 0)
        upstreams_raw = data.get("upstreams", {})
        if upstreams_raw is None:
            upstreams_raw = {}
        if not isinstance(upstreams_raw, Mapping):
            raise RouteError(f"upstreams must be an object, not {json_kind(upstreams_raw)}")
        upstreams: dict[str, Upstream] = {}
        for name, spec in upstreams_raw.items():
            where = f"upstreams.{name}"
            if not isinstance(spec, Mapping):
                raise RouteError(f"{where} must be an object with a url, not {json_kind(spec)}")
            extra = sorted(set(spec) - _UPSTREAM_KEYS)
            if extra:
                raise RouteError(
                    f"{where}: unknown field(s) {', '.join(map(repr, extra))}; "
                    "allowed: url, version"
                )
            if "url" not in spec:
                raise RouteError(f"{where}.url is required")
            version: Any = spec.get("version")
            if isinstance(version, int) and not isinstance(version, bool):
                version = str(version)
            upstreams[name] = Upstream(name=name, url=spec["url"], version=version)
        split = data.get("split", {})
        if split is None:
            split = {}
        mirror_raw = data.get("mirror")
        mirror: Mirror | None = None
        if mirror_raw is not None:
            if not isinstance(mirror_raw, Mapping):
                raise RouteError(
                    f"mirror must be an object {{upstream, percent}} or null, "
                    f"not {json_kind(mirror_raw)}"
                )
            extra = sorted(set(mirror_raw) - _MIRROR_KEYS)
            if extra:
                raise RouteError(
                    f"mirror: unknown field(s) {', '.join(map(repr, extra))}; "
                    "allowed: upstream, percent"
                )
            if "upstream" not in mirror_raw:
                raise RouteError("mirror.upstream is required")
            if "percent" not in mirror_raw:
                raise RouteError("mirror.percent is required")
            mirror = Mirror(upstream=mirror_raw["upstream"], percent=mirror_raw["percent"])
        return cls(
            generation=generation,
            upstreams=upstreams,
            split=split,
            route_by=data.get("route_by", "weight"),
            key=data.get("key"),
            mirror=mirror,
            preview=data.get("preview"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RouteTable:
        """Parse and validate JSON text; bad JSON is a :class:`RouteError` too."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RouteError(f"the route table is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "upstreams": {name: up.to_dict() for name, up in self.upstreams.items()},
            "split": dict(self.split),
            "route_by": self.route_by,
            "key": self.key,
            "mirror": self.mirror.to_dict() if self.mirror is not None else None,
            "preview": self.preview,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text; ``split`` keeps its key order (it decides the ``hash`` buckets)."""
        return json.dumps(self.to_dict(), indent=indent)

    def with_generation(self, generation: int) -> RouteTable:
        """The same table under another generation number."""
        return RouteTable.from_dict({**self.to_dict(), "generation": generation})

    # -- selection ----------------------------------------------------------------------

    @property
    def routable(self) -> bool:
        """Whether the split has weight to route by (else proxied requests get 503)."""
        return bool(self._cumulative) and self._cumulative[-1] > 0

    def by_weight(self, rng: random.Random) -> Upstream | None:
        """An upstream drawn by weight; None when the split is empty."""
        if not self.routable:
            return None
        index = bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        return self.upstreams[self._names[index]]

    def by_hash(self, value: str) -> Upstream | None:
        """The upstream for a key's stable bucket ``crc32(value) % 100``; None if no split."""
        if not self.routable:
            return None
        bucket = zlib.crc32(value.encode("utf-8", "surrogatepass")) % TOTAL_WEIGHT
        return self.upstreams[self._names[bisect_right(self._cumulative, bucket)]]

    def select(
        self,
        rng: random.Random,
        *,
        key_value: str | None = None,
        preview: bool = False,
    ) -> Upstream | None:
        """The upstream for one request (not a version path; see :meth:`for_version`).

        ``key_value`` is the value of the request header named by :attr:`key` (None when
        absent), ``preview`` whether the request asked for the preview. None means no
        route: the split is empty.
        """
        if preview and self.preview is not None:
            return self.upstreams[self.preview]
        if key_value is not None:
            if self.route_by == "header":
                chosen = self.upstreams.get(key_value.strip())
                if chosen is not None:
                    return chosen
            elif self.route_by == "hash":
                return self.by_hash(key_value)
        return self.by_weight(rng)

    def for_version(self, version: str) -> Upstream | None:
        """The upstream serving ``version`` (one with split weight first); None if none."""
        fallback: Upstream | None = None
        for up in self.upstreams.values():
            if up.version == version:
                if self.split.get(up.name, 0) > 0:
                    return up
                if fallback is None:
                    fallback = up
        return fallback

    def versions(self) -> list[str]:
        """The versions served, in upstream order, without repeats."""
        seen: dict[str, None] = {}
        for up in self.upstreams.values():
            if up.version is not None:
                seen.setdefault(up.version, None)
        return list(seen)

    def alternative(
        self, failed: str, rng: random.Random, *, version: str | None = None
    ) -> Upstream | None:
        """Another upstream to retry on after ``failed`` failed, or None.

        Without ``version``: one with weight > 0 in the split other than ``failed``, drawn
        by weight. With ``version`` (a version-path request): another upstream serving that
        same version.
        """
        if version is not None:
            for up in self.upstreams.values():
                if up.version == version and up.name != failed:
                    return up
            return None
        names: list[str] = []
        cumulative: list[int] = []
        total = 0
        for name, weight in self.split.items():
            if weight > 0 and name != failed:
                total += weight
                names.append(name)
                cumulative.append(total)
        if not names:
            return None
        if len(names) == 1:
            return self.upstreams[names[0]]
        return self.upstreams[names[bisect_right(cumulative, rng.random() * total)]]

    def mirror_target(self, rng: random.Random) -> Upstream | None:
        """The mirror upstream when this request is to be mirrored, else None."""
        mirror = self.mirror
        if mirror is None or mirror.percent <= 0:
            return None
        if mirror.percent >= TOTAL_WEIGHT or rng.random() * TOTAL_WEIGHT < mirror.percent:
            return self.upstreams[mirror.upstream]
        return None


def is_preview(value: str | None) -> bool:
    """Whether an ``X-Mlform-Preview`` header value asks for the preview."""
    return value is not None and value.strip().lower() in ("true", "1")


def version_from_path(path: str) -> str | None:
    """``v`` for a ``/v2/models/{name}/versions/{v}[/...]`` path, else None."""
    if not path.startswith("/v2/models/"):
        return None
    parts = path.split("/", 7)
    # ['', 'v2', 'models', name, 'versions', v, ...]
    if len(parts) >= 6 and parts[4] == "versions" and parts[3] and parts[5]:
        return parts[5]
    return None


# -- validation ---------------------------------------------------------------------------


def json_kind(value: Any) -> str:
    """How a JSON value is named in error messages: "a string", "an array", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(where: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RouteError(
            f"{where}: upstream name {name!r} is invalid; use lowercase letters, digits, "
            "'.', '_' and '-', starting with a letter or digit"
        )


def _check_url(where: str, url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise RouteError(f"{where}.url must be a non-empty string, not {json_kind(url)}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RouteError(f"{where}.url {url!r} is not a valid URL: {exc}") from None
    if parts.scheme != "http":
        raise RouteError(
            f"{where}.url {url!r} must be an http:// URL (got scheme {parts.scheme!r})"
        )
    if not parts.hostname:
        raise RouteError(f"{where}.url {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise RouteError(f"{where}.url {url!r} must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise RouteError(
            f"{where}.url {url!r} must be a bare http://host:port (no path, query or fragment)"
        )
    if port == 0:
        raise RouteError(f"{where}.url {url!r} has port 0")
    return url.rstrip("/")


def _validate(table: RouteTable) -> dict[str, Upstream]:
    """Raise :class:`RouteError` for the first problem; return the normalised upstreams."""
    upstreams: dict[str, Upstream] = {}
    gen = table.generation
    if not _is_int(gen) or gen < 0:
        raise RouteError(f"generation must be an integer >= 0, not {gen!r}")

    if not isinstance(table.upstreams, Mapping):
        raise RouteError(f"upstreams must be an object, not {json_kind(table.upstreams)}")
    for name, up in table.upstreams.items():
        _check_name("upstreams", name)
        where = f"upstreams.{name}"
        if not isinstance(up, Upstream):
            raise RouteError(f"{where} must be an Upstream, not {json_kind(up)}")
        if up.name != name:
            raise RouteError(f"{where} is keyed {name!r} but named {up.name!r}")
        url = _check_url(where, up.url)
        if up.version is not None and (
            not isinstance(up.version, str) or not up.version or "/" in up.version
        ):
            raise RouteError(
                f"{where}.version must be a non-empty string without '/', not {up.version!r}"
            )
        upstreams[name] = up if url == up.url else Upstream(name, url, up.version)

    split = table.split
    if not isinstance(split, Mapping):
        raise RouteError(f"split must be an object of upstream -> weight, not {json_kind(split)}")
    total = 0
    for name, weight in split.items():
        if not isinstance(name, str) or name not in table.upstreams:
            raise RouteError(
                f"split: {name!r} is not a declared upstream "
                f"(declared: {', '.join(table.upstreams) or 'none'})"
            )
        if not _is_int(weight) or weight < 0:
            raise RouteError(f"split.{name} must be an integer weight >= 0, not {weight!r}")
        total += weight
    if split and total != TOTAL_WEIGHT:
        raise RouteError(
            f"split weights must sum to {TOTAL_WEIGHT}, not {total} "
            f"({', '.join(f'{n}={w}' for n, w in split.items())})"
        )

    if table.route_by not in ROUTE_BY:
        raise RouteError(f"route_by must be one of {', '.join(ROUTE_BY)}, not {table.route_by!r}")
    key = table.key
    if key is not None and (not isinstance(key, str) or not _HEADER_NAME.match(key)):
        raise RouteError(f"key must be an HTTP header name, not {key!r}")
    if table.route_by in ("header", "hash") and key is None:
        raise RouteError(
            f"key is required when route_by is {table.route_by!r}: "
            "name the request header to route by"
        )

    mirror = table.mirror
    if mirror is not None:
        if not isinstance(mirror, Mirror):
            raise RouteError(f"mirror must be a Mirror or null, not {json_kind(mirror)}")
        if not isinstance(mirror.upstream, str) or mirror.upstream not in table.upstreams:
            raise RouteError(
                f"mirror.upstream {mirror.upstream!r} is not a declared upstream "
                f"(declared: {', '.join(table.upstreams) or 'none'})"
            )
        percent = cast(Any, mirror.percent)
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or percent != percent  # NaN
            or not 0 <= percent <= TOTAL_WEIGHT
        ):
            raise RouteError(f"mirror.percent must be a number from 0 to 100, not {percent!r}")

    preview = table.preview
    if preview is not None and (not isinstance(preview, str) or preview not in table.upstreams):
        raise RouteError(
            f"preview {preview!r} is not a declared upstream "
            f"(declared: {', '.join(table.upstreams) or 'none'})"
        )
    return upstreams
