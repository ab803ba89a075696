"""A small synchronous client of the traffic router's admin API (urllib, no event loop).

For the rollout controller::

    from mlform.serving.router_client import put_routes
    from mlform.serving.routes import RouteTable

    table = RouteTable.from_dict({...})
    stored = put_routes("http://127.0.0.1:8080", table, timeout=5.0)

``admin_url`` is the router's base URL (``http://host:port``); a URL that already ends in
``/-/routes`` is accepted too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from mlform.errors import MlformError
from mlform.serving.routes import RouteError, RouteTable

__all__ = [
    "RouterAdminError",
    "StaleRoutesError",
    "get_routes",
    "put_routes",
    "router_live",
]


class RouterAdminError(MlformError):
    """The router's admin API could not be reached or refused a request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StaleRoutesError(RouterAdminError):
    """A PUT carried a generation older than the router's (HTTP 409)."""

    def __init__(self, message: str, current_generation: int | None) -> None:
        super().__init__(message, 409)
        self.current_generation = current_generation


def _base(admin_url: str) -> str:
    base = admin_url.rstrip("/")
    for suffix in ("/-/routes", "/-/health", "/-"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _call(method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RouterAdminError(f"router admin API at {url} unreachable: {reason}") from exc


def _error_of(payload: bytes) -> tuple[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace").strip(), None
    if isinstance(data, Mapping):
        return str(data.get("error", data)), data.get("generation")
    return str(data), None


def put_routes(
    admin_url: str, table: RouteTable | Mapping[str, Any], timeout: float = 10.0
) -> RouteTable:
    """PUT ``table`` to the router; returns the table the router stored.

    Raises :class:`RouteError` when the table is invalid (checked here first, and by the
    router: HTTP 400), :class:`StaleRoutesError` when its generation is older than the
    router's (409), :class:`RouterAdminError` for anything else (unreachable, 5xx).
    """
    if not isinstance(table, RouteTable):
        table = RouteTable.from_dict(table)
    url = f"{_base(admin_url)}/-/routes"
    status, payload = _call("PUT", url, table.to_json(indent=None).encode(), timeout)
    if status == 200:
        try:
            return RouteTable.from_json(payload)
        except RouteError as exc:
            raise RouterAdminError(f"router at {url} answered an invalid table: {exc}") from exc
    message, generation = _error_of(payload)
    if status == 400:
        raise RouteError(message)
    if status == 409:
        raise StaleRoutesError(message, generation if isinstance(generation, int) else None)
    raise RouterAdminError(f"router at {url} answered {status}: {message}", status)


def get_routes(admin_url: str, timeout: float = 10.0) -> RouteTable:
    """The router's current table."""
    url = f"{_base(admin_url)}/-/routes"
    status, payload = _call("GET", url, None, timeout)
    if status != 200:
        message, _ = _error_of(payload)
        raise RouterAdminError(f"router at {url} answered {status}: {message}", status)
    try:
        return RouteTable.from_json(payload)
    except RouteError as exc:
        raise RouterAdminError(f"router at {url} answered an invalid table: {exc}") from exc


def router_live(admin_url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET /-/health`` answers 200 (False when unreachable)."""
    try:
        status, _ = _call("GET", f"{_base(admin_url)}/-/health", None, timeout)
    except RouterAdminError:
        return False
    return status == 200
