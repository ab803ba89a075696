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

Processes, graceful shutdown and readiness: :mod:`mlform.serving.workers`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
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
from mlform.serving.loaded_model import LoadedModel
from mlform.serving.metrics import (
    ServerMetrics,
)
from mlform.serving.prediction_log import PredictionLog

__all__ = [
    "ModelServer",
    "ServeOptions",
    "configure_logging",
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
