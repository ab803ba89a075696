"""``mlform serve``: an Open Inference Protocol (KServe V2) HTTP server for one model version.

Endpoints (JSON; errors are ``{"error": "..."}``)::

    GET  /v2/health/live                          200 {"live": true}
    GET  /v2/health/ready                         200 {"ready": true}; 503 while draining
    GET  /v2                                      {"name": "mlform", "version", "extensions"}
    GET  /v2/models/{name}[/versions/{v}]         model metadata (inputs, outputs, features)
    GET  /v2/models/{name}[/versions/{v}]/ready   200 {"name", "ready": true}; 503 draining
    POST /v2/models/{name}[/versions/{v}]/infer   predictions (see mlform.serving.protocol)
    POST /v2/models/{name}[/versions/{v}]/labels  delayed ground truth: 200 {"accepted": N}
    GET  /metrics                                 Prometheus text (mlform.serving.metrics)

``{name}`` is ``--name`` (default: the model's name without ``model.``) and ``{v}`` the
registry version number.

The request path is kept lean: the HTTP layer is aiohttp's low-level server with one dispatch
function, the model runs inline on the event loop (a worker serves one request at a time;
run several workers for parallelism), JSON goes through orjson, and nothing is logged per
request.

Labels. ``POST .../labels`` takes ``{"labels": [{"id": "<request id>", "label": <value, or a
list of values, one per row of that request>}, ...]}``, where the id is an infer request's
``id`` (the client's, else the one the server answered with). A classifier's labels are
class names or class indices, a regressor's numbers (``null`` in a list: that row has no
label yet); the whole body is checked first and a bad one is refused with 400 saying what
is expected. Accepted labels go, as sent, to ``labels-<pid>.jsonl`` in the prediction log
directory (written by the prediction log's writer thread, flushed on shutdown); a server
without ``--prediction-log`` answers 409. Monitors read and join them
(:mod:`mlform.monitoring.labels`).

Processes. :func:`serve` binds the listening socket, then with ``workers == 1`` serves in
the calling process; with more it forks that many workers, which share the socket (the
kernel spreads connections between them) and the model, loaded once before forking
(copy-on-write). The parent supervises: it forwards SIGTERM/SIGINT, restarts a worker that
dies unexpectedly (giving up, and stopping the others, after 6 deaths within 60 s) and
exits once every worker is gone: 0 when all shut down cleanly and none ever died, else 1.
Workers get SIGTERM if the parent itself dies (Linux ``PR_SET_PDEATHSIG``).

Graceful shutdown (SIGTERM or SIGINT): the worker marks itself not ready, stops accepting
connections, finishes the requests in flight and those already sent on open connections
(for up to ``drain_timeout``, 30 s), writes and fsyncs the prediction log, and exits 0.

Readiness: once the socket listens and the model is loaded, one line goes to the
``mlform.serving`` logger (stderr under the CLI)::

    serving model.diagnosis@v2 as diagnosis on http://127.0.0.1:8080 (2 workers)

A launcher may wait for that line (it carries the port chosen for ``--port 0``) or poll
``GET /v2/health/ready`` until it answers 200.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from aiohttp.web_request import BaseRequest

from mlform import __version__
from mlform.monitoring.labels import LabelForm
from mlform.serving import protocol
from mlform.serving.loaded_model import LoadedModel, ServeError
from mlform.serving.metrics import (
    ServerMetrics,
    create_multiprocess_dir,
    remove_multiprocess_dir,
    use_multiprocess,
)
from mlform.serving.prediction_log import PredictionLog, write_schema

__all__ = [
    "ModelServer",
    "ServeOptions",
    "bind_socket",
    "configure_logging",
    "serve",
]

log = logging.getLogger("mlform.serving")
# aiohttp's complaints about malformed HTTP from clients: one line, at most every 10 s.
http_log = logging.getLogger("mlform.serving.http")

_JSON = "application/json"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_MODELS_PREFIX = "/v2/models/"
_MiB = 1024 * 1024
# A model call slower than this on average moves off the event loop (see _timed_predict).
_OFFLOAD_AFTER_S = 0.002
_MODEL_THREADS = 4
_RESTART_WINDOW_S = 60.0
_MAX_RESTARTS = 5


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    name: str | None = None  # the V2 model name; default: the model's name
    prediction_log: Path | None = None
    max_body_bytes: int = 16 * _MiB
    drain_timeout: float = 30.0


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``mlform.serving`` log to stderr, one plain line per record."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


class _Quiet(logging.Filter):
    """Lets one record through per ``every`` seconds, without its traceback."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self.last = -every

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.last < self.every:
            return False
        self.last = now
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!s}".replace("\n", " ")
            record.args = None
        record.exc_info, record.exc_text = None, None
        return True


