"""Webhook alerts against a real HTTP receiver on 127.0.0.1 that dedups on Idempotency-Key.

The receiver records every attempt and stores each alert once per key, like a well-behaved
alert endpoint: retries (5xx, 429, a response lost to a client timeout) must never produce a
second alert, and a delivered alert is never sent again, even by a new process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlform.monitoring.alerts import Alert, DeliveryLog, deliver

pytestmark = pytest.mark.integration

TOKEN = "Bearer whk-9f8e7d6c5b4a"


@dataclass
class Step:
    """How the receiver answers one attempt."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'
    stall: bool = False  # store the alert, then hold the response until the test ends


@dataclass
class Receiver:
    url: str
    script: list[Step]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> Step:
        with self.lock:
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            self.attempts.append({"headers": headers, "body": body})
            key = headers.get("idempotency-key", "")
            if step.status < 300 and key not in self.alerts:
                self.alerts[key] = json.loads(body)
        return step


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver = self.server.receiver
        step = receiver.handle(headers, body)
        if step.stall:
            receiver.release.wait(30)
        try:
            self.send_response(step.status)
            for name, value in step.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(step.body)))
            self.end_headers()
            self.wfile.write(step.body)
        except OSError:  # the client gave up on this attempt
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    host, port = server.server_address[:2]
    server.receiver = Receiver(url=f"http://{host!s}:{port}/hooks/alerts?tenant=t1", script=[])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.receiver
    finally:
        server.receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _alert(status: str = "firing") -> Alert:
    return Alert(
        id=f"diagnosis-drift:run-42:{status}",
        monitor="diagnosis-drift",
        deployment="diagnosis-api",
        status=status,
        severity="critical",
        summary="monitor.diagnosis-drift breached at 2026-11-24T02:00:00Z "
        "(psi 0.31 > 0.1 on column mean_radius)",
        time="2026-11-24T02:00:00Z",
        action="rollback",
        details={"method": "psi", "threshold": 0.1, "values": {"mean_radius": 0.31}},
    )


def _sink(receiver: Receiver, **headers: str) -> dict[str, Any]:
    return {"sink": "webhook", "url": receiver.url, "headers": headers}


def _label(receiver: Receiver) -> str:
    return "webhook " + receiver.url.split("?")[0]


def test_delivered_first_time(receiver: Receiver) -> None:
    receiver.script[:] = [Step(200)]
    (result,) = deliver(_alert(), [_sink(receiver)], sleep=Sleeps())
    assert (result.sink, result.ok, result.attempts) == (_label(receiver), True, 1)
    assert result.detail == "delivered (HTTP 200)"
    assert len(receiver.attempts) == 1
    assert list(receiver.alerts) == [_alert().id]
    stored = receiver.alerts[_alert().id]
    assert stored == {**_alert().to_dict(), "source": "mlform"}
    headers = receiver.attempts[0]["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == headers["x-mlform-alert-id"] == _alert().id


def test_503s_then_200_is_one_alert_and_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.script[:] = [
        Step(503, {"Retry-After": "3"}, b"overloaded"),
        Step(503, {"Retry-After": "7"}, b"overloaded"),
        Step(200),
    ]
    sleeps = Sleeps()
    (result,) = deliver(_alert(), [_sink(receiver)], backoff_s=0.01, sleep=sleeps)
    assert result.ok and result.attempts == 3
    assert sleeps == [3.0, 7.0]
    assert len(receiver.attempts) == 3
    assert len(receiver.alerts) == 1
    keys = {a["headers"]["idempotency-key"] for a in receiver.attempts}
    assert keys == {_alert().id}


def test_response_lost_to_a_timeout_is_retried_under_the_same_key(receiver: Receiver) -> None:
    # The first attempt is processed (stored) but its response never arrives in time.
    receiver.script[:] = [Step(200, stall=True), Step(200)]
    sleeps = Sleeps()
    (result,) = deliver(_alert(), [_sink(receiver)], timeout_s=2.0, backoff_s=0.01, sleep=sleeps)
    assert result.ok and result.attempts == 2
    assert len(sleeps) == 1
    assert len(receiver.attempts) == 2
    assert [a["headers"]["idempotency-key"] for a in receiver.attempts] == [_alert().id] * 2
    assert len(receiver.alerts) == 1


def test_400_is_not_retried(receiver: Receiver) -> None:
    receiver.script[:] = [Step(400, body=b'{"error": "unknown field severity"}')]
    sleeps = Sleeps()
    (result,) = deliver(_alert(), [_sink(receiver)], sleep=sleeps)
    assert not result.ok and result.attempts == 1
    assert result.detail == 'HTTP 400 (not retried): {"error": "unknown field severity"}'
    assert sleeps == [] and len(receiver.attempts) == 1 and receiver.alerts == {}


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.script[:] = [Step(307, {"Location": "http://127.0.0.1:9/elsewhere"}, b"")]
    (result,) = deliver(_alert(), [_sink(receiver, Authorization=TOKEN)], sleep=Sleeps())
    assert not result.ok and result.attempts == 1
    assert result.detail == "HTTP 307 (redirects are not followed)"


def test_connection_refused_fails_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    sink = {"sink": "webhook", "url": f"http://127.0.0.1:{port}/hook", "headers": {}}
    (result,) = deliver(_alert(), [sink], attempts=4, backoff_s=0.01, sleep=sleeps)
    assert not result.ok and result.attempts == 4
    assert result.detail == "gave up after 4 attempts: connection refused"
    assert len(sleeps) == 3
    assert "gave up after 4 attempts" in caplog.text


def test_a_delivered_alert_is_never_sent_again(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script[:] = [Step(200)]
    path = tmp_path / "monitor-state" / "deliveries.jsonl"
    (first,) = deliver(_alert(), [_sink(receiver)], log=DeliveryLog(path))
    assert first.ok
    (again,) = deliver(_alert(), [_sink(receiver)], log=DeliveryLog(path))
    assert (again.ok, again.attempts, again.detail) == (True, 0, "already delivered")
    assert len(receiver.attempts) == 1
    # A new process (a scheduler restarted after a crash) does not send it either...
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from mlform.monitoring.alerts import Alert, DeliveryLog, deliver\n"
        "alert = Alert(**json.loads(sys.argv[1]))\n"
        "(r,) = deliver(alert, [json.loads(sys.argv[2])], log=DeliveryLog(Path(sys.argv[3])))\n"
        "print(json.dumps([r.ok, r.attempts, r.detail]))\n"
    )
    args = [json.dumps(_alert().to_dict()), json.dumps(_sink(receiver)), str(path)]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout) == [True, 0, "already delivered"]
    assert len(receiver.attempts) == 1
    # ...while the recovery of the same breach is a new event.
    (resolved,) = deliver(_alert("resolved"), [_sink(receiver)], log=DeliveryLog(path))
    assert resolved.ok and resolved.attempts == 1
    assert len(receiver.alerts) == 2


def test_headers_reach_the_receiver_and_never_the_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    receiver.script[:] = [Step(500, body=b"oops"), Step(200)]
    sink = _sink(receiver, Authorization=TOKEN, **{"X-Team": "ml-platform"})
    (result,) = deliver(_alert(), [sink], backoff_s=0.01, sleep=Sleeps())
    assert result.ok and result.attempts == 2
    for attempt in receiver.attempts:
        assert attempt["headers"]["authorization"] == TOKEN
        assert attempt["headers"]["x-team"] == "ml-platform"
    assert caplog.records
    assert "whk-9f8e7d6c5b4a" not in caplog.text
    assert "tenant=t1" not in caplog.text and "tenant=t1" not in result.sink
