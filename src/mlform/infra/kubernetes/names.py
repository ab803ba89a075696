"""Names, labels and metadata every Kubernetes object mlform builds shares, and the checks of
the values Kubernetes validates (DNS labels, label keys and values, quantities, ports).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from mlform.addresses import Address

MANAGED_BY = "mlform"


ADDRESS_KEY = "mlform.dev/address"


GPU_RESOURCE = "nvidia.com/gpu"


PORT_NAME = "http"


_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


_DNS_1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


_CONFIG_KEY_RE = re.compile(r"^[-._A-Za-z0-9]+$")


_QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def check_dns_label(name: str, what: str = "name", *, rfc1035: bool = False) -> str:
    """``name`` when it is a DNS-1123 label (RFC 1035 label: also starts with a letter)."""
    pattern = _DNS_1035_RE if rfc1035 else _DNS_LABEL_RE
    if len(name) > 63 or not pattern.match(name):
        start = "a lower-case letter" if rfc1035 else "a lower-case letter or digit"
        raise ValueError(
            f"Kubernetes {what} {name!r} is not a valid DNS label: use 1-63 lower-case letters, "
            f"digits or '-', starting with {start} and ending with a letter or digit"
        )
    return name


def _check_label_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    ok = len(name) <= 63 and bool(_LABEL_NAME_RE.match(name))
    if slash:
        ok = ok and len(prefix) <= 253 and bool(_PREFIX_RE.match(prefix))
    if not ok:
        raise ValueError(
            f"Kubernetes label or annotation key {key!r} is invalid: use an optional DNS "
            "prefix and '/', then 1-63 letters, digits, '-', '_' or '.'"
        )


def _check_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        _check_label_key(key)
        if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
            raise ValueError(
                f"Kubernetes label {key}={value!r} is invalid: a value has at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit"
            )


def _label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a shortened form with a stable hash."""
    if len(text) <= 63 and _LABEL_VALUE_RE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:52].strip("-_.")
    return f"{head}-{digest}" if head else digest


def _quantity(value: int | float | str, what: str) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a quantity, not {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        millis = round(value * 1000)
        text = str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
    else:
        text = value
    if not _QUANTITY_RE.match(text):
        raise ValueError(f"{what} {value!r} is not a Kubernetes quantity (e.g. 2, '500m', '8Gi')")
    return text


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} must be between 1 and 65535")
    return port


def _check_port_name(name: str) -> str:
    """A named port (IANA service name): at most 15 lower-case letters, digits or '-'."""
    if len(name) > 15 or not _DNS_1035_RE.match(name) or "--" in name:
        raise ValueError(
            f"port name {name!r} is invalid: use 1-15 lower-case letters, digits or single "
            "'-', starting with a letter"
        )
    return name


def _check_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} must start with '/'")
    return path


def standard_labels(owner: Address, instance: str, project: str) -> dict[str, str]:
    """The labels every object of ``owner`` carries (also valid as a selector)."""
    return {
        "app.kubernetes.io/component": _label_value(owner.kind.value),
        "app.kubernetes.io/instance": _label_value(instance),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": _label_value(owner.name),
        "app.kubernetes.io/part-of": _label_value(project),
        ADDRESS_KEY: _label_value(str(owner)),
    }


def _metadata(
    owner: Address,
    name: str,
    project: str,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    user_labels = dict(labels or {})
    _check_labels(user_labels)
    merged_labels = {**user_labels, **standard_labels(owner, name, project)}
    merged_annotations = {**(annotations or {}), ADDRESS_KEY: str(owner)}
    for key in merged_annotations:
        _check_label_key(key)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = check_dns_label(namespace, "namespace")
    metadata["labels"] = dict(sorted(merged_labels.items()))
    metadata["annotations"] = dict(sorted(merged_annotations.items()))
    return metadata


def _manifest_name(kind: str, key: str | None) -> str:
    return kind if key is None else f"{kind}-{check_dns_label(key, 'key')}"


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS (RFC 1035) label for ``parts`` joined by ``-``: the text itself when it is one,
    else a lower-cased, shortened form ending in a hash of the text (deterministic, and
    distinct for distinct texts: ``Churn_API`` and ``churn-api`` differ)."""
    text = "-".join(parts)
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if slug and not slug[0].isalpha():
        slug = f"m-{slug}"
    if slug == text and len(slug) <= limit:
        return slug
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = slug[: limit - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}" if head else f"m-{digest}"


def _app_selector(owner: Address, project: str) -> dict[str, str]:
    """Labels every pod of ``owner`` carries, whatever its version or track."""
    return {
        "app.kubernetes.io/part-of": _label_value(project),
        ADDRESS_KEY: _label_value(str(owner)),
    }


def _instance_selector(owner: Address, instance: str, project: str) -> dict[str, str]:
    """The pods of one workload object (its name is the ``instance`` label)."""
    return {
        k: v
        for k, v in standard_labels(owner, instance, project).items()
        if k in ("app.kubernetes.io/instance", "app.kubernetes.io/name")
    }
