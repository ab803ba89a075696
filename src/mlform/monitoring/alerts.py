"""Alerts of monitors and their delivery to the monitor's sinks (log, webhook, Prometheus).

A monitor run that breaches (or recovers) becomes an :class:`Alert`; :func:`deliver` hands it
to every sink of the monitor's ``alerts`` list and returns one :class:`Delivery` per sink:

``log``
    one record at the configured level on the ``mlform.monitor`` logger: the summary and the
    run's details as compact JSON.
``webhook``
    ``POST`` of ``alert.to_dict()`` plus ``"source": "mlform"`` as JSON, with the configured
    headers and ``Idempotency-Key``/``X-Mlform-Alert-Id: <alert.id>``. Connection errors,
    timeouts, HTTP 429 and 5xx are retried with exponential backoff (``Retry-After`` honoured,
    capped at 30 s); other statuses are not (redirects are not followed: they would turn the
    POST into a GET and could carry the headers to another host).
``prometheus``
    nothing at run time: Prometheus evaluates the rules of
    :mod:`mlform.monitoring.prometheus_rules` itself.

No duplicates: every attempt of an alert carries the same id, so a receiver that dedups on
``Idempotency-Key`` stores one alert even when a response was lost after it processed the
request; the sender stops at the first 2xx, and a :class:`DeliveryLog` records each delivered
(alert id, sink) pair before :func:`deliver` returns, so a scheduler restarted after a crash
never sends the pair again.

Delivery never raises for a failing sink (the :class:`Delivery` says ``ok=False`` and why), and
header values are never logged nor put in a detail: they are often secrets
(``Authorization: Bearer …``). Webhook URLs are shown without credentials, query or fragment.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["Alert", "Delivery", "DeliveryLog", "deliver", "display_url"]

_LOGGER_NAME = "mlform.monitor"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_MAX_DELAY_S = 30.0  # cap of the backoff and of Retry-After
_JITTER = 0.1  # each backoff delay is stretched by up to 10 %
_BODY_CHARS = 200
_REDACTED = "***"


@dataclass(frozen=True, slots=True)
class Alert:
    """One breach (``firing``) or recovery (``resolved``) of a monitor on a deployment.

    ``id`` is stable for the event: the same breach re-sent keeps the same id (for example
    ``f"{monitor}:{run_id}:{status}"``), which is what receivers dedup on.
    """

    id: str
    monitor: str
    deployment: str
    status: str  # "firing" | "resolved"
    severity: str  # "info" | "warning" | "critical"
    summary: str
    time: str  # ISO 8601 UTC with Z
    action: str  # "alert" | "rollback" | "retrain"
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "deployment": self.deployment,
            "status": self.status,
            "severity": self.severity,
            "summary": self.summary,
            "time": self.time,
            "action": self.action,
            "details": _plain(self.details),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of an alert at one sink."""

    sink: str  # "log" | "webhook <url without query/credentials>" | "prometheus"
    ok: bool
    attempts: int
    detail: str