http_log.addFilter(_Quiet())


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type=_JSON,
        headers=headers or None,
    )


class ModelServer:
    """The HTTP request handling of one worker: routing, the V2 endpoints and metrics."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        name: str,
        metrics: ServerMetrics,
        prediction_log: PredictionLog | None = None,
        max_body_bytes: int = 16 * _MiB,
    ) -> None:
        self.model = model
        self.name = name
        self.version = str(model.version)
        self.signature = model.signature
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.max_body_bytes = max_body_bytes
        self.ready = True
        self.in_flight = 0
        self._model_seconds = 0.0  # moving average of one model call
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_MODEL_THREADS, thread_name_prefix="model"
        )
        self._errors_logged_at = 0.0
        self._errors_suppressed = 0
        metadata = protocol.model_metadata(
            model.signature,
            name=name,
            version=self.version,
            platform=model.platform,
            parameters={
                "model": model.address,
                "ref": model.ref,
                "digest": model.digest,
                "task": model.task,
                "classes": [_plain(c) for c in model.signature.classes],
            },
        )
        self._metadata = orjson.dumps(metadata)
        self._server_metadata = orjson.dumps(
            {"name": "mlform", "version": __version__, "extensions": []}
        )
        self._model_ready = orjson.dumps({"name": name, "ready": True})
        self._model_not_ready = orjson.dumps({"name": name, "ready": False})
        self._label_form = LabelForm(model.task, model.signature.classes)

    # -- aiohttp glue ----------------------------------------------------------------------

    def request_factory(self) -> Callable[..., BaseRequest]:
        """Builds requests whose ``read()`` stops at the body size limit."""
        loop = asyncio.get_running_loop()
        limit = self.max_body_bytes

        def make(message: Any, payload: Any, proto: Any, writer: Any, task: Any) -> BaseRequest:
            return BaseRequest(message, payload, proto, writer, task, loop, client_max_size=limit)

        return make

    def make_server(self, **kwargs: Any) -> web.Server:
        return web.Server(
            self.handle,
            request_factory=self.request_factory(),
            access_log=None,
            logger=http_log,
            **kwargs,
        )

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/metrics":
            if request.method not in ("GET", "HEAD"):
                return _error(405, "use GET /metrics", Allow="GET")
            try:
                body, content_type = self.metrics.render()
            except Exception:
                self._log_failure("rendering /metrics failed")
                return _error(500, "the metrics could not be collected")
            return web.Response(body=body, headers={"Content-Type": content_type})
        started = time.perf_counter()
        self.in_flight += 1
        endpoint = "other"
        try:
            endpoint, response = await self._dispatch(request, path)
        except Exception:  # never let one request take the worker down
            self._log_failure(f"{request.method} {path} failed")
            response = _error(500, "internal server error")
        finally:
            self.in_flight -= 1
        self.metrics.observe_request(endpoint, response.status, time.perf_counter() - started)
        return response

    # -- routing ---------------------------------------------------------------------------

    async def _dispatch(self, request: BaseRequest, path: str) -> tuple[str, web.Response]:
        method = request.method
        if path.startswith(_MODELS_PREFIX):
            parts = path[len(_MODELS_PREFIX) :].split("/")
            name, rest = parts[0], parts[1:]
            version = None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if rest == ["infer"]:
                return "infer", await self._infer_route(request, name, version)
            if rest == ["labels"]:
                return "labels", await self._labels_route(request, name, version)
            if rest == [] or rest == ["ready"]:
                endpoint = "metadata" if not rest else "health"
                if method not in ("GET", "HEAD"):
                    return endpoint, _error(405, f"use GET {path}", Allow="GET")
                missing = self._check_model(name, version)
                if missing is not None:
                    return endpoint, missing
                if rest:
                    if self.ready:
                        return endpoint, web.Response(body=self._model_ready, content_type=_JSON)
                    return endpoint, web.Response(
                        status=503, body=self._model_not_ready, content_type=_JSON
                    )
                return endpoint, web.Response(body=self._metadata, content_type=_JSON)
            return "other", _error(404, f"no such endpoint: {path}; {_ENDPOINTS}")
        if path in ("/v2/health/live", "/v2/health/ready"):
            if method not in ("GET", "HEAD"):
                return "health", _error(405, f"use GET {path}", Allow="GET")
            if path.endswith("live"):
                return "health", web.Response(body=b'{"live":true}', content_type=_JSON)
            if self.ready:
                return "health", web.Response(body=b'{"ready":true}', content_type=_JSON)
            return "health", web.Response(status=503, body=b'{"ready":false}', content_type=_JSON)
        if path in ("/v2", "/v2/"):
            if method not in ("GET", "HEAD"):
                return "metadata", _error(405, "use GET /v2", Allow="GET")
            return "metadata", web.Response(body=self._server_metadata, content_type=_JSON)
        return "other", _error(404, f"no such endpoint: {path}; {_ENDPOINTS}")

    def _check_model(self, name: str, version: str | None) -> web.Response | None:
        if name != self.name:
            return _error(
                404, f"unknown model {name!r}: this server serves {self.name!r} ({self.model.ref})"
            )
        if version is not None and version != self.version:
            return _error(
                404,
                f"model {name!r} has no version {version!r} here: this server serves version "
                f"{self.version} ({self.model.ref})",
            )
        return None

    # -- inference -------------------------------------------------------------------------

    async def _infer_route(
        self, request: BaseRequest, name: str, version: str | None
    ) -> web.Response:
        metrics = self.metrics
        metrics.inference_request()
        if request.method != "POST":
            metrics.inference_error("bad_request")
            return _error(405, f"use POST {request.path}", Allow="POST")
        missing = self._check_model(name, version)
        if missing is not None:
            metrics.inference_error("bad_request")
            return missing
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._too_large(length)
        try:
            body = await request.read()
        except HTTPRequestEntityTooLarge:
            return self._too_large(None)
        except (ConnectionError, ClientPayloadError, HttpProcessingError) as exc:
            metrics.inference_error("bad_request")  # the client went away or sent junk
            return _error(400, f"the request body could not be read ({exc})")
        header = request.headers.get("Inference-Header-Content-Length")
        try:
            header_length = None if header is None else int(header)
        except ValueError:
            metrics.inference_error("bad_request")
            return _error(400, "Inference-Header-Content-Length must be an integer")
        try:
            decoded = protocol.decode_request(body, self.signature, header_length=header_length)
        except protocol.ProtocolError as exc:
            metrics.inference_error("bad_request")
            return _error(exc.status, exc.message)
        if self._model_seconds < _OFFLOAD_AFTER_S:
            return self._timed_predict(decoded)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._timed_predict, decoded)

    def _timed_predict(self, decoded: protocol.InferRequest) -> web.Response:
        """:meth:`_predict`, keeping a moving average of how long the model takes.

        A fast model (the usual scikit-learn one: well under a millisecond) runs on the
        event loop, which is fastest; a slow one (a large network, a model that waits on
        something) runs in a small thread pool, so health checks, ``/metrics`` and other
        requests keep being answered while it works.
        """
        started = time.perf_counter()
        try:
            return self._predict(decoded)
        finally:
            took = time.perf_counter() - started
            self._model_seconds += (took - self._model_seconds) * 0.2

    def _too_large(self, length: int | None) -> web.Response:
        self.metrics.inference_error("too_large")
        size = "" if length is None else f" ({length} bytes)"
        response = _error(
            413,
            f"the request body{size} is over the limit of {self.max_body_bytes} bytes "
            f"({self.max_body_bytes / _MiB:g} MiB, set with --max-body-mb); send fewer rows "
            "per request",
        )
        # The unread rest of the body is drained by aiohttp (for up to 10 s) so that the
        # client, still sending, gets to read this answer.
        return response

    def _predict(self, decoded: protocol.InferRequest) -> web.Response:
        signature = self.signature
        requested = decoded.outputs
        want_proba = (
            requested is None
            or protocol.PROBABILITIES in requested
            or self.prediction_log is not None
        )
        try:
            predicted, proba = self.model.infer(decoded.x, want_proba)
            if predicted.shape[0] != decoded.x.shape[0]:
                raise ValueError(
                    f"the model returned {predicted.shape[0]} predictions for "
                    f"{decoded.x.shape[0]} rows"
                )
            outputs = protocol.encode_outputs(signature, predicted, proba, requested)
            request_id = decoded.id or protocol.new_request_id()
            body = orjson.dumps(
                {
                    "model_name": self.name,
                    "model_version": self.version,
                    "id": request_id,
                    "outputs": outputs,
                },
                option=_NUMPY,
            )
        except Exception as exc:
            self.metrics.inference_error("model_error")
            self._log_failure(f"{self.model.ref} failed on a request", exc)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            return _error(
                500, f"the model failed on this request: {type(exc).__name__}: {first_line}"
            )
        self.metrics.predictions(predicted, proba)
        if self.prediction_log is not None:
            labels = next((o["data"] for o in outputs if o["name"] == protocol.PREDICT), None)
            if labels is None:
                labels = signature.labels(predicted)
            self.prediction_log.append(request_id, decoded.x, labels, proba)
        return web.Response(body=body, content_type=_JSON)

    # -- labels ----------------------------------------------------------------------------

    async def _labels_route(
        self, request: BaseRequest, name: str, version: str | None
    ) -> web.Response:
        if request.method != "POST":
            return _error(405, f"use POST {request.path}", Allow="POST")
        missing = self._check_model(name, version)
        if missing is not None:
            return missing
        if self.prediction_log is None:
            return _error(
                409,
                "this server keeps no prediction log, so it has nowhere to store labels; "
                "start it with --prediction-log DIR (a deployment's servers have one)",
            )
        length = request.content_length
        too_large = _error(
            413,
            f"the request body is over the limit of {self.max_body_bytes} bytes; send the "
            "labels in smaller batches",
        )
        if length is not None and length > self.max_body_bytes:
            return too_large
        try:
            body = await request.read()
        except HTTPRequestEntityTooLarge:
            return too_large
        except (ConnectionError, ClientPayloadError, HttpProcessingError) as exc:
            return _error(400, f"the request body could not be read ({exc})")
        try:
            labels = _decode_labels(body, self._label_form)
        except protocol.ProtocolError as exc:
            return _error(exc.status, exc.message)
        self.prediction_log.append_labels(labels)
        return web.Response(body=orjson.dumps({"accepted": len(labels)}), content_type=_JSON)

    def _log_failure(self, what: str, exc: BaseException | None = None) -> None:
        """Log a failure with its traceback, at most once a second (no log floods)."""
        now = time.monotonic()
        if now - self._errors_logged_at < 1.0:
            self._errors_suppressed += 1
            return
        suppressed = self._errors_suppressed
        self._errors_logged_at, self._errors_suppressed = now, 0
        more = f" ({suppressed} more failures not logged)" if suppressed else ""
        log.error("%s%s", what, more, exc_info=exc if exc is not None else True)


_ENDPOINTS = (
    "the endpoints are GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{name}, "
    "/v2/models/{name}/ready, POST /v2/models/{name}/infer, POST /v2/models/{name}/labels "
    "(also under /v2/models/{name}/versions/{version}) and GET /metrics"
)

_LABELS_EXPECTED = (
    '{"labels": [{"id": "<request id>", "label": <value, or a list of values, one per row '
    "of the request>}, ...]}"
)


def _decode_labels(body: bytes, form: LabelForm) -> list[tuple[str, Any]]:
    """``[(request id, label)]`` of a labels request body; ProtocolError (400) if bad."""

    def bad(message: str) -> protocol.ProtocolError:
        return protocol.ProtocolError(400, f"{message}; expected {_LABELS_EXPECTED}")

    if not body.strip():
        raise bad("the request body is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad(f"the request body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise bad(f"the request body must be a JSON object, not {_json_kind(document)}")
    items = document.get("labels")
    if not isinstance(items, list):
        found = "has no 'labels'" if items is None else f"'labels' is {_json_kind(items)}"
        raise bad(f"the request body {found}: 'labels' must be a list")
    labels: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"labels[{i}] is {_json_kind(item)}, not an object")
        request_id = item.get("id")
        if not isinstance(request_id, str) or not request_id:
            what = "missing" if request_id is None else _json_kind(request_id)
            what = "empty" if request_id == "" else what
            raise bad(f"labels[{i}].id is {what}: it must be the request's id (a string)")
        if "label" not in item or item["label"] is None:
            raise bad(f"labels[{i}] (id {request_id!r}) has no label")
        label = item["label"]
        values = label if isinstance(label, list) else [label]
        if not values:
            raise bad(f"labels[{i}].label (id {request_id!r}) is an empty list")
        for j, value in enumerate(values):
            where = f"labels[{i}].label" + (f"[{j}]" if isinstance(label, list) else "")
            if isinstance(value, list | dict):
                raise bad(f"{where} (id {request_id!r}) is {_json_kind(value)}, not a value")
            try:
                normal = form(value)
            except ValueError as exc:
                raise protocol.ProtocolError(
                    400, f"{where} (id {request_id!r}): {exc} ({form.task} model)"
                ) from None
            if normal is None and not isinstance(label, list):
                raise bad(f"labels[{i}] (id {request_id!r}) has no label")
        labels.append((request_id, label))
    return labels


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# -- sockets and processes ---------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); ServeError otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address[:2], family=family, backlog=2048)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ServeError(
            f"cannot listen on {host}:{port}: {reason}; choose another --host/--port "
            "(--port 0 picks a free port)"
        ) from None
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(model: LoadedModel, options: ServeOptions, *, sock: socket.socket | None = None) -> int:
    """Serve ``model`` until SIGTERM/SIGINT; returns the exit status (0: clean shutdown)."""
    name = options.name or model.name
    listener = sock if sock is not None else bind_socket(options.host, options.port)
    if options.prediction_log is not None:
        schema = {
            "feature_names": list(model.signature.feature_names),
            "ref": model.ref,
            "classes": [_plain(c) for c in model.signature.classes],
            "model": name,
            "version": model.version,
            "task": model.task,
        }
        try:
            write_schema(options.prediction_log, schema)
        except OSError as exc:
            listener.close()
            raise ServeError(
                f"cannot write the prediction log in {options.prediction_log}: "
                f"{exc.strerror or exc}; give a writable --prediction-log directory"
            ) from None
    workers = max(1, options.workers)
    banner = (
        f"serving {model.ref} as {name} on {_url(listener)} "
        f"({workers} worker{'s' if workers != 1 else ''})"
    )
    if workers == 1:
        use_multiprocess(None)
        try:
            return asyncio.run(_worker(model, listener, name, options, None, banner))
        finally:
            listener.close()
    metrics_dir = create_multiprocess_dir()
    use_multiprocess(metrics_dir)
    _freeze_heap()  # before forking: the workers share these pages copy-on-write
    try:
        return _Supervisor(model, listener, name, options, metrics_dir, banner).run()
    finally:
        listener.close()
        remove_multiprocess_dir(metrics_dir)


async def _worker(
    model: LoadedModel,
    listener: socket.socket,
    name: str,
    options: ServeOptions,
    metrics_dir: Path | None,
    banner: str | None,
) -> int:
    """Serve on ``listener`` in this process until a signal, then drain; returns 0."""
    loop = asyncio.get_running_loop()
    model.warm_up()
    metrics = ServerMetrics(
        name,
        str(model.version),
        classification=model.signature.classification,
        labels=model.signature.classes,
        multiprocess_dir=metrics_dir,
    )
    prediction_log = None
    if options.prediction_log is not None:
        prediction_log = PredictionLog(
            options.prediction_log, model=name, ref=model.ref, version=model.version
        )
        prediction_log.start()
    app = ModelServer(
        model,
        name=name,
        metrics=metrics,
        prediction_log=prediction_log,
        max_body_bytes=options.max_body_bytes,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if _early_stop.requested:  # signalled while this worker was starting: drain at once
        stop.set()
    runner = web.ServerRunner(app.make_server(), shutdown_timeout=options.drain_timeout)
    try:
        await runner.setup()
        _freeze_heap()
        site = web.SockSite(runner, listener)
        await site.start()
        if banner is not None:
            log.info("%s", banner)
        await stop.wait()
        # Drain: not ready, no new connections, finish what was sent, then close.
        app.ready = False
        deadline = loop.time() + options.drain_timeout
        await site.stop()
        await asyncio.sleep(0.05)  # let accepted connections deliver their requests
        while app.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await runner.cleanup()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)  # (which restores the default: dying)
            signal.signal(signum, _note_early_stop)  # a late signal must not kill the drain
        if prediction_log is not None:
            prediction_log.close()
    return 0


class _EarlyStop:
    """A worker process is told to stop by SIGTERM; one that arrives before its event loop
    handles signals (the model warming up on a busy machine), or after it stopped handling
    them (the drain's last steps), is noted here instead of killing the worker."""

    requested = False


_early_stop = _EarlyStop()


def _note_early_stop(_signum: int, _frame: Any) -> None:
    _early_stop.requested = True  # a plain store: safe in a signal handler


def _freeze_heap() -> None:
    """Move everything allocated so far (the model, the libraries) out of the garbage
    collector's reach: full collections then scan only what requests allocate, which keeps
    their pauses (and latency spikes) short, and forked workers do not touch the shared
    pages by collecting them."""
    gc.collect()
    gc.freeze()


def _exit_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the supervisor dies (even by SIGKILL), so
    that no orphaned worker keeps serving; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _limit_threads(workers: int) -> None:
    """Give each worker its share of the CPUs for BLAS/OpenMP/torch thread pools."""
    share = max(1, (os.cpu_count() or 1) // workers)
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=share)
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["torch"].set_num_threads(share)


class _Supervisor:
    """The parent of the worker processes: forks, forwards signals, restarts, reaps."""

    def __init__(
        self,
        model: LoadedModel,
        listener: socket.socket,
        name: str,
        options: ServeOptions,
        metrics_dir: Path,
        banner: str,
    ) -> None:
        self.model, self.listener, self.name = model, listener, name
        self.options, self.metrics_dir, self.banner = options, metrics_dir, banner
        self.pid = os.getpid()
        self.children: set[int] = set()
        self.stopping = False
        self.failed = False
        self.deaths: list[float] = []

    def _spawn(self) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return
        code = 1
        try:  # the worker: never returns into the caller's code
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, _note_early_stop)
            _exit_with_parent()
            if os.getppid() != parent:  # the supervisor died before that took effect
                return
            _limit_threads(self.options.workers)
            code = asyncio.run(
                _worker(self.model, self.listener, self.name, self.options, self.metrics_dir, None)
            )
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping or os.getpid() != self.pid:  # (a worker before its own handlers)
            return
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(self.options.workers):
                self._spawn()
            log.info("%s", self.banner)
            kill_at: float | None = None
            while self.children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    if self.stopping and kill_at is None:
                        kill_at = time.monotonic() + self.options.drain_timeout + 10.0
                    if kill_at is not None and time.monotonic() > kill_at:
                        self._kill_all()
                    time.sleep(0.05)
                    continue
                self.children.discard(pid)
                self._reaped(pid, os.waitstatus_to_exitcode(status))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 1 if self.failed else 0

    def _reaped(self, pid: int, code: int) -> None:
        if self.stopping:
            if code != 0:
                self.failed = True
                log.error("worker %d exited with status %d while shutting down", pid, code)
            return
        self.failed = True
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < _RESTART_WINDOW_S] + [now]
        if len(self.deaths) > _MAX_RESTARTS:
            log.error(
                "worker %d exited with status %d; workers died %d times in %g s, giving up",
                pid,
                code,
                len(self.deaths),
                _RESTART_WINDOW_S,
            )
            self._on_signal(signal.SIGTERM, None)
            return
        log.error("worker %d exited unexpectedly with status %d; starting another", pid, code)
        self._spawn()

    def _kill_all(self) -> None:
        self.failed = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
