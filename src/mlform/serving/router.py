"""The traffic router of a local-target deployment: one process in front of the model servers.

It listens on the deployment's public port and proxies every request to one of the
deployment's model servers (KServe V2 HTTP servers, one per model version) by the current
:class:`~mlform.serving.routes.RouteTable`: canary weights, A/B by header or by a hash of a
request key, a blue-green preview, explicit version paths, and mirroring a percent of
traffic to a shadow server. The rollout controller changes the table at run time through
the admin API; the router is never restarted for that, and a route change drops no request:
each request keeps the table that was current when it arrived, the swap is one reference
assignment, and a connection error or 5xx from the chosen server is retried once on another
server that has weight.

Its own endpoints (prefix ``/-/``, never proxied)::

    GET /-/health     200 {"live": true}
    GET /-/routes     the current table
    PUT /-/routes     validate, persist to the routes file atomically, swap; 400 invalid,
                      409 stale generation
    GET /-/metrics    Prometheus text of the router's metrics (also GET /metrics)

The hop to the model servers uses :class:`~mlform.serving.upstream.UpstreamClient`, a small
keep-alive HTTP/1.1 client with a connection pool per server (a quarter to a half of
aiohttp's client CPU per request; the router has a 1 ms budget).

Run it with ``python -m mlform.serving.router --port P --routes FILE [--host H] [--name N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mlform.serving.metrics import DURATION_BUCKETS  # the servers', so latencies compare
from mlform.serving.routes import (
    PREVIEW_HEADER,
    RouteError,
    RouteTable,
    Upstream,
    is_preview,
    version_from_path,
)
from mlform.serving.upstream import UpstreamClient, UpstreamProtocolError
from mlform.state.atomic import write_atomic

__all__ = [
    "DEFAULT_MAX_BODY",
    "DURATION_BUCKETS",
    "UPSTREAM_HEADER",
    "Router",
    "RouterMetrics",
    "load_routes",
    "main",
    "run_router",
    "serve",
    "write_routes",
]

log = logging.getLogger("mlform.serving.router")

DEFAULT_MAX_BODY: Final = 64 * 1024 * 1024
DEFAULT_UPSTREAM_TIMEOUT: Final = 60.0
DEFAULT_MIRROR_LIMIT: Final = 64
DEFAULT_POOL_SIZE: Final = 512
SHUTDOWN_TIMEOUT: Final = 30.0
UPSTREAM_HEADER: Final = "X-Mlform-Upstream"
MIRROR_HEADER: Final = "X-Mlform-Mirror"
NO_UPSTREAM: Final = "none"

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy sets itself.
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "trailers", "upgrade"}
    | {"host", "content-length"}
)
_REQUEST_SKIP: Final = _HOP_BY_HOP | {"expect"}
_OWN_PATHS: Final = frozenset({"/-/health", "/-/routes", "/-/metrics"})
_JSON: Final = "application/json"


def _filter_headers(headers: CIMultiDictProxy[str], skip: frozenset[str]) -> list[tuple[str, str]]:
    connection = headers.get("Connection")
    named = {token.strip().lower() for token in connection.split(",")} if connection else set()
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in skip or lower.startswith("proxy-") or lower in named:
            continue
        out.append((name, value))
    return out


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type=_JSON, headers=headers
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json(status, {"error": message, **extra})


class RouterMetrics:
    """The router's Prometheus metrics, in a registry of their own (one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "mlform_router_requests",
            "Requests the router answered, by the upstream that answered and the status.",
            ["upstream", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "mlform_router_request_duration_seconds",
            "Time from receiving a request to having its answer, by upstream.",
            ["upstream"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "mlform_router_retries",
            "Requests retried on another upstream after a connection error or a 5xx.",
            ["from_upstream", "to_upstream"],
            registry=self.registry,
        )
        self.mirrored = Counter(
            "mlform_router_mirrored",
            "Requests copied to the mirror upstream, by result (ok, error, dropped).",
            ["upstream", "result"],
            registry=self.registry,
        )
        self.generation = Gauge(
            "mlform_router_route_generation",
            "Generation of the route table in use.",
            registry=self.registry,
        )
        self.mirror_in_flight = Gauge(
            "mlform_router_mirror_in_flight",
            "Mirrored requests not yet answered (capped; beyond the cap they are dropped).",
            registry=self.registry,
        )
        # Label children cached by key: a label lookup costs more than the increment.
        self._requests: dict[tuple[str, int], Any] = {}
        self._durations: dict[str, Any] = {}

    def observe(self, upstream: str, status: int, seconds: float) -> None:
        counter = self._requests.get((upstream, status))
        if counter is None:
            counter = self.requests.labels(upstream, str(status))
            self._requests[(upstream, status)] = counter
        counter.inc()
        histogram = self._durations.get(upstream)
        if histogram is None:
            histogram = self._durations[upstream] = self.duration.labels(upstream)
        histogram.observe(seconds)

    def retry(self, from_upstream: str, to_upstream: str) -> None:
        self.retries.labels(from_upstream, to_upstream).inc()

    def mirror(self, upstream: str, result: str) -> None:
        self.mirrored.labels(upstream, result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


# -- the routes file -----------------------------------------------------------------------


def load_routes(path: Path) -> RouteTable:
    """The table in ``path``; the empty table when the file does not exist.

    Raises :class:`RouteError` (invalid) or :class:`OSError` (unreadable).
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return RouteTable.empty()
    return RouteTable.from_json(text)


def write_routes(path: Path, table: RouteTable) -> None:
    """Write ``table`` to ``path`` atomically: temp file, fsync, rename, fsync the folder."""
    write_atomic(path, table.to_json() + "\n")


# -- the upstream HTTP/1.1 client -----------------------------------------------------------
#
# A small keep-alive HTTP/1.1 client for the hop to the model servers. aiohttp's client costs
# about twice the CPU per request of this one, and the router's whole budget is one
# millisecond; the servers are on loopback and speak plain HTTP/1.1, so this needs only
# request framing by Content-Length and response framing by Content-Length, chunked or
# close (RFC 9112 §6.3).


class Router:
    """Holds the current route table and serves the proxy and the admin API.

    ``table`` is replaced, never mutated: a request reads it once on arrival.
    """

    def __init__(
        self,
        routes_path: Path,
        table: RouteTable | None = None,
        *,
        name: str = "router",
        upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        max_body: int = DEFAULT_MAX_BODY,
        mirror_limit: int = DEFAULT_MIRROR_LIMIT,
        pool_size: int = DEFAULT_POOL_SIZE,
        metrics: RouterMetrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.routes_path = routes_path
        self.table = table if table is not None else RouteTable.empty()
        self.name = name
        self.upstream_timeout = upstream_timeout
        self.max_body = max_body
        self.mirror_limit = mirror_limit
        self.pool_size = pool_size
        self.metrics = metrics if metrics is not None else RouterMetrics()
        self.metrics.generation.set(self.table.generation)
        self._rng = rng if rng is not None else random.Random()
        self._client: UpstreamClient | None = None
        self._addresses: dict[str, tuple[str, int]] = {}
        self._put_lock = asyncio.Lock()
        self._mirror_tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- application ------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_get("/-/health", self._health)
        app.router.add_get("/-/routes", self._get_routes)
        app.router.add_put("/-/routes", self._put_routes)
        app.router.add_get("/-/metrics", self._metrics)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        self._client = UpstreamClient(limit=self.pool_size, timeout=self.upstream_timeout)

    async def _cleanup(self, app: web.Application) -> None:
        self._closing = True
        if self._mirror_tasks:
            _, pending = await asyncio.wait(list(self._mirror_tasks), timeout=5.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> UpstreamClient:
        if self._client is None:
            raise RuntimeError("the router's upstream client is not started")
        return self._client

    def _address(self, upstream: Upstream) -> tuple[str, int]:
        address = self._addresses.get(upstream.url)
        if address is None:
            parts = urlsplit(upstream.url)
            address = (parts.hostname or "127.0.0.1", parts.port or 80)
            self._addresses[upstream.url] = address
        return address

    # -- own endpoints ----------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return _json(200, {"live": True})

    async def _get_routes(self, request: web.Request) -> web.Response:
        return web.Response(body=self.table.to_json().encode(), content_type=_JSON)

    async def _put_routes(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the route table is larger than {self.max_body} bytes")
        try:
            new = RouteTable.from_json(body)
        except RouteError as exc:
            return _error(400, f"invalid route table: {exc}")
        async with self._put_lock:
            current = self.table
            if new.generation < current.generation:
                return _error(
                    409,
                    f"stale route table: generation {new.generation} is older than the "
                    f"router's generation {current.generation}",
                    generation=current.generation,
                )
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, write_routes, self.routes_path, new
                )
            except OSError as exc:
                return _error(
                    500,
                    f"cannot write the routes file {self.routes_path}: {exc}; "
                    f"generation {current.generation} stays in use",
                )
            self.table = new
            self.metrics.generation.set(new.generation)
        if new.generation != current.generation or new != current:
            log.info(
                "routes: generation %d -> %d, split %s",
                current.generation,
                new.generation,
                dict(new.split) or "empty",
            )
        return web.Response(body=new.to_json().encode(), content_type=_JSON)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # -- the proxy --------------------------------------------------------------------

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        table = self.table
        path = request.path
        if path.startswith("/-/"):
            if path in _OWN_PATHS:
                return _error(405, f"{request.method} is not allowed on {path}")
            return _error(404, f"no router endpoint {path}")
        rng = self._rng
        preview = False
        version = version_from_path(path)
        if version is not None:
            upstream = table.for_version(version)
            if upstream is None:
                served = ", ".join(table.versions()) or "none"
                return self._done(
                    NO_UPSTREAM,
                    start,
                    _error(404, f"version {version} is not served here; served: {served}"),
                )
        else:
            key = table.key
            key_value = (
                request.headers.get(key) if key is not None and table.route_by != "weight" else None
            )
            preview = table.preview is not None and is_preview(request.headers.get(PREVIEW_HEADER))
            upstream = table.select(rng, key_value=key_value, preview=preview)
            if upstream is None:
                return self._done(
                    NO_UPSTREAM,
                    start,
                    _error(
                        503,
                        f"no route: the route table (generation {table.generation}) "
                        "has an empty split",
                    ),
                )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._done(
                NO_UPSTREAM,
                start,
                _error(413, f"the request body is larger than {self.max_body} bytes"),
            )
        headers = _filter_headers(request.headers, _REQUEST_SKIP)
        method = request.method
        raw_path = request.raw_path
        mirror = table.mirror_target(rng) if table.mirror is not None else None
        if mirror is not None:
            self._start_mirror(mirror, method, raw_path, headers, body)
        response, answered_by = await self._forward(
            table, upstream, version, preview, method, raw_path, headers, body
        )
        return self._done(answered_by, start, response)

    def _done(self, upstream: str, start: float, response: web.Response) -> web.Response:
        self.metrics.observe(upstream, response.status, time.perf_counter() - start)
        return response

    async def _send(
        self,
        upstream: Upstream,
        method: str,
        raw_path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> web.Response:
        host, port = self._address(upstream)
        answer = await self.client.request(host, port, method, raw_path, headers, body)
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in answer.headers:
            lower = name.lower()
            if lower not in _HOP_BY_HOP and not lower.startswith("proxy-"):
                out.add(name, value)
        out[UPSTREAM_HEADER] = upstream.name
        return web.Response(
            status=answer.status, reason=answer.reason or None, body=answer.body, headers=out
        )

    async def _forward(
        self,
        table: RouteTable,
        upstream: Upstream,
        version: str | None,
        preview: bool,
        method: str,
        raw_path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> tuple[web.Response, str]:
        """Send to ``upstream``; on a connection error or a 5xx retry once elsewhere.

        Preview requests are not retried: the preview's own failures are what they test.
        Version-path requests are retried only on another server of the same version.
        """
        failed: web.Response | None = None
        try:
            response = await self._send(upstream, method, raw_path, headers, body)
        except TimeoutError:
            return self._timeout(upstream), upstream.name
        except (OSError, UpstreamProtocolError) as exc:
            error: BaseException = exc
        else:
            if response.status < 500:
                return response, upstream.name
            failed = response
        retry_on = None if preview else self._alternative(table, upstream, version)
        if retry_on is None:
            if failed is not None:
                return failed, upstream.name
            return self._unreachable(upstream, error), upstream.name
        self.metrics.retry(upstream.name, retry_on.name)
        try:
            response = await self._send(retry_on, method, raw_path, headers, body)
        except TimeoutError:
            return self._timeout(retry_on), retry_on.name
        except (OSError, UpstreamProtocolError) as exc:
            if failed is not None:
                return failed, upstream.name
            return self._unreachable(retry_on, exc), retry_on.name
        return response, retry_on.name

    def _alternative(
        self, table: RouteTable, failed: Upstream, version: str | None
    ) -> Upstream | None:
        if version is not None:
            return table.alternative(failed.name, self._rng, version=version)
        # The newest table first: a request that raced a route change lands where the
        # traffic now goes.
        current = self.table
        found = current.alternative(failed.name, self._rng)
        if found is None and current is not table:
            found = table.alternative(failed.name, self._rng)
        return found

    def _timeout(self, upstream: Upstream) -> web.Response:
        return _error(
            504, f"upstream {upstream.name} did not answer within {self.upstream_timeout:g}s"
        )

    def _unreachable(self, upstream: Upstream, exc: BaseException) -> web.Response:
        detail = str(exc) or type(exc).__name__
        return _error(502, f"upstream {upstream.name} unreachable: {detail}")

    # -- mirroring --------------------------------------------------------------------

    def _start_mirror(
        self,
        upstream: Upstream,
        method: str,
        raw_path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        if self._closing or len(self._mirror_tasks) >= self.mirror_limit:
            self.metrics.mirror(upstream.name, "dropped")
            return
        task = asyncio.get_running_loop().create_task(
            self._mirror(upstream, method, raw_path, [*headers, (MIRROR_HEADER, "true")], body)
        )
        self._mirror_tasks.add(task)
        self.metrics.mirror_in_flight.inc()
        task.add_done_callback(self._mirror_done)

    def _mirror_done(self, task: asyncio.Task[None]) -> None:
        self._mirror_tasks.discard(task)
        self.metrics.mirror_in_flight.dec()

    async def _mirror(
        self,
        upstream: Upstream,
        method: str,
        raw_path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        host, port = self._address(upstream)
        try:
            answer = await self.client.request(host, port, method, raw_path, headers, body)
            result = "ok" if answer.status < 400 else "error"
        except (OSError, UpstreamProtocolError, RuntimeError):
            result = "error"
        self.metrics.mirror(upstream.name, result)


# -- running it ----------------------------------------------------------------------------


async def serve(
    router: Router,
    host: str,
    port: int,
    *,
    started: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then shut down gracefully.

    Graceful: stop accepting, let in-flight requests finish (up to 30 s), wait for
    mirrored requests briefly, close the client session.
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    runner = web.AppRunner(
        router.make_app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound = port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound = int(address[1])
                break
        table = router.table
        log.info(
            "mlform router %s listening on http://%s:%d (routes %s, generation %d, "
            "%d upstream(s), pid %d)",
            router.name,
            host,
            bound,
            router.routes_path,
            table.generation,
            len(table.upstreams),
            os.getpid(),
        )
        if started is not None:
            started(bound)
        await stop.wait()
        log.info("mlform router %s stopping: finishing in-flight requests", router.name)
    finally:
        await runner.cleanup()
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("mlform router %s stopped", router.name)


def run_router(
    routes_path: Path | str,
    *,
    port: int,
    host: str = "127.0.0.1",
    name: str = "router",
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
    max_body: int = DEFAULT_MAX_BODY,
    mirror_limit: int = DEFAULT_MIRROR_LIMIT,
    table: RouteTable | None = None,
) -> None:
    """Load the routes file (absent: empty table) and serve until SIGTERM/SIGINT.

    ``table``, when given, is used instead of reading ``routes_path`` (PUTs still write
    there). Raises :class:`RouteError` or :class:`OSError` when the routes file is invalid or
    unreadable, :class:`OSError` when the port cannot be bound.
    """
    path = Path(routes_path)
    if table is None:
        table = load_routes(path)

    async def _main() -> None:
        router = Router(
            path,
            table,
            name=name,
            upstream_timeout=upstream_timeout,
            max_body=max_body,
            mirror_limit=mirror_limit,
        )
        await serve(router, host, port)

    asyncio.run(_main())


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m mlform.serving.router",
        description="The mlform traffic router: splits, mirrors and previews traffic "
        "between model servers by a route table the rollout controller can change live.",
    )
    parser.add_argument("--port", type=_port, required=True, help="port to listen on")
    parser.add_argument("--routes", type=Path, required=True, help="the routes file (JSON)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--name", default="router", help="name for the logs")
    parser.add_argument(
        "--upstream-timeout",
        type=_positive(float),
        default=DEFAULT_UPSTREAM_TIMEOUT,
        help="seconds to wait for a model server's answer (60)",
    )
    parser.add_argument(
        "--max-body",
        type=_positive(int),
        default=DEFAULT_MAX_BODY,
        help="largest request body in bytes (64 MiB)",
    )
    parser.add_argument(
        "--mirror-limit",
        type=_positive(int),
        default=DEFAULT_MIRROR_LIMIT,
        help="mirrored requests in flight at most; beyond, mirroring is skipped (64)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The router's command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    routes: Path = args.routes
    try:
        table = load_routes(routes)
    except RouteError as exc:
        sys.stderr.write(f"{prog}: error: invalid routes file {routes}: {exc}\n")
        return 2
    except OSError as exc:
        detail = exc.strerror or str(exc)
        sys.stderr.write(f"{prog}: error: cannot read routes file {routes}: {detail}\n")
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        run_router(
            routes,
            port=args.port,
            host=args.host,
            name=args.name,
            upstream_timeout=args.upstream_timeout,
            max_body=args.max_body,
            mirror_limit=args.mirror_limit,
            table=table,
        )
    except (RouteError, OSError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2 if isinstance(exc, RouteError) else 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
