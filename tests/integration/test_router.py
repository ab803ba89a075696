"""The traffic router as a real process in front of real (tiny) HTTP upstreams.

Upstreams are aiohttp apps served from one background event-loop thread in the test
process; each answers any path with its own name and counts what it got, and can be told
to fail (status) or to be slow (delay), or be stopped (connection refused). The router runs
as ``python -m mlform.serving.router`` subprocesses, changed only through its admin API.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mlform.serving.router_client import (
    StaleRoutesError,
    get_routes,
    put_routes,
    router_live,
)
from mlform.serving.routes import RouteError, RouteTable

pytestmark = pytest.mark.integration

# Guards against hangs only; no test asserts on elapsed time.
STARTUP_DEADLINE = 60.0
INFER = "/v2/models/m/infer"


# -- upstreams ------------------------------------------------------------------------------


def run_async(coro: Any) -> Any:
    """Run ``coro`` on a loop of its own, leaving the thread's current loop alone
    (``asyncio.run`` leaves none, which breaks Pulumi's mocks later in the process)."""
    # A Runner with a loop factory cleans up like asyncio.run (pending tasks cancelled,
    # async generators closed) but never sets the thread's current loop.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


class UpstreamFarm:
    """An event loop in a thread that serves any number of fake upstreams."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=120)

    def start(self, name: str, version: str | None = None) -> FakeUpstream:
        upstream = FakeUpstream(name, version, self)
        self.run(upstream.start())
        return upstream

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class FakeUpstream:
    name: str
    version: str | None
    farm: UpstreamFarm
    status: int = 200
    delay: float = 0.0
    count: int = 0
    inflight: int = 0
    mirrored: int = 0
    port: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        if self.version is not None:
            out["version"] = self.version
        return out

    async def handle(self, request: web.Request) -> web.Response:
        self.count += 1
        if request.headers.get("X-Mlform-Mirror") == "true":
            self.mirrored += 1
        self.inflight += 1
        try:
            body = await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            self.last = {
                "method": request.method,
                "path": request.raw_path,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            }
            payload = {"upstream": self.name, "method": request.method, "path": request.raw_path}
            return web.json_response(
                payload, status=self.status, headers={"X-Upstream-Custom": self.name}
            )
        finally:
            self.inflight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=30)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def stop(self) -> None:
        if self.runner is not None:
            self.farm.run(self.runner.cleanup())
            self.runner = None

    def reset(self) -> None:
        self.count = self.mirrored = 0
        self.status = 200
        self.delay = 0.0


@pytest.fixture(scope="module")
def farm() -> Iterator[UpstreamFarm]:
    f = UpstreamFarm()
    yield f
    f.close()


@pytest.fixture
def ups(farm: UpstreamFarm) -> Iterator[dict[str, FakeUpstream]]:
    """Three fresh upstreams a (version 1), b (version 2) and c (version 3)."""
    started = {n: farm.start(n, v) for n, v in (("a", "1"), ("b", "2"), ("c", "3"))}
    yield started
    for up in started.values():
        up.stop()


# -- the router process ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def upstream(self) -> str | None:
        return self.headers.get("x-mlform-upstream")


class Client:
    """A keep-alive HTTP/1.1 client of one port (http.client; one thread at a time)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self,
        method: str = "POST",
        path: str = INFER,
        body: bytes | str | None = b"{}",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except Exception:
            self.conn.close()
            raise
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RouterProcess:
    def __init__(self, routes: Path, log: Path, *extra: str) -> None:
        self.routes = routes
        self.log = log
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None
        self._generation = itertools.count(1)

    def start(self) -> RouterProcess:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlform.serving.router",
                    "--port",
                    str(self.port),
                    "--routes",
                    str(self.routes),
                    "--name",
                    "test",
                    *self.extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not router_live(self.url, timeout=1.0):
            if self.proc.poll() is not None:
                pytest.fail(f"router exited {self.proc.returncode}: {self.log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"router never became live: {self.log.read_text()}")
            time.sleep(0.05)
        self.client = Client(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.client is not None:
            self.client.close()
            self.client = None
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.client is not None:
            self.client.close()

    def request(self, *args: Any, **kwargs: Any) -> Reply:
        assert self.client is not None
        return self.client.request(*args, **kwargs)

    def put(self, ups: dict[str, FakeUpstream], split: dict[str, int], **rest: Any) -> RouteTable:
        current = get_routes(self.url)
        table = {
            "generation": max(next(self._generation), current.generation + 1),
            "upstreams": {name: up.spec() for name, up in ups.items()},
            "split": split,
            **rest,
        }
        return put_routes(self.url, table, timeout=10)

    def metrics_text(self) -> str:
        with Client(self.port) as client:
            reply = client.request("GET", "/-/metrics", body=None)
        assert reply.status == 200
        return reply.body.decode()

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    tmp = tmp_path_factory.mktemp("router")
    proc = RouterProcess(tmp / "routes.json", tmp / "router.log").start()
    yield proc
    proc.kill()


@pytest.fixture
def own_router(tmp_path: Path) -> Iterator[Any]:
    """A factory of routers for one test (restarts, signals, options); all killed after."""
    made: list[RouterProcess] = []

    def make(*extra: str, routes: Path | None = None) -> RouterProcess:
        proc = RouterProcess(routes or tmp_path / "routes.json", tmp_path / "router.log", *extra)
        made.append(proc)
        return proc.start()

    yield make
    for proc in made:
        proc.kill()


def send(router: RouterProcess, n: int, **kwargs: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        reply = router.request(**kwargs)
        assert reply.status == 200, reply.body
        name = reply.json()["upstream"]
        assert reply.upstream == name
        seen[name] += 1
    return seen


def wait_for(predicate: Any, what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- routing ---------------------------------------------------------------------------------


def test_health_and_empty_table(own_router: Any) -> None:
    r = own_router()
    health = r.request("GET", "/-/health", body=None)
    assert (health.status, health.json()) == (200, {"live": True})
    assert get_routes(r.url) == RouteTable.empty()
    reply = r.request()
    assert reply.status == 503
    assert reply.json()["error"].startswith("no route: ")


def test_weight_split_90_10(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    stored = router.put(ups, {"a": 90, "b": 10})
    assert stored.split == {"a": 90, "b": 10}
    seen = send(router, 1_000)
    assert 820 <= seen["a"] <= 970, seen
    assert 30 <= seen["b"] <= 180, seen
    assert ups["a"].count == seen["a"] and ups["b"].count == seen["b"]
    assert ups["c"].count == 0


def test_empty_split_gets_503(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {})
    reply = router.request()
    assert reply.status == 503
    assert "no route" in reply.json()["error"]
    assert sum(up.count for up in ups.values()) == 0


def test_request_and_response_pass_through(
    router: RouterProcess, ups: dict[str, FakeUpstream]
) -> None:
    router.put(ups, {"a": 100})
    reply = router.request(
        "PUT",
        "/some/path?x=1&y=%20z",
        body=b'{"inputs": []}',
        headers={
            "Content-Type": "application/json",
            "X-Custom": "yes",
            "Connection": "keep-alive, X-Drop",
            "X-Drop": "hop",
            "Proxy-Authorization": "secret",
        },
    )
    assert reply.status == 200
    got = ups["a"].last
    assert got["method"] == "PUT"
    assert got["path"] == "/some/path?x=1&y=%20z"
    assert got["body"] == '{"inputs": []}'
    sent = {k.lower(): v for k, v in got["headers"].items()}
    assert sent["x-custom"] == "yes"
    assert sent["content-type"] == "application/json"
    assert "x-drop" not in sent and "proxy-authorization" not in sent
    assert reply.headers["x-upstream-custom"] == "a"
    assert reply.headers["x-mlform-upstream"] == "a"
    assert reply.headers["content-type"].startswith("application/json")

    ups["a"].status = 404
    missing = router.request("GET", "/v2/models/nope", body=None)
    assert missing.status == 404 and missing.json()["upstream"] == "a"


def test_header_routing(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {"a": 100, "b": 0}, route_by="header", key="X-Variant")
    assert send(router, 20, headers={"X-Variant": "b"}) == {"b": 20}
    assert send(router, 20, headers={"x-variant": "c"}) == {"c": 20}
    assert send(router, 20, headers={"X-Variant": "unknown"}) == {"a": 20}
    assert send(router, 20) == {"a": 20}


def test_hash_routing_is_sticky(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    table = router.put(ups, {"a": 50, "b": 50}, route_by="hash", key="X-User")
    seen: Counter[str] = Counter()
    for i in range(200):
        user = f"user-{i}"
        names = send(router, 3, headers={"X-User": user})
        assert len(names) == 1, (user, names)
        (name,) = names
        expected = table.by_hash(user)
        assert expected is not None and name == expected.name
        seen[name] += 1
    assert seen["a"] >= 50 and seen["b"] >= 50, seen
    # Without the key header: by weight.
    assert set(send(router, 50)) <= {"a", "b"}


def test_version_paths(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {"a": 100})
    for version, name in (("1", "a"), ("2", "b"), ("3", "c")):
        reply = router.request(path=f"/v2/models/m/versions/{version}/infer")
        assert reply.status == 200 and reply.upstream == name
        assert reply.json()["path"] == f"/v2/models/m/versions/{version}/infer"
    reply = router.request(path="/v2/models/m/versions/7/infer")
    assert reply.status == 404
    assert reply.json() == {"error": "version 7 is not served here; served: 1, 2, 3"}


def test_preview_header(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {"a": 100}, preview="b")
    assert send(router, 10, headers={"X-Mlform-Preview": "true"}) == {"b": 10}
    assert send(router, 10, headers={"X-Mlform-Preview": "1"}) == {"b": 10}
    assert send(router, 10, headers={"X-Mlform-Preview": "false"}) == {"a": 10}
    assert send(router, 10) == {"a": 10}
    # The preview's failures reach whoever previews it: no retry elsewhere.
    ups["b"].status = 500
    reply = router.request(headers={"X-Mlform-Preview": "true"})
    assert reply.status == 500 and reply.upstream == "b"
    assert ups["a"].count == 20


def test_mirror_half(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {"a": 100}, mirror={"upstream": "c", "percent": 50})

    def mirrored(result: str) -> float:
        return router.metric("mlform_router_mirrored_total", upstream="c", result=result)

    before = {result: mirrored(result) for result in ("ok", "error", "dropped")}
    # The client always gets the primary's answer.
    assert send(router, 400) == {"a": 400}

    # Every mirror task exists once the client has its answers; wait for them to end.
    wait_for(lambda: router.metric("mlform_router_mirror_in_flight") == 0, "mirrors to finish")
    assert 130 <= ups["c"].count <= 270, ups["c"].count
    assert ups["c"].mirrored == ups["c"].count
    assert mirrored("ok") - before["ok"] == ups["c"].count
    assert mirrored("error") == before["error"]
    assert ups["b"].count == 0


def test_mirror_errors_do_not_reach_the_client(
    router: RouterProcess, ups: dict[str, FakeUpstream]
) -> None:
    router.put(ups, {"a": 100}, mirror={"upstream": "c", "percent": 100})
    before = router.metric("mlform_router_mirrored_total", upstream="c", result="error")
    ups["c"].status = 500
    assert send(router, 20) == {"a": 20}
    wait_for(
        lambda: (
            router.metric("mlform_router_mirrored_total", upstream="c", result="error") - before
            >= 20
        ),
        "mirror errors counted",
    )
    ups["c"].stop()  # an unreachable mirror is an error too, never the client's
    assert send(router, 5) == {"a": 5}
    wait_for(
        lambda: (
            router.metric("mlform_router_mirrored_total", upstream="c", result="error") - before
            >= 25
        ),
        "mirror connection errors counted",
    )


def test_concurrent_requests_and_the_mirror_cap(
    router: RouterProcess, ups: dict[str, FakeUpstream]
) -> None:
    """150 requests at once all succeed; a slow mirror is capped (64 in flight), not waited on."""
    import aiohttp

    router.put(ups, {"a": 50, "b": 50}, mirror={"upstream": "c", "percent": 100})
    ups["c"].delay = 1.0
    before = router.metric("mlform_router_mirrored_total", upstream="c", result="dropped")

    async def burst() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> tuple[int, str]:
                async with session.post(f"{router.url}{INFER}", data=b"{}") as resp:
                    body = await resp.json()
                    return resp.status, body["upstream"]

            return await asyncio.gather(*(one(i) for i in range(150)))

    results = run_async(burst())
    assert all(status == 200 for status, _ in results)
    assert {name for _, name in results} == {"a", "b"}
    dropped = router.metric("mlform_router_mirrored_total", upstream="c", result="dropped") - before
    assert dropped > 0
    # Every request was either mirrored (and reached c) or counted as dropped.
    wait_for(lambda: router.metric("mlform_router_mirror_in_flight") == 0, "mirrors to finish")
    assert ups["c"].count + dropped == 150


# -- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried_on_the_other_upstream(
    router: RouterProcess, ups: dict[str, FakeUpstream]
) -> None:
    router.put(ups, {"a": 50, "b": 50})
    before = router.metric("mlform_router_retries_total", from_upstream="a", to_upstream="b")
    ups["a"].status = 503
    assert send(router, 100) == {"b": 100}
    assert ups["a"].count > 0
    after = router.metric("mlform_router_retries_total", from_upstream="a", to_upstream="b")
    assert after - before == ups["a"].count


def test_stopped_upstream_is_retried(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {"a": 50, "b": 50})
    before = router.metric("mlform_router_retries_total", from_upstream="a", to_upstream="b")
    ups["a"].stop()
    assert send(router, 100) == {"b": 100}
    after = router.metric("mlform_router_retries_total", from_upstream="a", to_upstream="b")
    assert after - before > 0


def test_no_alternative_502_or_passthrough(
    router: RouterProcess, ups: dict[str, FakeUpstream]
) -> None:
    router.put(ups, {"a": 100, "b": 0})
    ups["a"].status = 500
    reply = router.request()
    assert reply.status == 500 and reply.json()["upstream"] == "a"
    ups["a"].stop()
    reply = router.request()
    assert reply.status == 502
    assert reply.json()["error"].startswith("upstream a unreachable: ")
    assert ups["b"].count == 0


# -- the admin API ---------------------------------------------------------------------------


def test_stale_generation_is_409(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    table = router.put(ups, {"a": 100})
    # Re-sending the same generation is fine (idempotent).
    assert put_routes(router.url, table) == table
    older = table.with_generation(table.generation - 1)
    with pytest.raises(StaleRoutesError) as info:
        put_routes(router.url, older)
    assert info.value.status == 409
    assert info.value.current_generation == table.generation
    assert get_routes(router.url) == table


def test_invalid_put_is_400_and_old_table_stays(
    router: RouterProcess, ups: dict[str, FakeUpstream]
) -> None:
    table = router.put(ups, {"a": 100})
    bad = table.to_dict()
    bad["generation"] += 1
    bad["split"] = {"a": 60, "b": 30}
    reply = router.request("PUT", "/-/routes", body=json.dumps(bad))
    assert reply.status == 400
    assert "sum to 100" in reply.json()["error"]
    reply = router.request("PUT", "/-/routes", body=b"not json")
    assert reply.status == 400 and "not valid JSON" in reply.json()["error"]
    with pytest.raises(RouteError, match="not a declared upstream"):
        put_routes(router.url, {**bad, "split": {"zz": 100}})
    assert get_routes(router.url) == table
    assert send(router, 10) == {"a": 10}
    assert router.metric("mlform_router_route_generation") == table.generation


def test_own_paths_are_not_proxied(router: RouterProcess, ups: dict[str, FakeUpstream]) -> None:
    router.put(ups, {"a": 100})
    assert router.request("POST", "/-/routes").status == 405
    assert router.request("GET", "/-/nothing", body=None).status == 404
    for path in ("/metrics", "/-/metrics"):
        reply = router.request("GET", path, body=None)
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.body.decode()
        for name in (
            "mlform_router_requests_total",
            "mlform_router_request_duration_seconds_bucket",
            "mlform_router_route_generation",
        ):
            assert name in text
    assert sum(up.count for up in ups.values()) == 0
    before = router.metric("mlform_router_requests_total", upstream="a", status="200")
    send(router, 7)
    after = router.metric("mlform_router_requests_total", upstream="a", status="200")
    assert after - before == 7
    assert router.metric("mlform_router_request_duration_seconds_count", upstream="a") >= 7


def test_routes_file_is_rewritten_and_survives_restart(
    own_router: Any, ups: dict[str, FakeUpstream], tmp_path: Path
) -> None:
    first = own_router()
    table = first.put(ups, {"a": 30, "b": 70}, route_by="hash", key="X-User", preview="c")
    on_disk = RouteTable.from_json((tmp_path / "routes.json").read_text())
    assert on_disk == table
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert first.stop() == 0
    second = own_router()
    assert get_routes(second.url) == table
    assert second.metric("mlform_router_route_generation") == table.generation
    assert send(second, 5, headers={"X-Mlform-Preview": "true"}) == {"c": 5}


# -- zero-loss route changes -----------------------------------------------------------------


class Load:
    """Threads that keep sending requests until stopped, counting every outcome."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop_flag = threading.Event()
        self.ok: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        client = Client(self.port)
        try:
            while not self.stop_flag.is_set():
                try:
                    reply = client.request()
                except Exception as exc:
                    with self.lock:
                        self.failures.append(repr(exc))
                    continue
                with self.lock:
                    if reply.status == 200:
                        self.ok[reply.json()["upstream"]] += 1
                    else:
                        self.failures.append(f"{reply.status} {reply.body!r}")
        finally:
            client.close()

    def total(self) -> int:
        with self.lock:
            return sum(self.ok.values()) + len(self.failures)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=120)


def test_zero_loss_switch(own_router: Any, ups: dict[str, FakeUpstream]) -> None:
    r = own_router()
    a, b = ups["a"], ups["b"]
    pair = {"a": a, "b": b}
    r.put(pair, {"a": 100, "b": 0})
    with Load(r.port) as load:
        wait_for(lambda: load.total() >= 50, "load to start")
        for i in range(30):
            split = {"a": 0, "b": 100} if i % 2 == 0 else {"a": 100, "b": 0}
            r.put(pair, split)
            mark = load.total()
            wait_for(lambda m=mark: load.total() >= m + 20, "requests under the new split")
        # Route away from a for good, then stop it while the load goes on.
        r.put(pair, {"a": 0, "b": 100})
        a.stop()
        mark = load.total()
        wait_for(lambda: load.total() >= mark + 200, "requests after stopping a")
    assert load.failures == [], load.failures[:5]
    assert load.ok["a"] > 0 and load.ok["b"] > 0
    assert a.count == load.ok["a"]


def test_zero_loss_with_weighted_canary_and_stop(
    own_router: Any, ups: dict[str, FakeUpstream]
) -> None:
    """Stopping a server that still has weight loses nothing either: retried elsewhere."""
    r = own_router()
    a, b = ups["a"], ups["b"]
    r.put({"a": a, "b": b}, {"a": 50, "b": 50})
    with Load(r.port) as load:
        wait_for(lambda: load.total() >= 100, "load to start")
        a.stop()
        mark = load.total()
        wait_for(lambda: load.total() >= mark + 200, "requests after stopping a")
    assert load.failures == [], load.failures[:5]
    assert r.metric("mlform_router_retries_total", from_upstream="a", to_upstream="b") > 0


# -- process lifecycle -----------------------------------------------------------------------


def test_sigterm_finishes_in_flight_request(own_router: Any, ups: dict[str, FakeUpstream]) -> None:
    r = own_router()
    slow = ups["a"]
    slow.delay = 1.5
    r.put({"a": slow}, {"a": 100})
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            with Client(r.port) as client:
                result["reply"] = client.request()
        except Exception as exc:
            result["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: slow.inflight == 1, "the slow request to reach the upstream")
    assert r.proc is not None
    r.proc.send_signal(signal.SIGTERM)
    caller.join(timeout=60)
    assert "error" not in result, result
    assert result["reply"].status == 200
    assert result["reply"].json()["upstream"] == "a"
    assert r.proc.wait(timeout=60) == 0


def test_upstream_timeout_and_body_limit(own_router: Any, ups: dict[str, FakeUpstream]) -> None:
    r = own_router("--upstream-timeout", "0.2", "--max-body", "1024")
    ups["a"].delay = 2.0
    r.put(ups, {"a": 100})
    reply = r.request()
    assert reply.status == 504
    assert "upstream a did not answer" in reply.json()["error"]
    ups["a"].delay = 0.0
    reply = r.request(body=b"x" * 2048)
    assert reply.status == 413
    assert r.request(body=b"x" * 512).status == 200


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        ([], None, "the following arguments are required"),
        (["--port", "nope"], None, "is not a port number"),
        (["--port", "1"], "{", "not valid JSON"),
        (["--port", "1"], '{"split": {"x": 100}}', "'x' is not a declared upstream"),
        (["--port", "1"], "dir", "cannot read routes file"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, args: list[str], content: str | None, message: str
) -> None:
    routes = tmp_path / "routes.json"
    if content == "dir":
        routes.mkdir()
    elif content is not None:
        routes.write_text(content)
    if args:
        args = [*args, "--routes", str(routes)]
    done = subprocess.run(
        [sys.executable, "-m", "mlform.serving.router", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def test_put_routes_client_errors() -> None:
    from mlform.serving.router_client import RouterAdminError

    port = free_port()
    with pytest.raises(RouterAdminError, match="unreachable"):
        put_routes(f"http://127.0.0.1:{port}", RouteTable.empty(), timeout=2)
    assert not router_live(f"http://127.0.0.1:{port}")


# -- the upstream HTTP/1.1 client ------------------------------------------------------------


class RawServer:
    """A TCP server that answers each request with scripted bytes (per connection index)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer  # (request_bytes, nth_request_on_connection) -> bytes | None
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        nth = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request, nth)
                nth += 1
                if reply is None:
                    break
                if reply == b"hang":
                    await reader.read()  # until the client gives up and closes
                    break
                for piece in reply if isinstance(reply, list) else [reply]:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
                if b"close-after" in request:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def client_run(answer: Any, *calls: tuple[Any, ...], timeout: float = 30.0) -> Any:
    from mlform.serving.upstream import UpstreamClient

    async def go() -> Any:
        async with RawServer(answer) as server:
            client = UpstreamClient(limit=8, timeout=timeout)
            out = []
            try:
                for method, target, body in calls:
                    out.append(
                        await client.request(
                            "127.0.0.1", server.port, method, target, [("X-A", "1")], body
                        )
                    )
            finally:
                client.close()
            return server, out

    return run_async(go())


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def test_client_frames_requests_and_reuses_connections() -> None:
    server, out = client_run(
        lambda req, nth: OK, ("POST", "/p?q=1", b"abc"), ("GET", "/g", b""), ("POST", "/e", b"")
    )
    assert [r.status for r in out] == [200, 200, 200]
    assert out[0].body == b"ok" and ("Content-Type", "text/plain") in out[0].headers
    assert server.connections == 1
    first, second, third = server.requests
    assert first.startswith(b"POST /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-A: 1\r\n" in first and b"\r\nContent-Length: 3\r\n" in first
    assert first.endswith(b"\r\n\r\nabc")
    assert b"Content-Length" not in second
    assert b"Content-Length: 0" in third


def test_client_reads_chunked_answers_in_pieces() -> None:
    reply = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"lo\r\n6;ext=1\r\n world\r\n",
        b"0\r\nX-Trailer: t\r\n\r\n",
    ]
    server, out = client_run(lambda req, nth: reply, ("GET", "/", b""), ("GET", "/", b""))
    assert [r.body for r in out] == [b"hello world", b"hello world"]
    assert server.connections == 1


def test_client_reads_close_delimited_answers() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"
    server, out = client_run(
        lambda req, nth: reply, ("GET", "/close-after", b""), ("GET", "/close-after", b"")
    )
    assert [r.body for r in out] == [b"until close", b"until close"]
    assert server.connections == 2


def test_client_no_body_answers_and_interim_answers() -> None:
    answers = {
        b"HEAD": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"DELETE": b"HTTP/1.1 204 No Content\r\n\r\n",
        b"POST": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
    }
    server, out = client_run(
        lambda req, nth: answers[req.split(b" ", 1)[0]],
        ("HEAD", "/", b""),
        ("DELETE", "/", b""),
        ("POST", "/", b"{}"),
    )
    assert [(r.status, r.body) for r in out] == [(200, b""), (204, b""), (201, b"x")]
    assert out[2].reason == "Created"
    assert server.connections == 1


def test_client_retries_a_stale_keep_alive_connection() -> None:
    # The server answers the first request of each connection and closes on the second,
    # as a server whose keep-alive timer fired just as the request went out.
    server, out = client_run(
        lambda req, nth: OK if nth == 0 else None, ("GET", "/", b""), ("GET", "/", b"")
    )
    assert [r.status for r in out] == [200, 200]
    assert server.connections == 2


def test_client_errors() -> None:
    from mlform.serving.upstream import UpstreamProtocolError

    with pytest.raises(TimeoutError):
        client_run(lambda req, nth: b"hang", ("GET", "/", b""), timeout=0.2)
    with pytest.raises(UpstreamProtocolError, match="bad status line"):
        client_run(lambda req, nth: b"SMTP ready\r\n\r\n", ("GET", "/", b""))
    with pytest.raises(ConnectionResetError):
        client_run(lambda req, nth: None, ("GET", "/", b""))
    with pytest.raises(ConnectionResetError):
        client_run(
            lambda req, nth: b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            ("GET", "/close-after", b""),
        )


def test_client_connection_refused() -> None:
    from mlform.serving.upstream import UpstreamClient

    async def go() -> None:
        client = UpstreamClient(limit=8, timeout=10)
        try:
            await client.request("127.0.0.1", free_port(), "GET", "/", [], b"")
        finally:
            client.close()

    with pytest.raises(ConnectionRefusedError):
        run_async(go())
