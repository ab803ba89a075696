"""The monitor scheduler: one process per monitor on the local target, run by Pulumi.

``python -m mlform.monitoring.scheduler --spec <state dir>/monitors/<name>/spec.json
--port PORT`` runs the monitor at start and then every ``schedule.every``: prunes the
deployment's prediction logs past their retention, measures (:func:`run_monitor`),
alerts and acts (:func:`act`), and appends the run to the monitor's history. It serves
``GET /-/health`` (what the engine's health check and ``mlform refresh`` probe) and
``GET /metrics`` for Prometheus::

    mlform_monitor_breached{monitor,deployment,project,stack}   1 while breached, else 0
    mlform_monitor_value{…,column}                              the statistic judged
                                                                (column "" for the monitor's
                                                                own value)
    mlform_monitor_last_run_timestamp_seconds{…}
    mlform_monitor_runs_total{…,status}

A run holds ``<monitor dir>/run.lock`` so the scheduler and ``mlform monitor run`` never
judge the same monitor at once. SIGTERM lets the current run finish, then exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlform.monitoring.actions import Rollback, RollbackOutcome, act
from mlform.monitoring.history import MonitorHistory, MonitorRun, RunStatus
from mlform.monitoring.job import MonitorJob
from mlform.monitoring.runner import run_monitor

__all__ = ["main", "run_once"]

log = logging.getLogger("mlform.monitor")


@contextlib.contextmanager
def run_lock(job: MonitorJob) -> Iterator[None]:
    job.directory.mkdir(parents=True, exist_ok=True)
    with (job.directory / "run.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def run_once(
    job: MonitorJob,
    *,
    rollback: Rollback | None,
    now: float | None = None,
    deliver_alerts: bool = True,
) -> MonitorRun:
    """One scheduled (or on-demand) run, recorded in the monitor's history."""
    from mlform.monitoring.window import retention_prune

    with run_lock(job):
        if job.type in ("data_drift", "prediction_drift", "performance"):
            with contextlib.suppress(OSError):
                retention_prune(job.predictions_dir, job.retention_s, now=now)
        history = MonitorHistory(job.state_dir, job.name)
        previous = history.last_judged()
        run = run_monitor(job, now=now)
        run = act(job, run, previous, rollback=rollback, deliver_alerts=deliver_alerts)
        history.append(run)
        return run


def api_rollback(job: MonitorJob, run: MonitorRun) -> RollbackOutcome:
    """Roll the deployment back through ``mlform.api`` (under the state lock)."""
    from mlform import api
    from mlform.errors import MlformError, StateLockedError

    try:
        action = api.monitor_rollback(
            job.deployment, run.breach_reason(), job.project_dir, job.stack_arg, lock_timeout=30.0
        )
    except StateLockedError:
        return RollbackOutcome(False, "deferred: an apply holds the state lock; next run retries")
    except MlformError as exc:
        return RollbackOutcome(True, f"not rolled back: {exc}")
    return RollbackOutcome(True, action.record.message)


class _Gauges:
    def __init__(self, job: MonitorJob) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        labels = ("monitor", "deployment", "project", "stack")
        self.labels = {
            "monitor": job.name,
            "deployment": job.deployment,
            "project": job.project,
            "stack": job.stack,
        }
        self.breached = Gauge(
            "mlform_monitor_breached",
            "1 while the monitor is breached",
            labels,
            registry=self.registry,
        )
        self.value = Gauge(
            "mlform_monitor_value",
            "The statistic the monitor judged (per column for drift monitors)",
            (*labels, "column"),
            registry=self.registry,
        )
        self.last_run = Gauge(
            "mlform_monitor_last_run_timestamp_seconds",
            "When the monitor last ran",
            labels,
            registry=self.registry,
        )
        self.runs = Counter(
            "mlform_monitor_runs",
            "Monitor runs by outcome",
            (*labels, "status"),
            registry=self.registry,
        )
        self.breached.labels(**self.labels).set(0)

    def record(self, run: MonitorRun) -> None:
        self.runs.labels(**self.labels, status=run.status).inc()
        self.last_run.labels(**self.labels).set(time.time())
        if run.status in (RunStatus.OK, RunStatus.BREACHED):
            self.breached.labels(**self.labels).set(1 if run.breached else 0)
            if run.value is not None:
                self.value.labels(**self.labels, column="").set(run.value)
            for column in run.details.get("columns") or ():
                if isinstance(column, dict) and column.get("score") is not None:
                    name = str(column.get("column"))
                    self.value.labels(**self.labels, column=name).set(float(column["score"]))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _handler(gauges: _Gauges) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/-/health":
                body, kind = b'{"ok":true}', "application/json"
            elif self.path == "/metrics":
                body, kind = gauges.render(), "text/plain; version=0.0.4"
            else:
                self.send_error(404, "try /-/health or /metrics")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: health checks come every few seconds

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlform.monitoring.scheduler")
    parser.add_argument("--spec", required=True, type=Path, help="the monitor's spec.json")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    # The monitor config's digest: not read, it makes a config change restart the process.
    parser.add_argument("--config-digest", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        job = MonitorJob.read(args.spec)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"error: cannot read the monitor spec {args.spec}: {exc}\n")
        return 2
    gauges = _Gauges(job)
    server = ThreadingHTTPServer((args.host, args.port), _handler(gauges))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="monitor-http", daemon=True).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: stop.set())
    log.info(
        "monitor.%s watching deployment.%s every %gs (metrics on %s:%d)",
        job.name,
        job.deployment,
        job.every_s,
        args.host,
        server.server_address[1],
    )
    while not stop.is_set():
        try:
            run = run_once(job, rollback=api_rollback)
        except Exception:  # a failed run must not stop the schedule
            log.exception("monitor.%s: the run failed", job.name)
        else:
            gauges.record(run)
            log.info("monitor.%s %s: %s", job.name, run.status, run.reason)
        stop.wait(job.every_s)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