class DeliveryLog:
    """Which (alert id, sink) pairs were delivered: JSON lines at `path` (append-only, fsync),
    so a scheduler restarted after a crash never sends an alert twice.

    Each line is ``{"alert": <id>, "sink": <sink key>, "time": <ISO 8601>}``. A torn last line
    (a crash in the middle of a write) is ignored. Lines appended by another process (or
    another instance) are picked up on the next :meth:`delivered`. Thread-safe.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pairs: set[tuple[str, str]] = set()
        self._offset = 0

    def delivered(self, alert_id: str, sink: str) -> bool:
        with self._lock:
            self._catch_up()
            return (alert_id, sink) in self._pairs

    def record(self, alert_id: str, sink: str) -> None:
        line = json.dumps(
            {"alert": alert_id, "sink": sink, "time": _utc_now()},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            with self.path.open("ab") as file:
                # After a torn write the file does not end with a newline: start a fresh line.
                if file.tell() > 0 and not _ends_with_newline(self.path):
                    file.write(b"\n")
                file.write(line.encode() + b"\n")
                file.flush()
                os.fsync(file.fileno())
            if created:
                _fsync_dir(self.path.parent)
            self._pairs.add((alert_id, sink))

    def _catch_up(self) -> None:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # only whole lines; a torn tail is read again later
        for raw in data[:end].splitlines():
            try:
                entry = json.loads(raw)
                pair = (str(entry["alert"]), str(entry["sink"]))
            except (ValueError, TypeError, KeyError):
                continue
            self._pairs.add(pair)
        self._offset += end


def deliver(
    alert: Alert,
    sinks: Sequence[Mapping[str, Any]],
    *,
    log: DeliveryLog | None = None,
    logger: logging.Logger | None = None,
    timeout_s: float = 5.0,
    attempts: int = 5,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Delivery, ...]:
    """Hand ``alert`` to each of ``sinks`` (the monitor's ``alerts`` as plain dicts), in order.

    Webhooks get up to ``attempts`` attempts of ``timeout_s`` each; between two, ``sleep`` waits
    ``backoff_s`` × 2^n (0.5, 1, 2, 4 … s, up to 10 % jitter, capped at 30 s) or the
    ``Retry-After`` of a 429/503 (capped at 30 s). A pair already in ``log`` is skipped
    ("already delivered"); a delivered log or webhook pair is recorded in ``log`` before this
    returns. Never raises for a failing sink.
    """
    logger = logger if logger is not None else logging.getLogger(_LOGGER_NAME)
    results: list[Delivery] = []
    for sink in sinks:
        kind = str(sink.get("sink", ""))
        try:
            if kind == "log":
                result = _deliver_log(alert, sink, log=log, logger=logger)
            elif kind == "webhook":
                result = _deliver_webhook(
                    alert,
                    sink,
                    log=log,
                    logger=logger,
                    timeout_s=timeout_s,
                    attempts=max(1, attempts),
                    backoff_s=backoff_s,
                    sleep=sleep,
                )
            elif kind == "prometheus":
                result = Delivery("prometheus", True, 0, "evaluated by Prometheus (rules file)")
            else:
                result = Delivery(kind or "?", False, 0, f"unknown sink kind {kind!r}")
        except Exception as exc:  # a sink must never break the others nor the scheduler
            label = _sink_label(sink)
            detail = _redact(f"{type(exc).__name__}: {exc}", _secrets(sink))
            logger.error("alert %s to %s failed: %s", alert.id, label, detail)
            result = Delivery(label, False, 0, f"failed: {detail}")
        results.append(result)
    return tuple(results)


def display_url(url: str) -> str:
    """``url`` without credentials, query and fragment: what logs and details may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --- log -------------------------------------------------------------------------------------


def _deliver_log(
    alert: Alert, sink: Mapping[str, Any], *, log: DeliveryLog | None, logger: logging.Logger
) -> Delivery:
    if log is not None and log.delivered(alert.id, "log"):
        return Delivery("log", True, 0, "already delivered")
    level_name = str(sink.get("level", "warning")).lower()
    level = _LEVELS.get(level_name, logging.WARNING)
    details = json.dumps(_plain(alert.details), separators=(",", ":"), sort_keys=True)
    logger.log(level, "%s %s", alert.summary, details)
    if log is not None:
        log.record(alert.id, "log")
    return Delivery("log", True, 1, f"logged at {logging.getLevelName(level).lower()}")


# --- webhook ---------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True, slots=True)
class _Attempt:
    ok: bool
    retry: bool
    detail: str
    retry_after: float | None = None


def _deliver_webhook(
    alert: Alert,
    sink: Mapping[str, Any],
    *,
    log: DeliveryLog | None,
    logger: logging.Logger,
    timeout_s: float,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> Delivery:
    url = str(sink.get("url", ""))
    label = _sink_label(sink)
    key = _webhook_key(url)
    secrets = _secrets(sink)
    if log is not None and log.delivered(alert.id, key):
        return Delivery(label, True, 0, "already delivered")
    request_url, headers = _request_parts(url, sink.get("headers") or {})
    headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = alert.id
    headers["X-Mlform-Alert-Id"] = alert.id
    body = json.dumps({**alert.to_dict(), "source": "mlform"}, separators=(",", ":")).encode()

    outcome = _Attempt(False, False, "not attempted")
    made = 0
    for number in range(1, attempts + 1):
        made = number
        outcome = _post(request_url, body, headers, timeout_s)
        detail = _redact(outcome.detail, secrets)
        if outcome.ok:
            if log is not None:
                log.record(alert.id, key)
            logger.info("alert %s delivered to %s (attempt %d)", alert.id, label, number)
            return Delivery(label, True, number, detail)
        if not outcome.retry:
            logger.warning("alert %s to %s: %s", alert.id, label, detail)
            return Delivery(label, False, number, detail)
        if number == attempts:
            break
        delay = outcome.retry_after
        if delay is None:
            delay = backoff_s * 2 ** (number - 1)
            delay += delay * random.uniform(0.0, _JITTER)
        delay = min(max(delay, 0.0), _MAX_DELAY_S)
        logger.info(
            "alert %s to %s: attempt %d failed (%s); retrying in %.2fs",
            alert.id,
            label,
            number,
            detail,
            delay,
        )
        sleep(delay)
    detail = f"gave up after {made} attempts: {_redact(outcome.detail, secrets)}"
    logger.warning("alert %s to %s: %s", alert.id, label, detail)
    return Delivery(label, False, made, detail)


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> _Attempt:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            status = int(response.status)
            response.read()
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        try:
            text = exc.read(4096).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = ""
        finally:
            exc.close()
        snippet = " ".join(text.split())[:_BODY_CHARS]
        if status == 429 or status >= 500:
            detail = f"HTTP {status}" + (f": {snippet}" if snippet else "")
            retry_after = exc.headers.get("Retry-After") if exc.headers is not None else None
            return _Attempt(False, True, detail, _retry_after(retry_after))
        why = "redirects are not followed" if 300 <= status < 400 else "not retried"
        detail = f"HTTP {status} ({why})" + (f": {snippet}" if snippet else "")
        return _Attempt(False, False, detail)
    except TimeoutError:
        return _Attempt(False, True, f"timed out after {timeout_s:g}s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return _Attempt(False, True, f"timed out after {timeout_s:g}s")
        return _Attempt(False, True, _describe_error(reason))
    except (OSError, http.client.HTTPException) as exc:
        return _Attempt(False, True, _describe_error(exc))
    if 200 <= status < 300:
        return _Attempt(True, False, f"delivered (HTTP {status})")
    return _Attempt(False, False, f"HTTP {status} (not retried)")


def _describe_error(error: object) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, BaseException):
        text = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return f"{type(error).__name__}: {text}"
    return str(error)


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_DELAY_S)


def _request_parts(url: str, configured: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The URL urllib can open (credentials moved to a Basic ``Authorization``) and headers."""
    headers = {str(name): str(value) for name, value in configured.items()}
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, headers
    netloc = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    if not any(name.lower() == "authorization" for name in headers):
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return clean, headers


def _webhook_key(url: str) -> str:
    """The DeliveryLog key of a webhook: its label, plus a digest when the URL has more
    (query, credentials) so that two webhooks differing only there stay apart."""
    label = f"webhook {display_url(url)}"
    if display_url(url) == url:
        return label
    return f"{label} #{hashlib.sha256(url.encode()).hexdigest()[:12]}"


# --- helpers ---------------------------------------------------------------------------------


def _sink_label(sink: Mapping[str, Any]) -> str:
    kind = str(sink.get("sink", ""))
    if kind == "webhook":
        return f"webhook {display_url(str(sink.get('url', '')))}"
    return kind or "?"


def _secrets(sink: Mapping[str, Any]) -> list[str]:
    """Values that must never appear in a log or a detail: header values and credentials."""
    values = [str(v) for v in (sink.get("headers") or {}).values()]
    url = str(sink.get("url", ""))
    parts = urlsplit(url)
    values += [v for v in (parts.password, parts.username, parts.query) if v]
    if url != display_url(url):
        values.append(url)
    for value in list(values):  # a bearer token alone, without its scheme
        scheme, _, credential = value.partition(" ")
        if credential and scheme.isalpha():
            values.append(credential)
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def _plain(value: Any) -> Any:
    """A JSON-able copy of ``value`` (mappings to dicts, sequences to lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
