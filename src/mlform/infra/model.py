"""Infrastructure resources and the changes Pulumi reports for them.

Every resource belongs to one mlform object (its ``owner``) and has a name unique
within that owner. Its Pulumi logical name is ``"<owner>/<name>"``
(``deployment.churn-api/server-0``), which is how engine events and previews are
mapped back to the mlform object they belong to (:func:`split_logical_name`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mlform.addresses import Address

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(
            f"infrastructure name {name!r} must be lower-case letters, digits, '-' or '.', "
            "1-63 characters, starting and ending with a letter or digit"
        )


@dataclass(frozen=True, slots=True)
class Process:
    """A long-running local process managed by the local target.

    ``health_path`` is requested as ``http://127.0.0.1:<port><health_path>``; the process
    is healthy when it answers 2xx. ``port`` 0 asks the provider to pick a free port and
    pass it to the process as ``$PORT`` (also substituted for ``{port}`` in ``command``).
    The process inherits the engine's environment without the CLI's secrets
    (``MLFORM_SECRET_*``, ``MLFORM_SECRETS_DIR``) unless ``secrets_env`` (a monitor's
    scheduler, which composes the config and sends alerts with secret headers).
    """

    owner: Address
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    health_path: str | None = None
    cwd: str | None = None
    startup_timeout_s: float = 30.0
    secrets_env: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not self.command:
            raise ValueError(f"{self.logical_name}: a process needs a command")
        if self.health_path is not None and not self.health_path.startswith("/"):
            raise ValueError(f"{self.logical_name}: health_path must start with '/'")

    @property
    def kind(self) -> str:
        return "process"

    @property
    def logical_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def inputs(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "env": dict(sorted(self.env.items())),
            "port": self.port,
            "health_path": self.health_path,
            "cwd": self.cwd,
            "startup_timeout_s": self.startup_timeout_s,
            # only when set, so processes recorded before it existed keep their inputs
            **({"secrets_env": True} if self.secrets_env else {}),
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object (``apiVersion``, ``kind``, ``metadata``, ...), as a dict.

    ``name`` is the mlform-side name (unique within the owner), not necessarily
    ``metadata.name``.
    """

    owner: Address
    name: str
    body: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check_name(self.name)
        for key in ("apiVersion", "kind", "metadata"):
            if key not in self.body:
                raise ValueError(f"{self.logical_name}: a manifest needs {key!r}")

    @property
    def kind(self) -> str:
        """Pulumi's type token (``kubernetes:apps/v1:Deployment``; core is ``core/v1``)."""
        api_version = str(self.body["apiVersion"])
        if "/" not in api_version:
            api_version = f"core/{api_version}"
        return f"kubernetes:{api_version}:{self.body['kind']}"

    @property
    def logical_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def inputs(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(json.dumps(self.body, sort_keys=True))
        return body


InfraResource = Process | Manifest


def to_record(resource: InfraResource) -> dict[str, Any]:
    """JSON-able form, as stored in an object's outputs under ``infrastructure``."""
    if isinstance(resource, Process):
        return {
            "type": "process",
            "owner": str(resource.owner),
            "name": resource.name,
            **resource.inputs(),
        }
    return {
        "type": "manifest",
        "owner": str(resource.owner),
        "name": resource.name,
        "body": resource.inputs(),
    }


def from_record(record: Mapping[str, Any]) -> InfraResource:
    owner = Address.parse(record["owner"])
    if record["type"] == "process":
        return Process(
            owner=owner,
            name=record["name"],
            command=tuple(record["command"]),
            env=dict(record.get("env") or {}),
            port=int(record.get("port") or 0),
            health_path=record.get("health_path"),
            cwd=record.get("cwd"),
            startup_timeout_s=float(record.get("startup_timeout_s", 30.0)),
            secrets_env=bool(record.get("secrets_env", False)),
        )
    if record["type"] == "manifest":
        return Manifest(owner=owner, name=record["name"], body=dict(record["body"]))
    raise ValueError(f"unknown infrastructure record type {record['type']!r}")


def fingerprint(resources: Iterable[InfraResource]) -> str:
    """sha256 over the canonical records, independent of order."""
    records = sorted((to_record(r) for r in resources), key=lambda r: (r["owner"], r["name"]))
    blob = json.dumps(records, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def split_logical_name(logical_name: str) -> tuple[Address, str] | None:
    """``"deployment.api/server-0"`` -> (Address, "server-0"); None for foreign names."""
    owner, sep, name = logical_name.partition("/")
    if not sep:
        return None
    try:
        return Address.parse(owner), name
    except ValueError:
        return None


class InfraOp(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    SAME = "same"
    # refresh only: the live resource is gone, or differs from what Pulumi recorded.
    GONE = "gone"
    DRIFTED = "drifted"


@dataclass(frozen=True, slots=True)
class InfraChange:
    """One Pulumi resource change (from a preview, an update or a refresh)."""

    owner: Address
    name: str
    type: str  # "process" or "kubernetes:apps/v1:Deployment"
    op: InfraOp
    fields: tuple[str, ...] = ()  # changed input keys, when Pulumi says
    detail: str = ""

    @property
    def logical_name(self) -> str:
        return f"{self.owner}/{self.name}"
