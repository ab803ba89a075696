"""Prometheus alerting rules for monitors with a ``prometheus`` sink.

Prometheus evaluates these rules itself; nothing is sent at run time
(:func:`mlform.monitoring.alerts.deliver` reports the sink as "evaluated by Prometheus").

What each monitor type becomes (``<name>`` is the deployment's served model name, the ``model``
label of ``mlform serve``'s metrics, see :mod:`mlform.serving.metrics`)::

    latency      histogram_quantile(<quantile>, sum by (le) (rate(
                     http_request_duration_seconds_bucket{model="<name>",endpoint="infer"}[<w>]
                 ))) > <threshold in seconds>
    error_rate   sum(rate(http_request_duration_seconds_count{model="<name>",endpoint="infer",
                     status=~"5.."}[<w>]))
                 / sum(rate(http_request_duration_seconds_count{model="<name>",
                     endpoint="infer"}[<w>])) > <threshold>
    data_drift, prediction_drift, performance (computed by the monitor scheduler):
                 max(mlform_monitor_breached{monitor="<monitor>",deployment="<deployment>",
                                             project="<project>",stack="<stack>"}) == 1
                 and a staleness rule ``MlformMonitorStale<Name>`` (below)

Choices:

* ``<w>``, the rate window, is the monitor's ``window.duration`` in Prometheus syntax
  (``"90s"`` → ``1m30s``, ``"1.5h"`` → ``1h30m``, ``"500ms"`` → ``500ms``). A count window
  (``window: {size: N}``) has no Prometheus equivalent: the schedule's ``every`` is used, the
  span the scheduler itself would look at between two runs. Either way the window is at least
  ``1m``: ``rate()`` needs two samples in it (four scrape intervals to be robust), and shorter
  windows would leave the rule empty, i.e. never firing, under the usual 15 s scrape interval.
* ``for``: the latency and error-rate rules must hold for one schedule period (``every``)
  before firing, like a breach seen by a scheduled run, so a single slow scrape does not page.
  The scheduler-computed rules use ``for: 0m``: the gauge already summarises a whole window,
  and waiting would only delay the alert by another run.
* Staleness (scheduler-computed monitors only): ``MlformMonitorStale<Name>`` fires when the
  scheduler has not run for ``max(3 × every, 5m)``: either its last-run timestamp is that old
  (a hung scheduler) or no sample of it arrived for that long (a dead scheduler, whose series
  Prometheus marks stale, so the first test alone would go silent). The 5m floor keeps the
  absence check clear of the scrape interval. Its severity is ``warning`` at most.
* Labels: ``severity`` (of the sink), ``monitor``, ``deployment``, ``project``, ``stack`` and
  ``action`` (what mlform does on breach: alert, rollback, retrain). One rule per distinct
  severity when a monitor has several prometheus sinks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mlform.spec.base import parse_duration

__all__ = ["alert_name", "monitor_rules", "prometheus_duration", "render_rules"]

_MIN_RATE_WINDOW_S = 60.0
_MIN_STALE_S = 300.0
_SCHEDULER_TYPES = ("data_drift", "prediction_drift", "performance")
_P_VALUE_METHODS = ("ks", "chi2", "ztest")
_RULE_KEYS = ("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_ACTIONS = {
    "alert": "mlform only alerts (no automatic action)",
    "rollback": "mlform rolls the deployment back to its previous model version",
    "retrain": "mlform starts a retraining of the deployment's model",
}


def monitor_rules(
    monitor: str,
    config: Mapping[str, Any],
    *,
    deployment_model_name: str,
    project: str,
    stack: str,
) -> list[dict[str, Any]]:
    """The alerting rules (Prometheus rule format) of one monitor; [] without a prometheus sink.

    ``config`` is the monitor's config as ``MonitorSpec.model_dump()`` gives it;
    ``deployment_model_name`` is the ``model`` label of the deployment's server metrics.
    """
    severities: list[str] = []
    for sink in config.get("alerts") or ():
        if sink.get("sink") == "prometheus":
            severity = str(sink.get("severity") or "warning")
            if severity not in severities:
                severities.append(severity)
    if not severities:
        return []

    kind = str(config.get("type", ""))
    deployment = str(config.get("deployment", ""))
    action = str(config.get("on_breach") or "alert")
    every = str((config.get("schedule") or {}).get("every") or "5m")
    every_s = parse_duration(every)
    name = alert_name(monitor)
    base_labels = {
        "monitor": monitor,
        "deployment": deployment,
        "project": project,
        "stack": stack,
        "action": action,
    }
    runbook = f"Runbook: `mlform monitor history {monitor}`."
    on_breach = f"On breach {_ACTIONS.get(action, f'mlform does {action!r}')}."

    if kind in ("latency", "error_rate"):
        window = _rate_window(config, every_s)
        selector = _selector(model=deployment_model_name, endpoint="infer")
        if kind == "latency":
            quantile = float(config.get("quantile") or 0.99)
            threshold = config.get("threshold") or "500ms"
            threshold_s = parse_duration(str(threshold))
            expr = (
                f"histogram_quantile({_number(quantile)}, sum by (le) (rate("
                f"http_request_duration_seconds_bucket{selector}[{window}]))) "
                f"> {_number(threshold_s)}"
            )
            what = f"p{_number(quantile * 100)} latency"
            summary = f"monitor.{monitor}: {what} of deployment {deployment} is above {threshold}"
            value = "{{ $value | humanizeDuration }}"
            limit = f"{threshold} ({_number(threshold_s)} s)"
        else:
            raw = config.get("threshold")
            rate = 0.01 if raw is None else float(raw)
            errors = _selector(model=deployment_model_name, endpoint="infer", status=("=~", "5.."))
            expr = (
                f"sum(rate(http_request_duration_seconds_count{errors}[{window}])) / "
                f"sum(rate(http_request_duration_seconds_count{selector}[{window}])) "
                f"> {_number(rate)}"
            )
            what = "5xx error rate of infer requests"
            summary = f"monitor.{monitor}: {what} of deployment {deployment} is above {rate:.4g}"
            value = "{{ $value | humanizePercentage }}"
            limit = f"{_number(rate)} ({rate * 100:.4g} %)"
        description = (
            f"The {what} of deployment {deployment} (model {deployment_model_name!r}) over "
            f"{window} is {value}, above the threshold {limit} for {prometheus_duration(every)}. "
            f"{on_breach} {runbook}"
        )
        return [
            _rule(
                name,
                expr,
                prometheus_duration(every),
                {**base_labels, "severity": severity},
                summary,
                description,
            )
            for severity in severities
        ]

    if kind not in _SCHEDULER_TYPES:
        raise ValueError(f"monitor {monitor!r}: no Prometheus rule for monitor type {kind!r}")
    ids = _selector(monitor=monitor, deployment=deployment, project=project, stack=stack)
    breach = _breach_text(kind, config)
    summary = f"monitor.{monitor} breached on deployment {deployment}: {breach}"
    description = (
        f"The {kind} monitor {monitor} on deployment {deployment} reported a breach "
        f"({breach}) in its last run (computed by the mlform monitor scheduler every "
        f"{prometheus_duration(every)} over {_window_text(config)}). {on_breach} {runbook}"
    )
    rules = [
        _rule(
            name,
            f"max(mlform_monitor_breached{ids}) == 1",
            "0m",
            {**base_labels, "severity": severity},
            summary,
            description,
        )
        for severity in severities
    ]
    stale_s = max(3 * every_s, _MIN_STALE_S)
    stale = prometheus_duration(stale_s)
    stale_severity = min(severities, key=lambda s: _SEVERITY_RANK.get(s, 1))
    if _SEVERITY_RANK.get(stale_severity, 1) > _SEVERITY_RANK["warning"]:
        stale_severity = "warning"
    rules.append(
        _rule(
            alert_name(monitor, prefix="MlformMonitorStale"),
            f"(time() - max(mlform_monitor_last_run_timestamp_seconds{ids}) > "
            f"{_number(stale_s)}) or "
            f"absent_over_time(mlform_monitor_last_run_timestamp_seconds{ids}[{stale}])",
            "0m",
            {**base_labels, "severity": stale_severity},
            f"monitor.{monitor} has not run for {stale}",
            f"The mlform monitor scheduler has not run monitor {monitor} (deployment "
            f"{deployment}, every {prometheus_duration(every)}) for over {stale}: it is down, "
            f"hung or failing, and breaches go unnoticed. Check the scheduler's log. {runbook}",
        )
    )
    return rules


def render_rules(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """A Prometheus rules file: ``{"groups": [{"name": group, "rules": [...]}]}`` as YAML.

    Deterministic: groups sorted by name, rules in the given order, each rule's keys in the
    conventional order (alert, expr, for, labels, annotations) and label/annotation keys sorted.
    """
    document = {
        "groups": [
            {"name": group, "rules": [_ordered_rule(rule) for rule in groups[group]]}
            for group in sorted(groups)
        ]
    }
    text: str = yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1_000_000
    )
    return "# Generated by mlform from the monitors' prometheus sinks; do not edit.\n" + text


def alert_name(monitor: str, *, prefix: str = "Mlform") -> str:
    """A valid Prometheus alert name: ``diagnosis-drift`` → ``MlformDiagnosisDrift``."""
    parts = [part for part in re.split(r"[^A-Za-z0-9]+", monitor) if part]
    name = prefix + "".join(part[0].upper() + part[1:] for part in parts)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        name = "_" + name
    return name


def prometheus_duration(value: str | float) -> str:
    """A duration (mlform syntax or seconds) in Prometheus syntax: ``"90s"`` → ``"1m30s"``.

    Prometheus wants integer units from largest to smallest; sub-millisecond parts round.
    """
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a non-negative duration")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in _UNITS:
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _rate_window(config: Mapping[str, Any], every_s: float) -> str:
    window = config.get("window") or {}
    duration = window.get("duration")
    seconds = parse_duration(str(duration)) if duration else every_s
    return prometheus_duration(max(seconds, _MIN_RATE_WINDOW_S))


def _window_text(config: Mapping[str, Any]) -> str:
    window = config.get("window") or {}
    if window.get("duration"):
        return f"the last {window['duration']}"
    if window.get("size"):
        return f"the last {window['size']} rows"
    return "its window"


def _breach_text(kind: str, config: Mapping[str, Any]) -> str:
    threshold = config.get("threshold")
    columns = list(config.get("columns") or ())
    on = f" on {', '.join(columns)}" if columns else ""
    if kind == "performance":
        metric = config.get("metric") or "the metric"
        limit = f" (threshold {threshold})" if threshold is not None else ""
        return f"{metric} against delayed labels crossed its threshold{limit}"
    method = str(config.get("method") or "auto")
    subject = "predictions" if kind == "prediction_drift" else "data"
    if threshold is None:
        return f"{subject} drift{on} ({method}, default thresholds)"
    if method in _P_VALUE_METHODS:
        return f"{subject} drift{on}: {method} p-value below {_number(float(threshold))}"
    return f"{subject} drift{on}: {method} above {_number(float(threshold))}"


def _rule(
    name: str,
    expr: str,
    for_: str,
    labels: Mapping[str, str],
    summary: str,
    description: str,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": dict(sorted(labels.items())),
        "annotations": {"description": description, "summary": summary},
    }


def _ordered_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    keys = [k for k in _RULE_KEYS if k in rule] + sorted(k for k in rule if k not in _RULE_KEYS)
    out: dict[str, Any] = {}
    for key in keys:
        value = rule[key]
        if isinstance(value, Mapping):
            value = {str(k): str(v) for k, v in sorted(value.items())}
        out[key] = value
    return out


def _selector(**matchers: str | tuple[str, str]) -> str:
    """``{a="x",b=~"y"}`` with values quoted as PromQL strings."""
    parts = []
    for label, matcher in matchers.items():
        op, value = matcher if isinstance(matcher, tuple) else ("=", matcher)
        parts.append(f"{label}{op}{json.dumps(value)}")
    return "{" + ",".join(parts) + "}"


def _number(value: float) -> str:
    """A PromQL number literal: ``0.5``, ``1``, ``99.9``, ``1e-05``."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(round(value, 12))
